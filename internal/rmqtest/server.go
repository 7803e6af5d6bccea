// Package rmqtest is an in-memory RocketMQ NameServer and broker for tests,
// what miniredis is to Redis: the unmodified rocketmq-client-go v2 talks to
// it as if it were Apache RocketMQ (4.9 semantics). It keeps everything in
// memory and is for development and tests only.
//
// A Server has two TCP listeners on 127.0.0.1, a NameServer and one master
// broker, with independent lifecycles: StopNameServer/StartNameServer
// (the restarted NameServer is empty until the broker's next registration)
// and StopBroker/StartBroker (state is kept, connections are cut). With
// Options.Follower a third listener is a follower of the same broker name
// (brokerId 1) sharing the master's store, as the nodes of a DLedger group
// share one replicated log; SwitchLeader swaps the two roles. The hooks in
// direct.go inspect and steer the server from tests.
//
// Client identity: rocketmq-client-go shares one client, and one socket per
// broker, between every producer and consumer of a process with the same
// instance name, and binds transaction check-backs to the group of the
// first one created. The server sends each CHECK_TRANSACTION_STATE on a
// connection to the master on which the half message's producer group sent
// or heart-beat, never on a consumer's or the NameServer's, and never on a
// connection that only ended transactions (a Java broker knows producers
// from their heartbeats alone; this server also counts sends, because the
// Go client heart-beats only every 30 s). Give every transaction producer
// its own instance name (producer.WithInstanceName), distinct from
// consumers in the same process; the server cannot repair a shared client.
package rmqtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txorder/txorder/internal/remoting"
)

// Options configures a Server. The zero value gives a NameServer and a
// broker on ephemeral ports with Java's defaults.
type Options struct {
	// NameServerAddr and BrokerAddr are the listen addresses, IPv4 literal
	// and port; default "127.0.0.1:0". The broker advertises its real
	// address in routes, store hosts and message ids.
	NameServerAddr string
	BrokerAddr     string
	// BrokerAdvertiseAddr, if set, is the address ("ip:port") the broker
	// gives in routes, store hosts and message ids instead of its listen
	// address, as a Java broker's brokerIP1 does: a fault proxy in front of
	// the broker is reached only if clients learn its address.
	BrokerAdvertiseAddr string
	// Follower also runs a follower of the broker (brokerId 1) on
	// FollowerAddr (default "127.0.0.1:0"). It shares the master's store,
	// as a DLedger follower holds the leader's replicated log, and
	// behaves as a Java slave: END_TRANSACTION answers SLAVE_NOT_AVAILABLE
	// and sends SERVICE_NOT_AVAILABLE; check-backs come from the master only.
	Follower     bool
	FollowerAddr string
	// NoNameServer or NoBroker run only the other half (cmd/rmqdev's
	// "broker" and "namesrv" subcommands).
	NoNameServer bool
	NoBroker     bool
	// RegisterTo lists NameServers ("ip:port") the broker registers with
	// over the wire (REGISTER_BROKER), in addition to this server's own.
	RegisterTo []string
	// RegisterInterval is the broker's registration period (default 1s;
	// a real broker uses 30s). A restarted NameServer knows no routes
	// until the next registration.
	RegisterInterval time.Duration
	// ClusterName and BrokerName default to "DefaultCluster" and "broker-a".
	ClusterName string
	BrokerName  string
	// Topics are created at start with the given queue count (0 means 4).
	// Push consumers fail to start on unknown topics; producers auto-create
	// through TBW102.
	Topics map[string]int
	// TransactionTimeout is the age a half message must reach before it is
	// checked (default 6s), unless it carries CHECK_IMMUNITY_TIME_IN_SECONDS.
	TransactionTimeout time.Duration
	// CheckInterval is the period of transaction check rounds (default 30s).
	CheckInterval time.Duration
	// CheckMax is how many checks a half message gets before it is moved
	// to TRANS_CHECK_MAX_TIME_TOPIC (default 15).
	CheckMax int
	// DelayScale multiplies the delay-level table (1s 5s 10s 30s 1m ... 2h)
	// used by delayed messages and consumer retries; 0.001 turns seconds
	// into milliseconds. Default 1.
	DelayScale float64
	// MaxFrameSize bounds incoming frames (default 16 MiB); a larger frame
	// closes the connection.
	MaxFrameSize int
	// StrictConsumerOffset makes QUERY_CONSUMER_OFFSET answer
	// QUERY_NOT_FOUND for a group without a stored offset, so
	// CONSUME_FROM_LAST_OFFSET starts at the end. By default the server
	// answers 0 like Java does while a queue still starts at offset 0, so
	// a new group reads the queue from the beginning.
	StrictConsumerOffset bool
	// MaxQueueMessages bounds memory: each queue keeps at most this many
	// messages and forgets the oldest, as Java deletes old commit log
	// files (its min offset moves; a consumer behind it gets
	// PULL_OFFSET_MOVED; a send-back of a forgotten message fails).
	// 0 keeps everything.
	MaxQueueMessages int
	// LockLease is how long an orderly consumer's queue lock lasts without
	// renewal (default 60s).
	LockLease time.Duration
	// Logger receives connection and transaction logs; nil discards them.
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.NameServerAddr == "" {
		o.NameServerAddr = "127.0.0.1:0"
	}
	if o.BrokerAddr == "" {
		o.BrokerAddr = "127.0.0.1:0"
	}
	if o.FollowerAddr == "" {
		o.FollowerAddr = "127.0.0.1:0"
	}
	if o.RegisterInterval <= 0 {
		o.RegisterInterval = time.Second
	}
	o.RegisterInterval = max(o.RegisterInterval, time.Millisecond)
	if o.ClusterName == "" {
		o.ClusterName = "DefaultCluster"
	}
	if o.BrokerName == "" {
		o.BrokerName = "broker-a"
	}
	if o.TransactionTimeout <= 0 {
		o.TransactionTimeout = 6 * time.Second
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = 30 * time.Second
	}
	o.CheckInterval = max(o.CheckInterval, time.Millisecond)
	if o.CheckMax <= 0 {
		o.CheckMax = 15
	}
	if o.DelayScale <= 0 {
		o.DelayScale = 1
	}
	if o.MaxFrameSize <= 0 {
		o.MaxFrameSize = remoting.DefaultMaxFrameSize
	}
	if o.LockLease <= 0 {
		o.LockLease = 60 * time.Second
	}
	if o.MaxQueueMessages < 0 {
		return o, fmt.Errorf("rmqtest: negative MaxQueueMessages %d", o.MaxQueueMessages)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.NoNameServer && o.NoBroker {
		return o, errors.New("rmqtest: NoNameServer and NoBroker leave nothing to run")
	}
	if o.BrokerAdvertiseAddr != "" {
		if ap, err := netip.ParseAddrPort(o.BrokerAdvertiseAddr); err != nil || !ap.Addr().Is4() {
			return o, fmt.Errorf("rmqtest: advertised broker address %q must be an IPv4 literal with a port", o.BrokerAdvertiseAddr)
		}
	}
	if o.Follower && o.NoBroker {
		return o, errors.New("rmqtest: a follower needs the broker (NoBroker is set)")
	}
	for _, a := range []string{o.NameServerAddr, o.BrokerAddr, o.FollowerAddr} {
		ap, err := netip.ParseAddrPort(a)
		if err != nil || !ap.Addr().Is4() {
			return o, fmt.Errorf("rmqtest: listen address %q must be an IPv4 literal with a port", a)
		}
	}
	for name, n := range o.Topics {
		if name == "" || len(name) > 127 || n < 0 || n > 1024 {
			return o, fmt.Errorf("rmqtest: bad topic %q with %d queues", name, n)
		}
	}
	return o, nil
}

// Server is an in-memory NameServer plus one master broker, and
// optionally its follower.
type Server struct {
	opts Options
	log  *slog.Logger

	nsEP       *endpoint // nil with NoNameServer
	brokerEP   *endpoint // nil with NoBroker; the master until SwitchLeader
	followerEP *endpoint // nil without Follower
	broker     *broker   // nil with NoBroker; the store both endpoints share
	// switched: followerEP is the master and brokerEP the follower.
	switched atomic.Bool

	nsMu sync.Mutex
	ns   *nameServer // nil while the NameServer is stopped

	regWake chan struct{}
	regMu   sync.Mutex
	remotes map[string]*remoting.Client

	lifeMu sync.Mutex // serialises Start/Stop/Close
	stop   chan struct{}
	closed bool
	bg     sync.WaitGroup
}

// NewServer starts a server. Close it when done.
func NewServer(opts Options) (*Server, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		regWake: make(chan struct{}, 1),
		remotes: map[string]*remoting.Client{},
		stop:    make(chan struct{}),
	}
	if !opts.NoNameServer {
		s.nsEP = &endpoint{name: "namesrv", addr: opts.NameServerAddr, maxFrame: opts.MaxFrameSize, log: s.log,
			handle: func(c *conn, req *remoting.Command) *remoting.Command {
				ns := s.nameServer()
				if ns == nil {
					return nil
				}
				return ns.handle(c, req)
			},
			onClose: func(c *conn) {
				if ns := s.nameServer(); ns != nil {
					ns.onClose(c)
				}
			},
		}
		s.ns = newNameServer(s.log)
		if err := s.nsEP.start(); err != nil {
			return nil, fmt.Errorf("rmqtest: start name server: %w", err)
		}
		s.log.Info("name server listening", "addr", s.nsEP.addr)
	}
	if !opts.NoBroker {
		s.broker = newBroker(s)
		s.brokerEP = &endpoint{name: "broker", addr: opts.BrokerAddr, maxFrame: opts.MaxFrameSize, log: s.log,
			handle: s.broker.handle, onClose: s.broker.onClose, delay: s.broker.responseDelay,
			blocking: func(req *remoting.Command) bool { return req.Code == remoting.PullMessage }}
		if err := s.brokerEP.start(); err != nil {
			s.Close()
			return nil, fmt.Errorf("rmqtest: start broker: %w", err)
		}
		s.broker.storeHost = netip.MustParseAddrPort(s.brokerEP.addr)
		if opts.BrokerAdvertiseAddr != "" {
			s.broker.storeHost = netip.MustParseAddrPort(opts.BrokerAdvertiseAddr)
		}
		s.log.Info("broker listening", "addr", s.brokerEP.addr, "advertised", s.broker.storeHost.String(),
			"broker", opts.BrokerName, "cluster", opts.ClusterName)
		if opts.Follower {
			s.followerEP = &endpoint{name: "follower", addr: opts.FollowerAddr, maxFrame: opts.MaxFrameSize, log: s.log,
				handle: s.broker.handle, onClose: s.broker.onClose, delay: s.broker.responseDelay,
				blocking: func(req *remoting.Command) bool { return req.Code == remoting.PullMessage }}
			if err := s.followerEP.start(); err != nil {
				s.Close()
				return nil, fmt.Errorf("rmqtest: start follower: %w", err)
			}
			s.log.Info("follower listening", "addr", s.followerEP.addr, "broker", opts.BrokerName)
		}
		s.bg.Add(3)
		go s.registerLoop(s.stop)
		go s.checkLoop(s.stop)
		go s.delayLoop(s.stop)
		s.registerNow()
	}
	return s, nil
}

// RunT starts a server for a test and closes it in t.Cleanup.
func RunT(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := NewServer(opts)
	if err != nil {
		t.Fatalf("start rmqtest server: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// NameServerAddr returns the NameServer's "127.0.0.1:port" (empty with
// NoNameServer). It stays the same across StopNameServer/StartNameServer.
func (s *Server) NameServerAddr() string {
	if s.nsEP == nil {
		return ""
	}
	return s.nsEP.addr
}

// BrokerAddr returns the broker's "127.0.0.1:port" (empty with NoBroker).
// It stays the same across StopBroker/StartBroker, and names the same
// listener after SwitchLeader made it the follower.
func (s *Server) BrokerAddr() string {
	if s.brokerEP == nil {
		return ""
	}
	return s.brokerEP.addr
}

// FollowerAddr returns the follower's "127.0.0.1:port" (empty without
// Options.Follower); after SwitchLeader that listener is the master.
func (s *Server) FollowerAddr() string {
	if s.followerEP == nil {
		return ""
	}
	return s.followerEP.addr
}

// MasterAddr returns the address of the current master (brokerId 0).
func (s *Server) MasterAddr() string {
	if ep := s.masterEP(); ep != nil {
		return ep.addr
	}
	return ""
}

// masterEP is the endpoint in the master role.
func (s *Server) masterEP() *endpoint {
	if s.switched.Load() {
		return s.followerEP
	}
	return s.brokerEP
}

// advertised is the address ep's broker gives in routes: the broker's
// BrokerAdvertiseAddr if set, else the listen address.
func (s *Server) advertised(ep *endpoint) string {
	if ep == s.brokerEP && s.opts.BrokerAdvertiseAddr != "" {
		return s.opts.BrokerAdvertiseAddr
	}
	return ep.addr
}

// isMaster reports whether ep is in the master role.
func (s *Server) isMaster(ep *endpoint) bool { return ep == s.masterEP() }

// SwitchLeader swaps the master and the follower, as a DLedger election
// that moves the leadership does: the new master registers as brokerId 0
// and the old one as brokerId 1 at once. Clients keep their connections;
// those that still send to the old master get SERVICE_NOT_AVAILABLE until
// they refresh their routes. It needs Options.Follower.
func (s *Server) SwitchLeader() error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.followerEP == nil || s.closed {
		return errors.New("rmqtest: no follower to switch to (Options.Follower)")
	}
	s.switched.Store(!s.switched.Load())
	s.log.Info("leader switched", "master", s.masterEP().addr)
	s.registerNow()
	return nil
}

func (s *Server) nameServer() *nameServer {
	s.nsMu.Lock()
	defer s.nsMu.Unlock()
	return s.ns
}

// Close stops both listeners, cuts every connection and waits for all
// goroutines. It is idempotent.
func (s *Server) Close() {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	close(s.stop)
	if s.brokerEP != nil {
		s.brokerEP.stop()
	}
	if s.followerEP != nil {
		s.followerEP.stop()
	}
	if s.nsEP != nil {
		s.nsEP.stop()
	}
	s.bg.Wait()
	s.closeRemotes()
}

// StopNameServer closes the NameServer listener and its connections and
// forgets every route. Clients with cached routes keep working.
func (s *Server) StopNameServer() {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.nsEP == nil || s.closed {
		return
	}
	s.nsEP.stop()
	s.nsMu.Lock()
	s.ns = nil
	s.nsMu.Unlock()
	s.log.Info("name server stopped")
}

// StartNameServer restarts a stopped NameServer on the same address. It
// comes back empty, like a restarted real one, and learns the broker's
// routes at the broker's next registration tick (RegisterInterval).
func (s *Server) StartNameServer() error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.nsEP == nil || s.closed {
		return errors.New("rmqtest: no name server to start")
	}
	if s.nsEP.isRunning() {
		return nil
	}
	s.nsMu.Lock()
	s.ns = newNameServer(s.log)
	s.nsMu.Unlock()
	if err := s.nsEP.start(); err != nil {
		return fmt.Errorf("rmqtest: restart name server: %w", err)
	}
	s.log.Info("name server started", "addr", s.nsEP.addr)
	return nil
}

// StopBroker closes the broker listener and every broker connection, and
// removes the broker from the NameServers as a dying broker's closed
// connection would. Stored messages, offsets and transactions are kept.
func (s *Server) StopBroker() {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.brokerEP == nil || s.closed {
		return
	}
	s.brokerEP.stop()
	// Under regMu so a registration already under way cannot bring the
	// stopped broker's routes back.
	s.regMu.Lock()
	if ns := s.nameServer(); ns != nil {
		ns.unregister(s.opts.BrokerName, s.advertised(s.brokerEP))
	}
	s.closeRemotesLocked()
	s.regMu.Unlock()
	s.log.Info("broker stopped")
}

// StartBroker restarts a stopped broker on the same address with its state
// and registers it with the NameServers at once.
func (s *Server) StartBroker() error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.brokerEP == nil || s.closed {
		return errors.New("rmqtest: no broker to start")
	}
	if err := s.brokerEP.start(); err != nil {
		return fmt.Errorf("rmqtest: restart broker: %w", err)
	}
	s.log.Info("broker started", "addr", s.brokerEP.addr)
	s.registerNow()
	return nil
}

// registerSoon asks the registration loop to register at once.
func (s *Server) registerSoon() {
	select {
	case s.regWake <- struct{}{}:
	default:
	}
}

// registerLoop registers the broker every RegisterInterval and on demand.
func (s *Server) registerLoop(stop <-chan struct{}) {
	defer s.bg.Done()
	t := time.NewTicker(s.opts.RegisterInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-s.regWake:
		}
		s.registerNow()
	}
}

// registerNow registers the running broker endpoints (master as brokerId
// 0, follower as 1) with this server's NameServer (a direct call) and with
// every RegisterTo NameServer (REGISTER_BROKER).
func (s *Server) registerNow() {
	if s.broker == nil {
		return
	}
	s.regMu.Lock()
	defer s.regMu.Unlock()
	for _, ep := range []*endpoint{s.brokerEP, s.followerEP} {
		if ep == nil || !ep.isRunning() {
			continue
		}
		id := int64(remoting.MasterID)
		if !s.isMaster(ep) {
			id = 1
		}
		reg := s.broker.registration(id, s.advertised(ep))
		if s.nsEP != nil && s.nsEP.isRunning() {
			if ns := s.nameServer(); ns != nil {
				ns.register(reg, nil)
			}
		}
		for _, addr := range s.opts.RegisterTo {
			if err := s.registerRemote(addr, reg); err != nil {
				s.log.Warn("broker registration failed", "namesrv", addr, "err", err)
			}
		}
	}
}

// registerRemote sends REGISTER_BROKER to addr. Call with regMu held.
func (s *Server) registerRemote(addr string, reg brokerRegistration) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c := s.remotes[addr]
	if c == nil {
		var err error
		c, err = remoting.Dial(ctx, addr, remoting.ClientOptions{MaxFrameSize: s.opts.MaxFrameSize})
		if err != nil {
			return err
		}
		s.remotes[addr] = c
		s.log.Info("connected to name server", "namesrv", addr)
	}
	resp, err := c.Invoke(ctx, encodeRegistration(reg))
	if err != nil {
		_ = c.Close()
		delete(s.remotes, addr)
		return err
	}
	if resp.Code != remoting.Success {
		return fmt.Errorf("code %d: %s", resp.Code, resp.Remark)
	}
	return nil
}

func (s *Server) closeRemotes() {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	s.closeRemotesLocked()
}

func (s *Server) closeRemotesLocked() {
	for addr, c := range s.remotes {
		_ = c.Close()
		delete(s.remotes, addr)
	}
}
