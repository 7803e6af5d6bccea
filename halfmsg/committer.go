package halfmsg

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txorder/txorder/internal/remoting"
)

// Action is what the Committer tells the broker about a half message.
type Action string

// The two endings of a half message.
const (
	ActionCommit   Action = "commit"
	ActionRollback Action = "rollback"
)

func (a Action) decision() int {
	if a == ActionCommit {
		return remoting.TransactionCommitType
	}
	return remoting.TransactionRollbackType
}

// CommitterConfig tunes a Committer.
type CommitterConfig struct {
	// NameServers returns the NameServers ("ip:port") the master of a
	// broker name is asked from (GET_ROUTEINFO_BY_TOPIC), at each lookup:
	// orderd passes the resolver its RocketMQ clients use
	// (nsresolve.Resolver.Resolve), so host names follow DNS. Required.
	NameServers func() []string
	// Topic is the event topic: its route lists the brokers that hold its
	// half messages. Required.
	Topic string
	// Workers send END_TRANSACTION concurrently (default 4).
	Workers int
	// Queue bounds the releases waiting for a worker (default 1024); a
	// release that finds it full is skipped and left to the check-back.
	Queue int
	// Timeout bounds one release from its dequeue: the coordinates read,
	// the route lookup and END_TRANSACTION with its answer (default 2s).
	Timeout time.Duration
	// RouteTTL is how long the topic's route (and so each broker name's
	// master), once looked up, is reused; 0 asks a NameServer for every
	// release. A refusal as a slave or a failed call forgets it at once.
	RouteTTL time.Duration
	// ConnsPerAddr is the number of connections kept to each broker and
	// NameServer (default 2).
	ConnsPerAddr int
	// DialTimeout bounds each connect (default 500ms).
	DialTimeout time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
}

func (c *CommitterConfig) defaults() error {
	if c.NameServers == nil || c.Topic == "" {
		return errors.New("halfmsg: committer needs name servers and the topic")
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.Queue <= 0 {
		c.Queue = 1024
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	if c.RouteTTL < 0 {
		c.RouteTTL = 0
	}
	if c.ConnsPerAddr <= 0 {
		c.ConnsPerAddr = 2
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 500 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// notFoundRetry is how long a release waits before it looks for missing
// coordinates a second time.
const notFoundRetry = 250 * time.Millisecond

// Committer ends half messages directly: Commit and Rollback queue a
// release and return at once; Run's workers send END_TRANSACTION, on
// connections of their own, to the current master of the half message's
// broker name. A release is tried once (a slave's refusal is sent once
// more to the master a fresh route names), bounded by Timeout; anything
// missing or failing is counted, and the half message's check-back
// decides as it always did.
type Committer struct {
	store  *Store
	cfg    CommitterConfig
	logger *slog.Logger
	pool   *remoting.Pool
	jobs   chan job
	routes *topicRoutes

	m committerMetrics
}

type job struct {
	action Action
	id     uuid.UUID
	queued time.Time
}

// NewCommitter returns a Committer; reg may be nil.
func NewCommitter(store *Store, reg prometheus.Registerer, logger *slog.Logger, cfg CommitterConfig) (*Committer, error) {
	if store == nil || logger == nil {
		return nil, errors.New("halfmsg: committer needs a store and a logger")
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	c := &Committer{store: store, cfg: cfg, logger: logger.With("component", "fast_commit"),
		pool: remoting.NewPool(remoting.PoolOptions{Size: cfg.ConnsPerAddr, DialTimeout: cfg.DialTimeout}),
		jobs: make(chan job, cfg.Queue), m: newCommitterMetrics()}
	c.routes = newTopicRoutes(c.pool, cfg.NameServers, cfg.Topic, cfg.RouteTTL, false, cfg.Now)
	if reg != nil {
		if err := c.m.register(reg); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Commit queues a COMMIT of the order's half message. It never blocks.
func (c *Committer) Commit(id uuid.UUID) { c.enqueue(ActionCommit, id) }

// Rollback queues a ROLLBACK of the order's half message. It never blocks.
func (c *Committer) Rollback(id uuid.UUID) { c.enqueue(ActionRollback, id) }

func (c *Committer) enqueue(a Action, id uuid.UUID) {
	select {
	case c.jobs <- job{action: a, id: id, queued: c.cfg.Now()}:
	default:
		c.m.skipped.WithLabelValues(string(a), "queue_full").Inc()
	}
}

// Committed reports whether a fast COMMIT of the order's half message was
// accepted by the broker (for the check-back's count of duplicates).
func (c *Committer) Committed(ctx context.Context, id uuid.UUID) (bool, error) {
	return c.store.Committed(ctx, id)
}

// Run runs the workers until ctx is done; releases in progress finish
// (each within Timeout), queued ones are left to their check-backs.
func (c *Committer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range c.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-c.jobs:
					c.release(j)
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// Close closes the connections. Call it after Run returned.
func (c *Committer) Close() { c.pool.Close() }

// release ends one half message, or counts why it did not.
func (c *Committer) release(j job) {
	// Not Run's context: a release that started finishes within Timeout
	// even while orderd shuts down.
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	action := string(j.action)
	log := c.logger.With("order_id", j.id.String(), "action", action)
	coords, err := c.store.Get(ctx, j.id)
	if errors.Is(err, ErrNotFound) {
		// The placement queued them before it answered, but a payment sent
		// right after the answer can overtake their write: look once more.
		select {
		case <-time.After(notFoundRetry):
			coords, err = c.store.Get(ctx, j.id)
		case <-ctx.Done():
		}
	}
	switch {
	case errors.Is(err, ErrNotFound):
		c.m.skipped.WithLabelValues(action, "no_coordinates").Inc()
		log.Debug("no half message coordinates; the check-back releases it")
		return
	case err != nil:
		c.m.skipped.WithLabelValues(action, "redis").Inc()
		log.Info("half message coordinates unreadable; the check-back releases it", "error", err)
		return
	}
	log = log.With("broker", coords.BrokerName, "msg_id", coords.MsgID)
	for attempt := 0; ; attempt++ {
		addr, route, err := c.master(ctx, coords.BrokerName, attempt > 0)
		if err != nil {
			c.m.failed.WithLabelValues(action, "no_route").Inc()
			log.Info("no master for the half message's broker; the check-back releases it", "error", err)
			return
		}
		resp, err := c.pool.Invoke(ctx, addr, remoting.NewEndTransaction(coords.header(j.action.decision())))
		if err != nil {
			c.routes.expire(route)
			reason := "timeout"
			if errors.Is(err, remoting.ErrNotSent) {
				reason = "unreachable"
			} else {
				c.m.sent.WithLabelValues(action).Inc()
				if ctx.Err() == nil {
					reason = "connection"
				}
			}
			c.m.failed.WithLabelValues(action, reason).Inc()
			log.Info("end transaction not answered; the check-back decides", "broker_addr", addr, "reason", reason, "error", err)
			return
		}
		c.m.sent.WithLabelValues(action).Inc()
		if resp.Code == remoting.Success {
			c.m.accepted.WithLabelValues(action).Inc()
			c.m.latency.WithLabelValues(action).Observe(c.cfg.Now().Sub(j.queued).Seconds())
			if j.action == ActionCommit {
				if err := c.store.MarkCommitted(ctx, j.id); err != nil {
					log.Debug("record fast commit", "error", err)
				}
			}
			log.Debug("half message ended", "broker_addr", addr)
			return
		}
		reason := refusalReason(resp)
		c.m.refused.WithLabelValues(action, reason).Inc()
		if resp.Code == remoting.SlaveNotAvailable {
			// The route was stale (a leader change): the slave did nothing,
			// so the master a fresh route names gets it once.
			c.routes.expire(route)
			if attempt == 0 {
				continue
			}
		}
		log.Warn("broker refused end transaction; the check-back decides", "broker_addr", addr,
			"code", resp.Code, "remark", resp.Remark, "reason", reason)
		return
	}
}

// refusalReason names a broker's refusal of END_TRANSACTION by its code
// and, for SYSTEM_ERROR, by Java's remark (EndTransactionProcessor,
// rocketmq-all-4.9.4
// broker/src/main/java/org/apache/rocketmq/broker/processor/EndTransactionProcessor.java:165-193;
// TransactionalMessageServiceImpl.getHalfMessageByOffset :453-464).
func refusalReason(resp *remoting.Command) string {
	switch resp.Code {
	case remoting.SlaveNotAvailable:
		return "slave_not_available"
	case remoting.IllegalOperation:
		return "illegal_operation"
	case remoting.SystemError:
		switch resp.Remark {
		case "Find prepared transaction message failed":
			return "not_found"
		case "The producer group wrong":
			return "producer_group"
		case "The transaction state table offset wrong":
			return "queue_offset"
		case "The commit log offset wrong":
			return "commit_log_offset"
		}
		return "system_error"
	}
	return "code_" + strconv.Itoa(resp.Code)
}

// master returns the address of brokerName's master from the topic's
// route (topicRoutes: cached within RouteTTL unless fresh; while no
// NameServer answers, the route last known — a NameServer outage must not
// stop the fast commit, as it does not stop the producer — except for a
// fresh lookup, which follows a refusal by the master it named).
func (c *Committer) master(ctx context.Context, brokerName string, fresh bool) (string, *sendRoute, error) {
	r, stale, err := c.routes.get(ctx, fresh)
	if err != nil {
		return "", nil, err
	}
	if stale {
		if fresh {
			return "", nil, errors.New("no NameServer answered for a fresh route to broker " + brokerName)
		}
		c.m.staleRoutes.Inc()
	}
	addr, ok := r.masters[brokerName]
	if !ok {
		// A NameServer that lists no master for it (an election in
		// progress, or a route that lost the broker) decides: another
		// NameServer would not know better.
		return "", nil, errors.New("the route names no master for broker " + brokerName)
	}
	return addr, r, nil
}

type committerMetrics struct {
	sent, accepted           *prometheus.CounterVec
	refused, failed, skipped *prometheus.CounterVec
	latency                  *prometheus.HistogramVec
	staleRoutes              prometheus.Counter
}

func newCommitterMetrics() committerMetrics {
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "txorder", Subsystem: "fastcommit", Name: name, Help: help}
	}
	return committerMetrics{
		sent: prometheus.NewCounterVec(opts("sent_total",
			"END_TRANSACTION requests sent by the fast path, by action (commit, rollback)."), []string{"action"}),
		accepted: prometheus.NewCounterVec(opts("accepted_total",
			"Fast commits and rollbacks the broker accepted."), []string{"action"}),
		refused: prometheus.NewCounterVec(opts("refused_total",
			"Fast commits and rollbacks the broker refused, by reason (slave_not_available, not_found, producer_group, queue_offset, commit_log_offset, illegal_operation, system_error, code_N); the check-back decides those."),
			[]string{"action", "reason"}),
		failed: prometheus.NewCounterVec(opts("failed_total",
			"Fast commits and rollbacks without an answer, by reason (no_route, unreachable, connection, timeout); the check-back decides those."),
			[]string{"action", "reason"}),
		skipped: prometheus.NewCounterVec(opts("skipped_total",
			"Fast commits and rollbacks not sent, by reason (no_coordinates, redis, queue_full); the check-back decides those."),
			[]string{"action", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "txorder", Subsystem: "fastcommit",
			Name: "latency_seconds", Help: "From the payment (or close) to the broker's acceptance of the fast commit (or rollback).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"action"}),
		staleRoutes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "txorder", Subsystem: "fastcommit",
			Name: "stale_routes_total", Help: "Releases sent to the last known master because no NameServer answered."}),
	}
}

func (m committerMetrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.sent, m.accepted, m.refused, m.failed, m.skipped, m.latency, m.staleRoutes} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
