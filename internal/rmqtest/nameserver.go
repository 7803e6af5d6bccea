package rmqtest

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/txorder/txorder/internal/remoting"
)

// brokerExpiry is how long a NameServer keeps a broker that stopped
// registering (Java BROKER_CHANNEL_EXPIRED_TIME).
const brokerExpiry = 120 * time.Second

// queueData is one broker's share of a topic, as in a TopicRouteData.
type queueData struct {
	BrokerName     string `json:"brokerName"`
	ReadQueueNums  int    `json:"readQueueNums"`
	WriteQueueNums int    `json:"writeQueueNums"`
	Perm           int    `json:"perm"`
	TopicSysFlag   int    `json:"topicSysFlag"`
}

type brokerData struct {
	Cluster     string            `json:"cluster"`
	BrokerName  string            `json:"brokerName"`
	BrokerAddrs map[string]string `json:"brokerAddrs"`
}

type topicRouteData struct {
	BrokerDatas       []brokerData      `json:"brokerDatas"`
	FilterServerTable map[string]string `json:"filterServerTable"`
	QueueDatas        []queueData       `json:"queueDatas"`
}

// brokerRegistration is what a broker tells the NameServer on every
// registration tick.
type brokerRegistration struct {
	Cluster    string
	BrokerName string
	BrokerAddr string
	Topics     map[string]queueData
}

// nameServer is the NameServer's state: it starts empty and learns routes
// only from broker registrations, like a real one.
type nameServer struct {
	log *slog.Logger

	mu      sync.Mutex
	brokers map[string]*nsBroker // by broker name
}

type nsBroker struct {
	reg  brokerRegistration
	last time.Time
	conn *conn // the connection it registered on, nil in-process
}

func newNameServer(log *slog.Logger) *nameServer {
	return &nameServer{log: log, brokers: map[string]*nsBroker{}}
}

func (ns *nameServer) register(reg brokerRegistration, c *conn) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if old := ns.brokers[reg.BrokerName]; old == nil || old.reg.BrokerAddr != reg.BrokerAddr {
		ns.log.Info("broker registered", "broker", reg.BrokerName, "addr", reg.BrokerAddr, "topics", len(reg.Topics))
	}
	ns.brokers[reg.BrokerName] = &nsBroker{reg: reg, last: time.Now(), conn: c}
}

func (ns *nameServer) unregister(name string) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.brokers[name] != nil {
		delete(ns.brokers, name)
		ns.log.Info("broker unregistered", "broker", name)
	}
}

// liveLocked returns the brokers that registered recently, sorted by name,
// and forgets the others.
func (ns *nameServer) liveLocked() []*nsBroker {
	out := make([]*nsBroker, 0, len(ns.brokers))
	for name, b := range ns.brokers {
		if time.Since(b.last) > brokerExpiry {
			delete(ns.brokers, name)
			ns.log.Info("broker expired", "broker", name)
			continue
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].reg.BrokerName < out[j].reg.BrokerName })
	return out
}

func (ns *nameServer) onClose(c *conn) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for name, b := range ns.brokers {
		if b.conn == c {
			delete(ns.brokers, name)
			ns.log.Info("broker connection closed, routes removed", "broker", name)
		}
	}
}

func (ns *nameServer) handle(c *conn, req *remoting.Command) *remoting.Command {
	switch req.Code {
	case remoting.GetRouteInfoByTopic:
		return ns.handleRoute(req)
	case remoting.RegisterBroker:
		return ns.handleRegister(c, req)
	case remoting.UnregisterBroker:
		ns.unregister(req.Ext["brokerName"])
		return remoting.NewResponse(req, remoting.Success, "")
	case remoting.GetBrokerClusterInfo:
		return ns.handleClusterInfo(req)
	case remoting.GetAllTopicListFromNameServer:
		return ns.handleTopicList(req)
	case remoting.DeleteTopicInNameServer:
		ns.mu.Lock()
		for _, b := range ns.brokers {
			delete(b.reg.Topics, req.Ext["topic"])
		}
		ns.mu.Unlock()
		return remoting.NewResponse(req, remoting.Success, "")
	default:
		return notSupported(req)
	}
}

// route builds the TopicRouteData of a topic. Retry topics get a route on
// every broker even before the broker knows them: the Go consumer asks for
// %RETRY%<group> before its first heartbeat creates it.
func (ns *nameServer) route(topic string) (topicRouteData, bool) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	rd := topicRouteData{BrokerDatas: []brokerData{}, FilterServerTable: map[string]string{}, QueueDatas: []queueData{}}
	for _, b := range ns.liveLocked() {
		qd, ok := b.reg.Topics[topic]
		if !ok {
			if !strings.HasPrefix(topic, RetryPrefix) {
				continue
			}
			qd = queueData{ReadQueueNums: 1, WriteQueueNums: 1, Perm: permRW}
		}
		qd.BrokerName = b.reg.BrokerName
		rd.QueueDatas = append(rd.QueueDatas, qd)
		rd.BrokerDatas = append(rd.BrokerDatas, brokerData{
			Cluster: b.reg.Cluster, BrokerName: b.reg.BrokerName,
			BrokerAddrs: map[string]string{"0": b.reg.BrokerAddr},
		})
	}
	return rd, len(rd.QueueDatas) > 0
}

func (ns *nameServer) handleRoute(req *remoting.Command) *remoting.Command {
	topic := req.Ext["topic"]
	rd, ok := ns.route(topic)
	if !ok {
		return remoting.NewResponse(req, remoting.TopicNotExist, "No topic route info in name server for the topic: "+topic)
	}
	// encoding/json writes compact JSON: the Go client parses brokerAddrs
	// textually and breaks on spaces.
	body, err := json.Marshal(rd)
	if err != nil {
		return remoting.NewResponse(req, remoting.SystemError, err.Error())
	}
	resp := remoting.NewResponse(req, remoting.Success, "")
	resp.Body = body
	return resp
}

// Java RegisterBrokerBody, uncompressed JSON form.
type registerBody struct {
	TopicConfigSerializeWrapper struct {
		TopicConfigTable map[string]topicConfig `json:"topicConfigTable"`
		DataVersion      dataVersion            `json:"dataVersion"`
	} `json:"topicConfigSerializeWrapper"`
	FilterServerList []string `json:"filterServerList"`
}

type topicConfig struct {
	TopicName       string `json:"topicName"`
	ReadQueueNums   int    `json:"readQueueNums"`
	WriteQueueNums  int    `json:"writeQueueNums"`
	Perm            int    `json:"perm"`
	TopicFilterType string `json:"topicFilterType"`
	TopicSysFlag    int    `json:"topicSysFlag"`
	Order           bool   `json:"order"`
}

type dataVersion struct {
	Timestamp int64 `json:"timestamp"`
	Counter   int64 `json:"counter"`
}

func (ns *nameServer) handleRegister(c *conn, req *remoting.Command) *remoting.Command {
	if req.ExtBool("compressed") {
		return remoting.NewResponse(req, remoting.SystemError, "compressed broker registration is not supported")
	}
	reg := brokerRegistration{
		Cluster:    req.Ext["clusterName"],
		BrokerName: req.Ext["brokerName"],
		BrokerAddr: req.Ext["brokerAddr"],
		Topics:     map[string]queueData{},
	}
	if reg.BrokerName == "" || reg.BrokerAddr == "" || strings.ContainsAny(reg.BrokerAddr, `," `) {
		return remoting.NewResponse(req, remoting.SystemError, "brokerName and a valid brokerAddr are required")
	}
	if id := req.ExtInt64("brokerId", 0); id != 0 {
		return remoting.NewResponse(req, remoting.SystemError, fmt.Sprintf("only master brokers (brokerId 0) are supported, got %d", id))
	}
	if len(req.Body) > 0 {
		var body registerBody
		if err := json.Unmarshal(req.Body, &body); err != nil {
			return remoting.NewResponse(req, remoting.SystemError, "bad register body: "+err.Error())
		}
		for name, tc := range body.TopicConfigSerializeWrapper.TopicConfigTable {
			if name == "" {
				name = tc.TopicName
			}
			reg.Topics[name] = queueData{BrokerName: reg.BrokerName, ReadQueueNums: tc.ReadQueueNums,
				WriteQueueNums: tc.WriteQueueNums, Perm: tc.Perm, TopicSysFlag: tc.TopicSysFlag}
		}
	}
	ns.register(reg, c)
	resp := remoting.NewResponse(req, remoting.Success, "")
	resp.Ext["haServerAddr"] = ""
	resp.Ext["masterAddr"] = ""
	resp.Body = []byte(`{"table":{}}`)
	return resp
}

// encodeRegistration is the REGISTER_BROKER request for reg.
func encodeRegistration(reg brokerRegistration) *remoting.Command {
	var body registerBody
	body.TopicConfigSerializeWrapper.TopicConfigTable = make(map[string]topicConfig, len(reg.Topics))
	for name, qd := range reg.Topics {
		body.TopicConfigSerializeWrapper.TopicConfigTable[name] = topicConfig{TopicName: name, ReadQueueNums: qd.ReadQueueNums,
			WriteQueueNums: qd.WriteQueueNums, Perm: qd.Perm, TopicFilterType: "SINGLE_TAG", TopicSysFlag: qd.TopicSysFlag}
	}
	body.TopicConfigSerializeWrapper.DataVersion = dataVersion{Timestamp: time.Now().UnixMilli(), Counter: 1}
	body.FilterServerList = []string{}
	b, _ := json.Marshal(body)
	return remoting.NewRequest(remoting.RegisterBroker, map[string]string{
		"brokerName":   reg.BrokerName,
		"brokerAddr":   reg.BrokerAddr,
		"clusterName":  reg.Cluster,
		"haServerAddr": reg.BrokerAddr,
		"brokerId":     "0",
		"compressed":   "false",
	}, b)
}

// ClusterInfo is the GET_BROKER_CLUSTER_INFO body (Java ClusterInfo).
type clusterInfo struct {
	BrokerAddrTable  map[string]brokerData `json:"brokerAddrTable"`
	ClusterAddrTable map[string][]string   `json:"clusterAddrTable"`
}

func (ns *nameServer) handleClusterInfo(req *remoting.Command) *remoting.Command {
	ns.mu.Lock()
	ci := clusterInfo{BrokerAddrTable: map[string]brokerData{}, ClusterAddrTable: map[string][]string{}}
	for _, b := range ns.liveLocked() {
		ci.BrokerAddrTable[b.reg.BrokerName] = brokerData{Cluster: b.reg.Cluster, BrokerName: b.reg.BrokerName,
			BrokerAddrs: map[string]string{"0": b.reg.BrokerAddr}}
		ci.ClusterAddrTable[b.reg.Cluster] = append(ci.ClusterAddrTable[b.reg.Cluster], b.reg.BrokerName)
	}
	ns.mu.Unlock()
	body, _ := json.Marshal(ci)
	resp := remoting.NewResponse(req, remoting.Success, "")
	resp.Body = body
	return resp
}

func (ns *nameServer) handleTopicList(req *remoting.Command) *remoting.Command {
	ns.mu.Lock()
	set := map[string]bool{}
	for _, b := range ns.liveLocked() {
		for name := range b.reg.Topics {
			set[name] = true
		}
	}
	ns.mu.Unlock()
	list := make([]string, 0, len(set))
	for name := range set {
		list = append(list, name)
	}
	sort.Strings(list)
	body, _ := json.Marshal(struct {
		TopicList []string `json:"topicList"`
	}{list})
	resp := remoting.NewResponse(req, remoting.Success, "")
	resp.Body = body
	return resp
}
