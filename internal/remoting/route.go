package remoting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// MasterID is the broker id of a group's master (Java MixAll.MASTER_ID);
// in a DLedger group the current leader registers under it.
const MasterID = 0

// QueueData is one broker's share of a topic in a TopicRoute.
type QueueData struct {
	BrokerName     string `json:"brokerName"`
	ReadQueueNums  int    `json:"readQueueNums"`
	WriteQueueNums int    `json:"writeQueueNums"`
	Perm           int    `json:"perm"`
}

// TopicRoute is the body of a GET_ROUTEINFO_BY_TOPIC response (Java
// TopicRouteData): the brokers that hold the topic and their addresses.
type TopicRoute struct {
	BrokerDatas []BrokerData `json:"brokerDatas"`
	QueueDatas  []QueueData  `json:"queueDatas"`
}

// Master returns the address of the master (brokerId 0) of brokerName, or
// false when the route lists no master for it (for example while a DLedger
// group elects a new leader).
func (r TopicRoute) Master(brokerName string) (string, bool) {
	for _, bd := range r.BrokerDatas {
		if bd.BrokerName == brokerName {
			addr, ok := bd.BrokerAddrs[MasterID]
			return addr, ok && addr != ""
		}
	}
	return "", false
}

// DecodeTopicRoute parses a TopicRoute body, in standard JSON or the
// fastjson form a Java NameServer writes ({0:"10.0.0.1:10911"}).
func DecodeTopicRoute(body []byte) (TopicRoute, error) {
	var r TopicRoute
	if err := json.Unmarshal(quoteBareKeys(body), &r); err != nil {
		return r, fmt.Errorf("decode topic route: %w", err)
	}
	return r, nil
}

// ErrTopicNotExist is returned by GetRouteInfo when the NameServer knows
// no route for the topic (TOPIC_NOT_EXIST).
var ErrTopicNotExist = errors.New("remoting: no route for the topic")

// Invoker sends a request and waits for its answer: a *Client, or a Pool
// bound to one address (Pool.To).
type Invoker interface {
	Invoke(ctx context.Context, req *Command) (*Command, error)
}

// GetRouteInfo asks a NameServer, through inv, for the route of topic.
func GetRouteInfo(ctx context.Context, inv Invoker, topic string) (TopicRoute, error) {
	resp, err := inv.Invoke(ctx, NewRequest(GetRouteInfoByTopic, map[string]string{"topic": topic}, nil))
	if err != nil {
		return TopicRoute{}, err
	}
	switch resp.Code {
	case Success:
		return DecodeTopicRoute(resp.Body)
	case TopicNotExist:
		return TopicRoute{}, fmt.Errorf("%w: %s: %s", ErrTopicNotExist, topic, resp.Remark)
	}
	return TopicRoute{}, fmt.Errorf("get route of %s: code %d: %s", topic, resp.Code, resp.Remark)
}
