package rmqtest

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
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
	// BrokerID is 0 for the master (a DLedger group's leader), above 0 for
	// a slave (a follower).
	BrokerID   int64
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

// nsBroker is one broker name (a master/slave set or a DLedger group): its
// registered addresses by broker id, and the topics its master announced.
// As in Java's RouteInfoManager, only a master's registration updates the
// queue data, and the queue data goes when the last address does.
type nsBroker struct {
	cluster string
	name    string
	topics  map[string]queueData
	addrs   map[int64]*nsAddr
}

type nsAddr struct {
	addr string
	last time.Time
	conn *conn // the connection it registered on, nil in-process
}

func newNameServer(log *slog.Logger) *nameServer {
	return &nameServer{log: log, brokers: map[string]*nsBroker{}}
}

func (ns *nameServer) register(reg brokerRegistration, c *conn) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	b := ns.brokers[reg.BrokerName]
	if b == nil {
		b = &nsBroker{name: reg.BrokerName, addrs: map[int64]*nsAddr{}, topics: map[string]queueData{}}
		ns.brokers[reg.BrokerName] = b
	}
	b.cluster = reg.Cluster
	if old := b.addrs[reg.BrokerID]; old == nil || old.addr != reg.BrokerAddr {
		ns.log.Info("broker registered", "broker", reg.BrokerName, "broker_id", reg.BrokerID, "addr", reg.BrokerAddr, "topics", len(reg.Topics))
	}
	// An address that re-registers under another id changed role (a
	// DLedger leader change): forget its old id, as Java's
	// RouteInfoManager.registerBroker does.
	for id, a := range b.addrs {
		if a.addr == reg.BrokerAddr && id != reg.BrokerID {
			delete(b.addrs, id)
		}
	}
	b.addrs[reg.BrokerID] = &nsAddr{addr: reg.BrokerAddr, last: time.Now(), conn: c}
	if reg.BrokerID == remoting.MasterID {
		b.topics = reg.Topics
	}
}

// unregister forgets one address of a broker name, and the broker name
// with its routes when it was the last.
func (ns *nameServer) unregister(name, addr string) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	b := ns.brokers[name]
	if b == nil {
		return
	}
	for id, a := range b.addrs {
		if a.addr == addr {
			delete(b.addrs, id)
			ns.log.Info("broker unregistered", "broker", name, "broker_id", id, "addr", addr)
		}
	}
	ns.dropIfEmptyLocked(b)
}

func (ns *nameServer) dropIfEmptyLocked(b *nsBroker) {
	if len(b.addrs) == 0 {
		delete(ns.brokers, b.name)
		ns.log.Info("broker name removed with its routes", "broker", b.name)
	}
}

// liveLocked returns the broker names with a recent registration, sorted,
// after forgetting the addresses that stopped registering.
func (ns *nameServer) liveLocked() []*nsBroker {
	out := make([]*nsBroker, 0, len(ns.brokers))
	for _, b := range ns.brokers {
		for id, a := range b.addrs {
			if time.Since(a.last) > brokerExpiry {
				delete(b.addrs, id)
				ns.log.Info("broker expired", "broker", b.name, "broker_id", id, "addr", a.addr)
			}
		}
		ns.dropIfEmptyLocked(b)
		if len(b.addrs) > 0 {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// addrTable is the brokerAddrs map of a BrokerData: id → address.
func (b *nsBroker) addrTable() map[string]string {
	m := make(map[string]string, len(b.addrs))
	for id, a := range b.addrs {
		m[strconv.FormatInt(id, 10)] = a.addr
	}
	return m
}

func (ns *nameServer) onClose(c *conn) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for _, b := range ns.brokers {
		for id, a := range b.addrs {
			if a.conn == c {
				delete(b.addrs, id)
				ns.log.Info("broker connection closed, address removed", "broker", b.name, "broker_id", id, "addr", a.addr)
			}
		}
		ns.dropIfEmptyLocked(b)
	}
}

func (ns *nameServer) handle(c *conn, req *remoting.Command) *remoting.Command {
	switch req.Code {
	case remoting.GetRouteInfoByTopic:
		return ns.handleRoute(req)
	case remoting.RegisterBroker:
		return ns.handleRegister(c, req)
	case remoting.UnregisterBroker:
		ns.unregister(req.Ext["brokerName"], req.Ext["brokerAddr"])
		return remoting.NewResponse(req, remoting.Success, "")
	case remoting.GetBrokerClusterInfo:
		return ns.handleClusterInfo(req)
	case remoting.GetAllTopicListFromNameServer:
		return ns.handleTopicList(req)
	case remoting.DeleteTopicInNameServer:
		ns.mu.Lock()
		for _, b := range ns.brokers {
			delete(b.topics, req.Ext["topic"])
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
		qd, ok := b.topics[topic]
		if !ok {
			if !strings.HasPrefix(topic, RetryPrefix) {
				continue
			}
			qd = queueData{ReadQueueNums: 1, WriteQueueNums: 1, Perm: permRW}
		}
		qd.BrokerName = b.name
		rd.QueueDatas = append(rd.QueueDatas, qd)
		rd.BrokerDatas = append(rd.BrokerDatas, brokerData{Cluster: b.cluster, BrokerName: b.name, BrokerAddrs: b.addrTable()})
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
		BrokerID:   req.ExtInt64("brokerId", -1),
		BrokerAddr: req.Ext["brokerAddr"],
		Topics:     map[string]queueData{},
	}
	if reg.BrokerName == "" || reg.BrokerAddr == "" || strings.ContainsAny(reg.BrokerAddr, `," `) {
		return remoting.NewResponse(req, remoting.SystemError, "brokerName and a valid brokerAddr are required")
	}
	if reg.BrokerID < 0 {
		return remoting.NewResponse(req, remoting.SystemError, fmt.Sprintf("brokerId %q is not a broker id", req.Ext["brokerId"]))
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
		"brokerId":     strconv.FormatInt(reg.BrokerID, 10),
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
		ci.BrokerAddrTable[b.name] = brokerData{Cluster: b.cluster, BrokerName: b.name, BrokerAddrs: b.addrTable()}
		ci.ClusterAddrTable[b.cluster] = append(ci.ClusterAddrTable[b.cluster], b.name)
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
		for name := range b.topics {
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
