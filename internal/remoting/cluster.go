package remoting

import (
	"context"
	"encoding/json"
	"fmt"
)

// BrokerData is one broker group as a NameServer describes it.
type BrokerData struct {
	Cluster    string `json:"cluster"`
	BrokerName string `json:"brokerName"`
	// BrokerAddrs maps broker ids to "ip:port"; id 0 is the master.
	BrokerAddrs map[int64]string `json:"brokerAddrs"`
}

// ClusterInfo is the body of a GET_BROKER_CLUSTER_INFO response.
type ClusterInfo struct {
	BrokerAddrTable  map[string]BrokerData `json:"brokerAddrTable"`
	ClusterAddrTable map[string][]string   `json:"clusterAddrTable"`
}

// DecodeClusterInfo parses a ClusterInfo body. It accepts standard JSON and
// the fastjson form a Java NameServer writes, whose integer map keys are
// not quoted ({0:"10.0.0.1:10911"}).
func DecodeClusterInfo(body []byte) (ClusterInfo, error) {
	var ci ClusterInfo
	if err := json.Unmarshal(quoteBareKeys(body), &ci); err != nil {
		return ci, fmt.Errorf("decode cluster info: %w", err)
	}
	return ci, nil
}

// GetClusterInfo asks the NameServer at addr for its brokers.
func GetClusterInfo(ctx context.Context, addr string) (ClusterInfo, error) {
	resp, err := Call(ctx, addr, NewRequest(GetBrokerClusterInfo, nil, nil))
	if err != nil {
		return ClusterInfo{}, err
	}
	if resp.Code != Success {
		return ClusterInfo{}, fmt.Errorf("get cluster info from %s: code %d: %s", addr, resp.Code, resp.Remark)
	}
	return DecodeClusterInfo(resp.Body)
}

// quoteBareKeys quotes numeric object keys outside strings: after '{' or
// ',' (and whitespace), a run of digits (with an optional '-') followed by
// ':' becomes a string.
func quoteBareKeys(b []byte) []byte {
	out := make([]byte, 0, len(b)+16)
	inString, escaped, keyPos := false, false, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			out = append(out, c)
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch {
		case c == '"':
			inString, keyPos = true, false
		case c == '{' || c == ',':
			keyPos = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
		case keyPos && (c == '-' || c >= '0' && c <= '9'):
			j := i + 1
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				j++
			}
			k := j
			for k < len(b) && (b[k] == ' ' || b[k] == '\t' || b[k] == '\n' || b[k] == '\r') {
				k++
			}
			keyPos = false
			if k < len(b) && b[k] == ':' {
				out = append(out, '"')
				out = append(out, b[i:j]...)
				out = append(out, '"')
				i = j - 1
				continue
			}
		default:
			keyPos = false
		}
		out = append(out, c)
	}
	return out
}
