package configs

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Orderd is the configuration of the order service.
type Orderd struct {
	// Mode is development or production. Production refuses the
	// development API key and an empty payment secret.
	Mode     string   `koanf:"mode" validate:"oneof=development production"`
	HTTP     HTTP     `koanf:"http"`
	MySQL    MySQL    `koanf:"mysql"`
	Redis    Redis    `koanf:"redis"`
	RocketMQ RocketMQ `koanf:"rocketmq"`
	Order    Order    `koanf:"order"`
	// Transaction tunes the transaction listener (docs/design.md §4.2).
	Transaction Transaction `koanf:"transaction"`
	// GroupCommit shares one MySQL transaction (and one fsync) among
	// concurrent placements (order.GroupCommitConfig).
	GroupCommit GroupCommit `koanf:"group_commit"`
	// Spill tunes the spill queue (orders waiting for RocketMQ) and its drainer.
	Spill Spill `koanf:"spill"`
	// Reconciler tunes the republishing of paid orders the topic never saw.
	Reconciler Reconciler `koanf:"reconciler"`
	// Closer tunes the closing of unpaid orders whose check-back never came.
	Closer Closer `koanf:"closer"`
	// Idempotency tunes the expiry of idempotency keys in MySQL.
	Idempotency Idempotency `koanf:"idempotency"`
	// FastCommit tunes the release of a paid order's event at its payment.
	FastCommit FastCommit `koanf:"fast_commit"`
	Auth       Auth       `koanf:"auth"`
	Limits     Limits     `koanf:"limits"`
	Payment    Payment    `koanf:"payment"`
	// Console is the operator console under /console.
	Console Console `koanf:"console"`
	Log     Log     `koanf:"log"`
}

// Limits bounds what API clients may ask of orderd (per replica).
type Limits struct {
	// Enabled turns the rate limits and the in-flight bound on. Turn it
	// off only to measure what they cost.
	Enabled bool `koanf:"enabled"`
	// Rate is the sustained requests per second each API client (and
	// admin) may send, Burst how many at once above it; beyond that 429
	// with Retry-After.
	Rate  float64 `koanf:"rate" validate:"gt=0"`
	Burst int     `koanf:"burst" validate:"gte=1"`
	// Clients overrides Rate and Burst by client name (a name of
	// auth.api_keys or auth.admin_keys).
	Clients map[string]ClientLimit `koanf:"clients" validate:"dive"`
	// MaxInFlight bounds the requests handled at once; beyond it 503 with
	// Retry-After at once, before queues build up.
	MaxInFlight int `koanf:"max_in_flight" validate:"gte=1"`
}

// ClientLimit is one client's rate limit.
type ClientLimit struct {
	Rate  float64 `koanf:"rate" validate:"gt=0"`
	Burst int     `koanf:"burst" validate:"gte=1"`
}

// Idempotency is the retention of idempotency keys in MySQL.
type Idempotency struct {
	// SweepInterval between rounds of the expiry of keys older than
	// redis.idempotency_ttl.
	SweepInterval time.Duration `koanf:"sweep_interval" validate:"gt=0"`
	// SweepBatch bounds the keys deleted per statement (and lock held).
	SweepBatch int `koanf:"sweep_batch" validate:"gte=1,lte=10000"`
}

// Console is the operator console: served under /console when enabled and
// auth.admin_keys has at least one key (the admin keys log in).
type Console struct {
	Enabled bool `koanf:"enabled"`
	// SessionSecret signs session cookies and CSRF tokens; every replica
	// behind one load balancer needs the same one. Required in production
	// mode; in development an empty one is replaced by a random secret per
	// process (sessions then end with the process).
	SessionSecret     string `koanf:"session_secret" secret:"true"`
	SessionSecretFile string `koanf:"session_secret_file" secretfile:"SessionSecret"`
	// SessionTTL is how long a login lasts.
	SessionTTL time.Duration `koanf:"session_ttl" validate:"gt=0,lte=24h"`
	// SecureCookies marks cookies Secure although orderd itself serves
	// plain HTTP (TLS ends at a load balancer).
	SecureCookies bool `koanf:"secure_cookies"`
	// DeadLetters shows and replays fulfillmentd's dead letters, read from
	// orderd's own database: turn it off when the fulfillment tables live
	// in another database (ordertool dlq still works there).
	DeadLetters ConsoleDeadLetters `koanf:"dead_letters"`
	// Logins bounds failed logins per client address.
	Logins ConsoleLogins `koanf:"logins"`
}

// ConsoleLogins is the bound on failed console logins, per client address
// and replica: Burst at once, then one more every Every; beyond, 429 with
// Retry-After, whatever the key.
type ConsoleLogins struct {
	Burst int           `koanf:"burst" validate:"gte=1"`
	Every time.Duration `koanf:"every" validate:"gt=0"`
	// TrustedProxies (CIDRs or addresses) are the load balancers whose
	// X-Forwarded-For names the client; from any other peer the header is
	// ignored. Empty: every login counts against its TCP peer (behind a
	// load balancer, then, all logins share the balancer's bucket).
	TrustedProxies []string `koanf:"trusted_proxies" validate:"dive,cidr|ip"`
}

// ConsoleDeadLetters is the console's view of fulfillment's dead letters.
type ConsoleDeadLetters struct {
	Enabled bool `koanf:"enabled"`
	// Group is fulfillmentd's consumer group (its rocketmq.group).
	Group string `koanf:"group" validate:"required"`
}

// Payment is the payment provider's webhook.
type Payment struct {
	// WebhookSecret is the HMAC-SHA256 key the provider signs
	// notifications with.
	WebhookSecret     string `koanf:"webhook_secret" secret:"true"`
	WebhookSecretFile string `koanf:"webhook_secret_file" secretfile:"WebhookSecret"`
	// Tolerance is how far a signature's timestamp may be from now.
	Tolerance time.Duration `koanf:"tolerance" validate:"gt=0,lte=1h"`
}

// HTTP is the API server.
type HTTP struct {
	Addr              string        `koanf:"addr" validate:"required,listen_addr"`
	ReadHeaderTimeout time.Duration `koanf:"read_header_timeout" validate:"gt=0"`
	ReadTimeout       time.Duration `koanf:"read_timeout" validate:"gt=0"`
	WriteTimeout      time.Duration `koanf:"write_timeout" validate:"gt=0"`
	IdleTimeout       time.Duration `koanf:"idle_timeout" validate:"gt=0"`
	// DrainDelay is how long SIGTERM keeps serving with /readyz answering
	// 503 before the listener closes, so that load balancers take the
	// replica out of rotation before connections are refused. Make it at
	// least the balancer's check interval × its fall count.
	DrainDelay time.Duration `koanf:"drain_delay" validate:"gte=0,lte=5m"`
	// ShutdownTimeout bounds the drain of in-flight requests on SIGTERM,
	// after DrainDelay.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout" validate:"gt=0"`
	// MaxBodyBytes caps request bodies (413 beyond).
	MaxBodyBytes int64 `koanf:"max_body_bytes" validate:"gt=0,lte=1048576"`
	// PprofAddr, if set, serves net/http/pprof (/debug/pprof/) on its own
	// listener for profiling. Off by default; only a loopback address
	// (127.0.0.1, ::1, localhost) is accepted: profiles show internals and
	// cost CPU, and are for an operator on the host.
	PprofAddr string `koanf:"pprof_addr" validate:"omitempty,loopback_addr"`
}

// MySQL is the order database.
type MySQL struct {
	Addr         string `koanf:"addr" validate:"required,hostname_port"`
	User         string `koanf:"user" validate:"required"`
	Password     string `koanf:"password" secret:"true"`
	PasswordFile string `koanf:"password_file" secretfile:"Password"`
	Database     string `koanf:"database" validate:"required"`
	// Timeout bounds every store call (and so how long a request waits on
	// a MySQL that hangs before it is treated as down).
	Timeout        time.Duration `koanf:"timeout" validate:"gt=0"`
	ConnectTimeout time.Duration `koanf:"connect_timeout" validate:"gt=0"`
	MaxOpenConns   int           `koanf:"max_open_conns" validate:"gte=1"`
	MaxIdleConns   int           `koanf:"max_idle_conns" validate:"gte=0"`
	ConnMaxLife    time.Duration `koanf:"conn_max_lifetime" validate:"gte=0"`
	// MigrateOnStart applies pending migrations when orderd starts. Turn it
	// off when several replicas start together and run `ordertool migrate`.
	MigrateOnStart bool `koanf:"migrate_on_start"`
}

// GroupCommit groups concurrent placements' local transactions.
type GroupCommit struct {
	// Enabled turns grouping on.
	Enabled bool `koanf:"enabled"`
	// Window is how long a group waits for more orders while another
	// group commits; a lone order never waits.
	Window time.Duration `koanf:"window" validate:"gt=0,lte=50ms"`
	// MaxBatch is the largest group.
	MaxBatch int `koanf:"max_batch" validate:"gte=1,lte=256"`
}

// DSN returns the go-sql-driver DSN for m.
func (m MySQL) DSN() string {
	c := mysql.NewConfig()
	c.Net = "tcp"
	c.Addr = m.Addr
	c.User = m.User
	c.Passwd = m.Password
	c.DBName = m.Database
	c.ParseTime = true
	c.Timeout = m.ConnectTimeout
	// Read/write timeouts catch a server that accepts but never answers,
	// even when a caller forgot a context deadline.
	c.ReadTimeout = m.Timeout + time.Second
	c.WriteTimeout = m.Timeout + time.Second
	c.Params = map[string]string{"time_zone": "'+00:00'"}
	return c.FormatDSN()
}

// Redis holds the order cache and the spill queue.
type Redis struct {
	Addr         string        `koanf:"addr" validate:"required,hostname_port"`
	Password     string        `koanf:"password" secret:"true"`
	PasswordFile string        `koanf:"password_file" secretfile:"Password"`
	DB           int           `koanf:"db" validate:"gte=0"`
	Timeout      time.Duration `koanf:"timeout" validate:"gt=0"`
	// KeyPrefix starts every key txorder writes.
	KeyPrefix string `koanf:"key_prefix" validate:"required"`
	// IdempotencyTTL: how long Redis remembers an idempotency key, so a
	// retry during a MySQL outage finds its order.
	IdempotencyTTL time.Duration `koanf:"idempotency_ttl" validate:"gt=0"`
	// BreakerFailures calls in a row that Redis does not answer (timeouts,
	// lost connections) open its circuit breaker: then every Redis call
	// fails at once, as against a Redis that refuses connections, until a
	// background probe every BreakerOpenFor gets an answer.
	BreakerFailures uint32        `koanf:"breaker_failures" validate:"gte=1"`
	BreakerOpenFor  time.Duration `koanf:"breaker_open_for" validate:"gt=0"`
}

// RocketMQ is the transactional producer's view of the cluster.
type RocketMQ struct {
	NameServers []string `koanf:"name_servers" validate:"required,min=1,dive,hostname_port"`
	Topic       string   `koanf:"topic" validate:"required,max=127"`
	// ProducerGroup is the transactional producer's own group: never share
	// it with another producer (check-backs go to any member of the group).
	ProducerGroup string `koanf:"producer_group" validate:"required,max=255"`
	// InstanceName keeps the producer's client id apart from any consumer
	// in the same process (the client shares one instance per client id),
	// and from other replicas on the same IP. "{hostname}" in it is
	// replaced by the host name (a container's id under docker compose).
	InstanceName string `koanf:"instance_name" validate:"required"`
	// SendTimeout bounds each half-message send, and so how long a
	// placement waits on a broker that stopped answering before the order
	// is spilled; sends take milliseconds when the broker is well.
	SendTimeout time.Duration `koanf:"send_timeout" validate:"gt=0"`
	// SendRetries: extra attempts of a failed half-message send.
	SendRetries int `koanf:"send_retries" validate:"gte=0,lte=5"`
	// DirectSend sends each placement's half message and its
	// END_TRANSACTION on orderd's own connections, one write per frame
	// (halfmsg.Sender); false sends them through the client's
	// SendMessageInTransaction. Check-backs go to the client's producer
	// either way (docs/design.md §4.1).
	DirectSend bool `koanf:"direct_send"`
	// TransactionTimeout is the broker's transactionTimeOut: no check-back
	// comes sooner after a half message. The local transaction must finish
	// well within it.
	TransactionTimeout time.Duration `koanf:"transaction_timeout" validate:"gt=0"`
	// CheckInterval and CheckMax are the broker's transactionCheckInterval
	// and transactionCheckMax; orderd cannot change them but checks that
	// its payment window fits in them.
	CheckInterval time.Duration `koanf:"check_interval" validate:"gt=0"`
	CheckMax      int           `koanf:"check_max" validate:"gte=1"`
}

// Order is the order domain.
type Order struct {
	// PaymentWindow: an unpaid order is closed this long after placement.
	PaymentWindow time.Duration `koanf:"payment_window" validate:"gt=0"`
}

// Transaction tunes the transaction listener.
type Transaction struct {
	// ExecuteTimeout bounds a placement's local transaction.
	ExecuteTimeout time.Duration `koanf:"execute_timeout" validate:"gt=0"`
	// CheckTimeout bounds one check-back (they are answered one at a time).
	CheckTimeout time.Duration `koanf:"check_timeout" validate:"gt=0"`
	// BreakerFailures consecutive MySQL failures open the circuit breaker.
	BreakerFailures uint32 `koanf:"breaker_failures" validate:"gte=1"`
	// BreakerOpenFor: how long it stays open before one probe.
	BreakerOpenFor time.Duration `koanf:"breaker_open_for" validate:"gt=0"`
	// CacheSweepInterval: how often orderd moves orders accepted during a
	// MySQL outage from Redis to MySQL without waiting for their check-back.
	CacheSweepInterval time.Duration `koanf:"cache_sweep_interval" validate:"gt=0"`
}

// Spill tunes the spill queue and its drainer (docs/design.md §4.5).
type Spill struct {
	// MaxAttempts placements of a spilled order before it is marked dead
	// (kept, listed by `ordertool spill list`, replayable). Every failed
	// attempt counts, an outage's too: with the default 240 and backoff_max
	// 30s, a RocketMQ outage of about two hours turns the oldest queued
	// orders dead, and an operator replays them (alert on
	// txorder_spill_dead_total).
	MaxAttempts int64 `koanf:"max_attempts" validate:"gte=1"`
	// ClaimIdle: entries a crashed drainer left are taken over after this.
	ClaimIdle time.Duration `koanf:"claim_idle" validate:"gt=0"`
	// BackoffMin and BackoffMax bound the drainer's wait after a failure.
	BackoffMin time.Duration `koanf:"backoff_min" validate:"gt=0"`
	BackoffMax time.Duration `koanf:"backoff_max" validate:"gtefield=BackoffMin"`
	// BreakerFailures consecutive failed sends make placements spill at
	// once for BreakerOpenFor, instead of each waiting for a send timeout.
	BreakerFailures uint32        `koanf:"breaker_failures" validate:"gte=1"`
	BreakerOpenFor  time.Duration `koanf:"breaker_open_for" validate:"gt=0"`
}

// Reconciler tunes the reconciler (docs/design.md §4.4).
type Reconciler struct {
	// Grace after payment before a paid order whose event was not seen on
	// the topic is republished; 0 means 3 × rocketmq.check_interval.
	Grace time.Duration `koanf:"grace" validate:"gte=0"`
	// Interval between rounds.
	Interval time.Duration `koanf:"interval" validate:"gt=0"`
	// Batch bounds the orders republished per round.
	Batch int `koanf:"batch" validate:"gte=1,lte=1000"`
	// ProducerGroup of the plain producer it republishes with (its client
	// instance name is rocketmq.instance_name + "-reconciler").
	ProducerGroup string `koanf:"producer_group" validate:"required"`
}

// GraceOr returns Grace, or 3 check intervals when it is 0.
func (r Reconciler) GraceOr(checkInterval time.Duration) time.Duration {
	if r.Grace > 0 {
		return r.Grace
	}
	return 3 * checkInterval
}

// Closer tunes the deadline closer: unpaid orders still PENDING_PAYMENT a
// grace after their payment deadline are closed, because their half message
// is gone and no check-back will close them (docs/design.md §4.2).
type Closer struct {
	// Grace after the payment deadline before a pending order is closed;
	// 0 means 3 × rocketmq.check_interval. It must exceed two intervals so
	// that the check-back closes (and rolls back) orders first.
	Grace time.Duration `koanf:"grace" validate:"gte=0"`
	// Interval between rounds.
	Interval time.Duration `koanf:"interval" validate:"gt=0"`
	// Batch bounds the orders closed per round.
	Batch int `koanf:"batch" validate:"gte=1,lte=1000"`
}

// GraceOr returns Grace, or 3 check intervals when it is 0.
func (c Closer) GraceOr(checkInterval time.Duration) time.Duration {
	if c.Grace > 0 {
		return c.Grace
	}
	return 3 * checkInterval
}

// FastCommit tunes the fast commit: after a payment commits PAID, orderd
// sends COMMIT for the order's half message itself, and ROLLBACK after the
// closer closes an order, instead of waiting for the broker's next
// check-back; the check-back stays the safety net (README, flow step 5).
type FastCommit struct {
	// Enabled turns the fast commit on; off, every event waits for its
	// check-back (up to a check interval).
	Enabled bool `koanf:"enabled"`
	// Workers send END_TRANSACTION concurrently.
	Workers int `koanf:"workers" validate:"gte=1,lte=64"`
	// Queue bounds the releases waiting for a worker; a full queue skips
	// the release (the check-back does it).
	Queue int `koanf:"queue" validate:"gte=1,lte=1000000"`
	// Timeout bounds one release: the coordinates read, the route lookup
	// and END_TRANSACTION with its answer.
	Timeout time.Duration `koanf:"timeout" validate:"gt=0,lte=1m"`
	// RouteTTL is how long the master of a broker name is reused before a
	// NameServer is asked again; 0 asks for every release. A slave's
	// refusal or a failed call forgets it at once.
	RouteTTL time.Duration `koanf:"route_ttl" validate:"gte=0,lte=1m"`
	// ConnsPerBroker is the number of connections kept to each broker and
	// NameServer.
	ConnsPerBroker int `koanf:"conns_per_broker" validate:"gte=1,lte=16"`
	// DialTimeout bounds each connect.
	DialTimeout time.Duration `koanf:"dial_timeout" validate:"gt=0"`
	// CoordinatesTTL is how long Redis keeps a placement's half-message
	// coordinates; 0 means order.payment_window + closer.grace +
	// closer.interval + rocketmq.check_interval: a payment can still win
	// until the closer's round, which rolls the order back.
	CoordinatesTTL time.Duration `koanf:"coordinates_ttl" validate:"gte=0"`
	// RecordQueue bounds the coordinates waiting to be written to Redis;
	// beyond it they are dropped (those events wait for their check-back).
	RecordQueue int `koanf:"record_queue" validate:"gte=1,lte=1000000"`
}

// CoordinatesTTLOr returns CoordinatesTTL, or when it is 0 the time until
// the closer's round after an unpaid order's deadline plus a check
// interval: c's payment window, closer grace and interval, and check
// interval.
func (f FastCommit) CoordinatesTTLOr(c Orderd) time.Duration {
	if f.CoordinatesTTL > 0 {
		return f.CoordinatesTTL
	}
	return c.Order.PaymentWindow + c.Closer.GraceOr(c.RocketMQ.CheckInterval) + c.Closer.Interval + c.RocketMQ.CheckInterval
}

// Auth holds API credentials.
type Auth struct {
	// APIKeys is a comma-separated list of name:key pairs. The name is the
	// client identity that scopes idempotency keys.
	APIKeys     string `koanf:"api_keys" secret:"true"`
	APIKeysFile string `koanf:"api_keys_file" secretfile:"APIKeys"`
	// AdminKeys (same format) may use the /v1/admin endpoints. Empty: the
	// admin endpoints are not served.
	AdminKeys     string `koanf:"admin_keys" secret:"true"`
	AdminKeysFile string `koanf:"admin_keys_file" secretfile:"AdminKeys"`
}

// Admins parses AdminKeys into key → admin name (empty map: none).
func (a Auth) Admins() (map[string]string, error) {
	if a.AdminKeys == "" {
		return map[string]string{}, nil
	}
	out, err := parseKeys(a.AdminKeys, "auth.admin_keys")
	return out, err
}

// DevAPIKey is the key `make run` uses. Production mode refuses it.
const DevAPIKey = "dev-key-change-me"

// Clients parses APIKeys into key → client name.
func (a Auth) Clients() (map[string]string, error) {
	out, err := parseKeys(a.APIKeys, "auth.api_keys")
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("auth.api_keys: no API key configured (set %s or auth.api_keys_file)", EnvName("auth.api_keys"))
	}
	return out, nil
}

func parseKeys(list, field string) (map[string]string, error) {
	out := map[string]string{}
	for _, pair := range strings.Split(list, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		name, key, ok := strings.Cut(pair, ":")
		if !ok || name == "" || len(key) < 16 {
			return nil, fmt.Errorf("%s: entry %q is not name:key with a key of at least 16 characters", field, redact(pair))
		}
		if !validClientName(name) {
			return nil, fmt.Errorf("%s: name %q must be 1 to %d of A-Z a-z 0-9 . _ - (it owns orders and scopes idempotency keys)",
				field, name, maxClientNameLen)
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("%s: key of %q is listed twice", field, name)
		}
		out[key] = name
	}
	return out, nil
}

// maxClientNameLen matches orders.client_id and idempotency_keys.client_id.
const maxClientNameLen = 64

func validClientName(name string) bool {
	if name == "" || len(name) > maxClientNameLen {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

func redact(pair string) string {
	name, _, _ := strings.Cut(pair, ":")
	return name + ":…"
}

// Log is the process log.
type Log struct {
	Level  string `koanf:"level" validate:"oneof=debug info warn error"`
	Format string `koanf:"format" validate:"oneof=json text"`
}

// Logger returns the process logger this configuration describes.
func (l Log) Logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level)) // validated: debug, info, warn or error
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// DefaultOrderd returns the defaults that configs/orderd.yaml documents.
func DefaultOrderd() Orderd {
	return Orderd{
		Mode: "development",
		HTTP: HTTP{
			Addr:              "127.0.0.1:8080",
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      15 * time.Second,
			IdleTimeout:       60 * time.Second,
			DrainDelay:        5 * time.Second,
			ShutdownTimeout:   20 * time.Second,
			MaxBodyBytes:      64 << 10,
		},
		MySQL: MySQL{
			Addr: "127.0.0.1:3307", User: "txorder", Database: "txorder",
			Timeout: 2 * time.Second, ConnectTimeout: time.Second,
			MaxOpenConns: 64, MaxIdleConns: 64, ConnMaxLife: 30 * time.Minute,
			MigrateOnStart: true,
		},
		GroupCommit: GroupCommit{Enabled: true, Window: 2 * time.Millisecond, MaxBatch: 32},
		Redis: Redis{Addr: "127.0.0.1:6380", Timeout: 500 * time.Millisecond,
			KeyPrefix: "txorder:", IdempotencyTTL: 24 * time.Hour, BreakerFailures: 3, BreakerOpenFor: time.Second},
		RocketMQ: RocketMQ{
			NameServers:        []string{"127.0.0.1:9876"},
			Topic:              "ORDER_PAID",
			ProducerGroup:      "order-tx-producer",
			InstanceName:       "orderd-tx",
			SendTimeout:        time.Second,
			SendRetries:        1,
			DirectSend:         true,
			TransactionTimeout: 6 * time.Second,
			CheckInterval:      30 * time.Second,
			CheckMax:           15,
		},
		Transaction: Transaction{ExecuteTimeout: 2 * time.Second, CheckTimeout: 500 * time.Millisecond,
			BreakerFailures: 3, BreakerOpenFor: time.Second, CacheSweepInterval: 5 * time.Second},
		Order: Order{PaymentWindow: 5 * time.Minute},
		Spill: Spill{MaxAttempts: 240, ClaimIdle: 30 * time.Second, BackoffMin: 200 * time.Millisecond,
			BackoffMax: 30 * time.Second, BreakerFailures: 3, BreakerOpenFor: 2 * time.Second},
		Reconciler:  Reconciler{Interval: 30 * time.Second, Batch: 100, ProducerGroup: "order-reconciler"},
		Closer:      Closer{Interval: 30 * time.Second, Batch: 100},
		Idempotency: Idempotency{SweepInterval: time.Minute, SweepBatch: 500},
		FastCommit: FastCommit{Enabled: true, Workers: 4, Queue: 1024, Timeout: 2 * time.Second, RouteTTL: time.Second,
			ConnsPerBroker: 2, DialTimeout: 500 * time.Millisecond, RecordQueue: 4096},
		Limits:  Limits{Enabled: true, Rate: 100, Burst: 200, MaxInFlight: 256},
		Payment: Payment{Tolerance: 5 * time.Minute},
		Console: Console{Enabled: true, SessionTTL: 8 * time.Hour,
			DeadLetters: ConsoleDeadLetters{Enabled: true, Group: "fulfillment"},
			Logins:      ConsoleLogins{Burst: 10, Every: 10 * time.Second}},
		Log: Log{Level: "info", Format: "json"},
	}
}

// LoadOrderd returns the defaults overlaid with the file at path and the
// environment, validated. fulfillmentd's TXORDER_FULFILLMENT__ variables
// are not orderd's and are skipped, so both services' settings can share
// one environment.
func LoadOrderd(path string, environ []string) (Orderd, error) {
	cfg := DefaultOrderd()
	if err := Load(&cfg, path, WithoutFulfillment(environ)); err != nil {
		return Orderd{}, err
	}
	cfg.RocketMQ.InstanceName = ExpandHostname(cfg.RocketMQ.InstanceName)
	return cfg, nil
}

// Check implements the cross-field rules Validate runs after the tags.
func (c *Orderd) Check() []string {
	var msgs []string
	if c.MySQL.MaxIdleConns > c.MySQL.MaxOpenConns {
		msgs = append(msgs, fmt.Sprintf("mysql.max_idle_conns: %d is more than mysql.max_open_conns %d",
			c.MySQL.MaxIdleConns, c.MySQL.MaxOpenConns))
	}
	// The broker gives up on a half message after check_max checks, one per
	// check_interval. An unpaid order must be closed (and its message rolled
	// back) before that, with one interval to spare for the closing check.
	budget := time.Duration(c.RocketMQ.CheckMax-1) * c.RocketMQ.CheckInterval
	if c.Order.PaymentWindow > budget {
		msgs = append(msgs, fmt.Sprintf("order.payment_window: %s does not fit in rocketmq.check_max (%d) × rocketmq.check_interval (%s) minus one interval = %s; shorten the window or raise the broker's transactionCheckMax",
			c.Order.PaymentWindow, c.RocketMQ.CheckMax, c.RocketMQ.CheckInterval, budget))
	}
	// The local transaction must end before the first check-back can
	// arrive, or the check could find nothing and roll back an order that
	// is being accepted. The broker counts transaction_timeout from the half
	// message's birth, which is before its send: send, then the MySQL
	// write, then the cache write if MySQL failed.
	if local := c.RocketMQ.SendTimeout + c.Transaction.ExecuteTimeout + c.Redis.Timeout; local >= c.RocketMQ.TransactionTimeout {
		msgs = append(msgs, fmt.Sprintf("transaction.execute_timeout: %s plus rocketmq.send_timeout %s plus redis.timeout %s must be shorter than rocketmq.transaction_timeout %s, or a check-back can race the local transaction",
			c.Transaction.ExecuteTimeout, c.RocketMQ.SendTimeout, c.Redis.Timeout, c.RocketMQ.TransactionTimeout))
	}
	if g := c.Reconciler.GraceOr(c.RocketMQ.CheckInterval); g <= 2*c.RocketMQ.CheckInterval {
		msgs = append(msgs, fmt.Sprintf("reconciler.grace: %s must be more than two rocketmq.check_interval (%s), or events a check-back is about to commit get published twice",
			g, c.RocketMQ.CheckInterval))
	}
	if g := c.Closer.GraceOr(c.RocketMQ.CheckInterval); g <= 2*c.RocketMQ.CheckInterval {
		msgs = append(msgs, fmt.Sprintf("closer.grace: %s must be more than two rocketmq.check_interval (%s): the check-back closes unpaid orders at their deadline, the closer only those whose check-back never came",
			g, c.RocketMQ.CheckInterval))
	}
	if f := c.FastCommit; f.CoordinatesTTL > 0 && f.CoordinatesTTL < c.Order.PaymentWindow {
		msgs = append(msgs, fmt.Sprintf("fast_commit.coordinates_ttl: %s is shorter than order.payment_window %s: orders paid late in their window would wait for their check-back",
			f.CoordinatesTTL, c.Order.PaymentWindow))
	}
	admins, err := c.Auth.Admins()
	if err != nil {
		msgs = append(msgs, err.Error())
	}
	if c.Mode == "production" && c.Payment.WebhookSecret == "" {
		msgs = append(msgs, fmt.Sprintf("payment.webhook_secret: required in production mode (set %s or payment.webhook_secret_file)",
			EnvName("payment.webhook_secret")))
	}
	if c.Console.Enabled && c.Auth.AdminKeys != "" {
		if c.Mode == "production" && c.Console.SessionSecret == "" {
			msgs = append(msgs, fmt.Sprintf("console.session_secret: required in production mode when auth.admin_keys is set (set %s or console.session_secret_file, the same on every replica), or set console.enabled false",
				EnvName("console.session_secret")))
		}
		if c.Console.SessionSecret != "" && len(c.Console.SessionSecret) < 32 {
			msgs = append(msgs, fmt.Sprintf("console.session_secret: %d characters; use at least 32", len(c.Console.SessionSecret)))
		}
	}
	if c.Payment.WebhookSecret != "" && len(c.Payment.WebhookSecret) < 32 {
		msgs = append(msgs, fmt.Sprintf("payment.webhook_secret: %d characters; use at least 32", len(c.Payment.WebhookSecret)))
	}
	// A missing key is only an error for orderd itself (Main.Open asks for
	// Clients); ordertool has no use for API keys.
	if c.Auth.APIKeys != "" {
		clients, err := c.Auth.Clients()
		if err != nil {
			msgs = append(msgs, err.Error())
		}
		names := map[string]bool{}
		for _, name := range admins {
			names[name] = true
		}
		for _, name := range clients {
			names[name] = true
		}
		for name := range c.Limits.Clients {
			if !names[name] {
				msgs = append(msgs, fmt.Sprintf("limits.clients.%s: no client or admin of that name (names are case-sensitive; %s lower-cases them, so set upper-case names in the file)",
					name, EnvName("limits.clients.<name>.rate")))
			}
		}
		for key, name := range clients {
			if c.Mode == "production" && key == DevAPIKey {
				msgs = append(msgs, fmt.Sprintf("auth.api_keys: client %q uses the development key in production mode", name))
			}
			if admin, dup := admins[key]; dup {
				msgs = append(msgs, fmt.Sprintf("auth.admin_keys: admin %q has the key of client %q; a key is a client's or an admin's", admin, name))
			}
		}
	}
	return msgs
}
