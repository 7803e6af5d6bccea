package remoting

import (
	"testing"
)

func TestDecodeClusterInfo(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"standard json", `{"brokerAddrTable":{"broker-a":{"cluster":"c1","brokerName":"broker-a","brokerAddrs":{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"}}},"clusterAddrTable":{"c1":["broker-a"]}}`},
		{"fastjson bare keys", `{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"10.0.0.1:10911",1 : "10.0.0.2:10911"},"brokerName":"broker-a","cluster":"c1"}},"clusterAddrTable":{"c1":["broker-a"]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ci, err := DecodeClusterInfo([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			bd := ci.BrokerAddrTable["broker-a"]
			if bd.Cluster != "c1" || bd.BrokerAddrs[0] != "10.0.0.1:10911" || bd.BrokerAddrs[1] != "10.0.0.2:10911" {
				t.Errorf("broker data %+v", bd)
			}
			if got := ci.ClusterAddrTable["c1"]; len(got) != 1 || got[0] != "broker-a" {
				t.Errorf("cluster table %v", got)
			}
		})
	}
}

func TestQuoteBareKeysLeavesStringsAlone(t *testing.T) {
	in := `{"a":"x,1:y","b":{2:"{3:4}"},"c":[1,2]}`
	want := `{"a":"x,1:y","b":{"2":"{3:4}"},"c":[1,2]}`
	if got := string(quoteBareKeys([]byte(in))); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
