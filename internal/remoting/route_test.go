package remoting

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

func TestDecodeTopicRouteAndMaster(t *testing.T) {
	tests := []struct {
		name, body string
		master     string
		ok         bool
	}{
		{"standard json", `{"brokerDatas":[{"cluster":"c","brokerName":"broker-a","brokerAddrs":{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"}}],"queueDatas":[{"brokerName":"broker-a","readQueueNums":4,"writeQueueNums":4,"perm":6}]}`, "10.0.0.1:10911", true},
		{"fastjson bare keys", `{"brokerDatas":[{"brokerAddrs":{1:"10.0.0.2:10911",0:"10.0.0.3:10911"},"brokerName":"broker-a","cluster":"c"}],"queueDatas":[]}`, "10.0.0.3:10911", true},
		{"no master during an election", `{"brokerDatas":[{"brokerName":"broker-a","brokerAddrs":{"1":"10.0.0.2:10911"}}]}`, "", false},
		{"other broker only", `{"brokerDatas":[{"brokerName":"broker-b","brokerAddrs":{"0":"10.0.0.9:10911"}}]}`, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := DecodeTopicRoute([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			got, ok := r.Master("broker-a")
			if got != tt.master || ok != tt.ok {
				t.Errorf("Master = %q %v, want %q %v", got, ok, tt.master, tt.ok)
			}
		})
	}
}

func TestGetRouteInfoAnswers(t *testing.T) {
	addr := serveOnce(t, func(c net.Conn, req *Command) {
		var resp *Command
		switch req.Ext["topic"] {
		case "known":
			resp = NewResponse(req, Success, "")
			resp.Body = []byte(`{"brokerDatas":[{"brokerName":"b","brokerAddrs":{0:"1.2.3.4:5"}}],"queueDatas":[]}`)
		default:
			resp = NewResponse(req, TopicNotExist, "No topic route info in name server for the topic: "+req.Ext["topic"])
		}
		_, _ = c.Write(Encode(resp))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := GetRouteInfo(ctx, c, "known")
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := r.Master("b"); !ok || m != "1.2.3.4:5" {
		t.Errorf("master = %q %v", m, ok)
	}
	if _, err := GetRouteInfo(ctx, c, "unknown"); !errors.Is(err, ErrTopicNotExist) {
		t.Errorf("unknown topic: err = %v, want ErrTopicNotExist", err)
	}
}
