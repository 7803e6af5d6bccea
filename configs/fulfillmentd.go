package configs

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// FulfillmentEnvPrefix starts every environment override of fulfillmentd:
// TXORDER_FULFILLMENT__ plus the key path, e.g.
// TXORDER_FULFILLMENT__MYSQL__PASSWORD for mysql.password. fulfillmentd
// reads only these (orderd's TXORDER_MYSQL__* never reach it, so the two
// services can share an environment without one's database or listen
// address leaking into the other); its file is configs/fulfillmentd.yaml.
const FulfillmentEnvPrefix = EnvPrefix + "FULFILLMENT__"

// Fulfillmentd is the configuration of the fulfillment service, the
// downstream consumer of ORDER_PAID (docs/design.md §4.6).
type Fulfillmentd struct {
	HTTP     ProbeHTTP           `koanf:"http"`
	MySQL    MySQL               `koanf:"mysql"`
	RocketMQ FulfillmentRocketMQ `koanf:"rocketmq"`
	// DeadLetter is the recorder of %DLQ%<group>.
	DeadLetter DeadLetter `koanf:"dead_letter"`
	// Handler tunes the ORDER_PAID handler.
	Handler FulfillmentHandler `koanf:"handler"`
	Log     Log                `koanf:"log"`
}

// ProbeHTTP is a service's /healthz, /readyz and /metrics server.
type ProbeHTTP struct {
	Addr              string        `koanf:"addr" validate:"required,listen_addr"`
	ReadHeaderTimeout time.Duration `koanf:"read_header_timeout" validate:"gt=0"`
	WriteTimeout      time.Duration `koanf:"write_timeout" validate:"gt=0"`
	// ShutdownTimeout bounds the graceful stop: the wait for in-flight
	// handlers, then the HTTP drain.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout" validate:"gt=0"`
}

// FulfillmentRocketMQ is the push consumer of ORDER_PAID.
type FulfillmentRocketMQ struct {
	NameServers []string `koanf:"name_servers" validate:"required,min=1,dive,hostname_port"`
	Topic       string   `koanf:"topic" validate:"required,max=127"`
	// Group is the consumer group; consumption is recorded per group.
	Group string `koanf:"group" validate:"required,max=255"`
	// InstanceName keeps this client apart from any other client in the
	// process (the client shares one instance per client id), and from
	// other replicas on the same IP. "{hostname}" in it is replaced by the
	// host name (a container's id under docker compose).
	InstanceName string `koanf:"instance_name" validate:"required"`
	// ConsumeGoroutines: how many handler calls run at once.
	ConsumeGoroutines int `koanf:"consume_goroutines" validate:"gte=1,lte=1000"`
	// MaxReconsumeTimes: failed deliveries before the broker moves a
	// message to %DLQ%<group>.
	MaxReconsumeTimes int `koanf:"max_reconsume_times" validate:"gte=0,lte=64"`
	// BatchSize: messages per handler call (one failure retries them all).
	BatchSize int `koanf:"batch_size" validate:"gte=1,lte=1024"`
	// PullBatchSize: messages per pull request.
	PullBatchSize int `koanf:"pull_batch_size" validate:"gte=1,lte=1024"`
}

// DeadLetter is the dead letter recorder.
type DeadLetter struct {
	// Group consumes %DLQ%<rocketmq.group>.
	Group string `koanf:"group" validate:"required,max=255"`
	// RetryInterval: the dead letter topic exists only once the broker put
	// a first message in it; until then the recorder retries subscribing
	// this often.
	RetryInterval time.Duration `koanf:"retry_interval" validate:"gt=0"`
}

// FulfillmentHandler tunes the ORDER_PAID handler.
type FulfillmentHandler struct {
	// Timeout bounds the work of one message (its MySQL transaction).
	Timeout time.Duration `koanf:"timeout" validate:"gt=0"`
}

// DefaultFulfillmentd returns the defaults configs/fulfillmentd.yaml
// documents.
func DefaultFulfillmentd() Fulfillmentd {
	return Fulfillmentd{
		HTTP: ProbeHTTP{Addr: "127.0.0.1:8081", ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 15 * time.Second,
			ShutdownTimeout: 20 * time.Second},
		MySQL: MySQL{
			Addr: "127.0.0.1:3307", User: "txorder", Database: "txorder",
			Timeout: 5 * time.Second, ConnectTimeout: time.Second,
			MaxOpenConns: 32, MaxIdleConns: 32, ConnMaxLife: 30 * time.Minute,
			MigrateOnStart: true,
		},
		RocketMQ: FulfillmentRocketMQ{
			NameServers:       []string{"127.0.0.1:9876"},
			Topic:             "ORDER_PAID",
			Group:             "fulfillment",
			InstanceName:      "fulfillmentd",
			ConsumeGoroutines: 20,
			MaxReconsumeTimes: 16,
			BatchSize:         1,
			PullBatchSize:     32,
		},
		DeadLetter: DeadLetter{Group: "fulfillment-dlq", RetryInterval: 10 * time.Second},
		Handler:    FulfillmentHandler{Timeout: 5 * time.Second},
		Log:        Log{Level: "info", Format: "json"},
	}
}

// LoadFulfillmentd returns the defaults overlaid with the file at path and
// the TXORDER_FULFILLMENT__* variables of environ (os.Environ when nil),
// validated. Other TXORDER_ variables (orderd's) are ignored.
func LoadFulfillmentd(path string, environ []string) (Fulfillmentd, error) {
	cfg := DefaultFulfillmentd()
	if err := Load(&cfg, path, FulfillmentEnviron(environ)); err != nil {
		// Load names variables with the plain prefix; name ours.
		return Fulfillmentd{}, fmt.Errorf("%s", strings.ReplaceAll(err.Error(), EnvPrefix, FulfillmentEnvPrefix))
	}
	cfg.RocketMQ.InstanceName = ExpandHostname(cfg.RocketMQ.InstanceName)
	return cfg, nil
}

// FulfillmentEnviron returns the TXORDER_FULFILLMENT__* variables of
// environ (os.Environ when nil) renamed to TXORDER_*, the form Load reads,
// and nothing else. It never returns nil.
func FulfillmentEnviron(environ []string) []string {
	if environ == nil {
		environ = os.Environ()
	}
	out := []string{}
	for _, kv := range environ {
		if rest, ok := strings.CutPrefix(kv, FulfillmentEnvPrefix); ok {
			out = append(out, EnvPrefix+rest)
		}
	}
	return out
}

// WithoutFulfillment returns environ (os.Environ when nil) without the
// TXORDER_FULFILLMENT__* variables, for loading orderd's configuration in
// a process (ordertool) that sees both.
func WithoutFulfillment(environ []string) []string {
	if environ == nil {
		environ = os.Environ()
	}
	out := []string{}
	for _, kv := range environ {
		if !strings.HasPrefix(kv, FulfillmentEnvPrefix) {
			out = append(out, kv)
		}
	}
	return out
}

// Check implements the cross-field rules Validate runs after the tags.
func (c *Fulfillmentd) Check() []string {
	var msgs []string
	if c.MySQL.MaxIdleConns > c.MySQL.MaxOpenConns {
		msgs = append(msgs, fmt.Sprintf("mysql.max_idle_conns: %d is more than mysql.max_open_conns %d",
			c.MySQL.MaxIdleConns, c.MySQL.MaxOpenConns))
	}
	if c.DeadLetter.Group == c.RocketMQ.Group {
		msgs = append(msgs, fmt.Sprintf("dead_letter.group: %q must differ from rocketmq.group", c.DeadLetter.Group))
	}
	// Every handler call may hold a connection for its transaction.
	if c.RocketMQ.ConsumeGoroutines > c.MySQL.MaxOpenConns {
		msgs = append(msgs, fmt.Sprintf("rocketmq.consume_goroutines: %d handlers would wait for %d MySQL connections; raise mysql.max_open_conns",
			c.RocketMQ.ConsumeGoroutines, c.MySQL.MaxOpenConns))
	}
	return msgs
}
