package configs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestFulfillmentdFileMatchesDefaults(t *testing.T) {
	got, err := LoadFulfillmentd("fulfillmentd.yaml", []string{})
	if err != nil {
		t.Fatal(err)
	}
	if want := DefaultFulfillmentd(); !reflect.DeepEqual(got, want) {
		t.Fatalf("fulfillmentd.yaml = %+v\nwant the defaults %+v", got, want)
	}
}

func TestFulfillmentdEnvironment(t *testing.T) {
	cfg, err := LoadFulfillmentd("fulfillmentd.yaml", []string{
		"TXORDER_FULFILLMENT__MYSQL__PASSWORD=s3cret",
		"TXORDER_FULFILLMENT__ROCKETMQ__NAME_SERVERS=10.0.0.1:9876, 10.0.0.2:9876",
		"TXORDER_FULFILLMENT__ROCKETMQ__CONSUME_GOROUTINES=4",
		"TXORDER_FULFILLMENT__DEAD_LETTER__RETRY_INTERVAL=250ms",
		// orderd's settings, in the same environment, are not fulfillmentd's.
		"TXORDER_HTTP__ADDR=0.0.0.0:1",
		"TXORDER_MYSQL__PASSWORD=orderd-password",
		"TXORDER_AUTH__API_KEYS=demo:0123456789abcdef",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MySQL.Password != "s3cret" || cfg.RocketMQ.ConsumeGoroutines != 4 || cfg.DeadLetter.RetryInterval != 250*time.Millisecond ||
		!reflect.DeepEqual(cfg.RocketMQ.NameServers, []string{"10.0.0.1:9876", "10.0.0.2:9876"}) || cfg.HTTP.Addr != "127.0.0.1:8081" {
		t.Fatalf("cfg = %+v", cfg)
	}
}

func TestFulfillmentdErrorsNameTheVariable(t *testing.T) {
	dir := t.TempDir()
	withSecret := filepath.Join(dir, "f.yaml")
	if err := os.WriteFile(withSecret, []byte("mysql:\n  password: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path    string
		environ []string
		want    string
	}{
		{withSecret, nil, "TXORDER_FULFILLMENT__MYSQL__PASSWORD"},
		{"", []string{"TXORDER_FULFILLMENT__ROCKETMQ__BATCH_SIZE=0"}, "rocketmq.batch_size"},
		{"", []string{"TXORDER_FULFILLMENT__BOGUS=1"}, "bogus"},
		{"", []string{"TXORDER_FULFILLMENT__DEAD_LETTER__GROUP=fulfillment"}, "dead_letter.group"},
		{"", []string{"TXORDER_FULFILLMENT__ROCKETMQ__CONSUME_GOROUTINES=64"}, "raise mysql.max_open_conns"},
	}
	for _, tc := range cases {
		environ := tc.environ
		if environ == nil {
			environ = []string{}
		}
		_, err := LoadFulfillmentd(tc.path, environ)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadFulfillmentd(%q, %v) = %v, want an error naming %s", tc.path, tc.environ, err, tc.want)
		}
	}
}

func TestWithoutFulfillment(t *testing.T) {
	env := []string{"TXORDER_MYSQL__ADDR=a:1", "TXORDER_FULFILLMENT__MYSQL__ADDR=b:2", "PATH=/bin"}
	if got := WithoutFulfillment(env); !reflect.DeepEqual(got, []string{"TXORDER_MYSQL__ADDR=a:1", "PATH=/bin"}) {
		t.Fatalf("WithoutFulfillment = %v", got)
	}
	if got := FulfillmentEnviron(env); !reflect.DeepEqual(got, []string{"TXORDER_MYSQL__ADDR=b:2"}) {
		t.Fatalf("FulfillmentEnviron = %v", got)
	}
	// orderd's loader accepts the environment ordertool passes it.
	if _, err := LoadOrderd("orderd.yaml", WithoutFulfillment(env)); err != nil {
		t.Fatal(err)
	}
}
