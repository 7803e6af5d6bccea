package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testKeys = "TXORDER_AUTH__API_KEYS=demo:0123456789abcdef0123"

func TestLoadShippedFile(t *testing.T) {
	cfg, err := LoadOrderd("orderd.yaml", []string{testKeys})
	if err != nil {
		t.Fatalf("load shipped orderd.yaml: %v", err)
	}
	def := DefaultOrderd()
	def.Auth.APIKeys = "demo:0123456789abcdef0123"
	if cfg.HTTP != def.HTTP || cfg.MySQL != def.MySQL || cfg.Order != def.Order {
		t.Errorf("orderd.yaml and DefaultOrderd disagree:\nfile:    %+v\ndefault: %+v", cfg, def)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	cfg, err := LoadOrderd("orderd.yaml", []string{
		testKeys,
		"TXORDER_HTTP__ADDR=127.0.0.1:9999",
		"TXORDER_MYSQL__TIMEOUT=750ms",
		"TXORDER_MYSQL__MIGRATE_ON_START=false",
		"TXORDER_MYSQL__PASSWORD=s3cret",
		"TXORDER_ROCKETMQ__NAME_SERVERS=127.0.0.1:1, 127.0.0.1:2",
		"OTHER_VAR=ignored",
		"TXORDER_FULFILLMENT__HTTP__ADDR=127.0.0.1:1", // fulfillmentd's, not orderd's
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Addr != "127.0.0.1:9999" || cfg.MySQL.Timeout != 750*time.Millisecond ||
		cfg.MySQL.MigrateOnStart || cfg.MySQL.Password != "s3cret" {
		t.Errorf("overrides not applied: %+v %+v", cfg.HTTP, cfg.MySQL)
	}
	if got := strings.Join(cfg.RocketMQ.NameServers, ";"); got != "127.0.0.1:1;127.0.0.1:2" {
		t.Errorf("name servers = %q, want both", got)
	}
	if !strings.Contains(cfg.MySQL.DSN(), "txorder:s3cret@tcp(127.0.0.1:3307)/txorder") {
		t.Errorf("DSN = %q", cfg.MySQL.DSN())
	}
}

func TestErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyFile := write("keys", "demo:0123456789abcdef0123\n")
	cases := []struct {
		name    string
		file    string
		env     []string
		wantErr string
	}{
		{"bad duration", "mysql:\n  timeout: soon\n", []string{testKeys}, "timeout"},
		{"zero timeout", "mysql:\n  timeout: 0s\n", []string{testKeys}, "mysql.timeout"},
		{"bad addr", "http:\n  addr: nope\n", []string{testKeys}, "http.addr"},
		{"pprof on every interface", "http:\n  pprof_addr: 0.0.0.0:6060\n", []string{testKeys}, "http.pprof_addr"},
		{"pprof on no host", "http:\n  pprof_addr: :6060\n", []string{testKeys}, "http.pprof_addr"},
		{"typo key", "mysql:\n  tiemout: 1s\n", []string{testKeys}, "tiemout"},
		{"env typo", "", []string{testKeys, "TXORDER_HTTP__ADRR=x"}, "adrr"},
		{"secret in file", "auth:\n  api_keys: demo:0123456789abcdef0123\n", nil, "auth.api_keys is a secret"},
		{"password in file", "mysql:\n  password: x\n", []string{testKeys}, "TXORDER_MYSQL__PASSWORD"},
		{"short key", "", []string{"TXORDER_AUTH__API_KEYS=demo:short"}, "at least 16"},
		{"bad mode", "mode: staging\n", []string{testKeys}, "mode"},
		{"idle over open", "mysql:\n  max_open_conns: 2\n  max_idle_conns: 5\n", []string{testKeys}, "mysql.max_idle_conns"},
		{"dev key in prod", "mode: production\n", []string{"TXORDER_AUTH__API_KEYS=demo:" + DevAPIKey}, "development key"},
		{"window too long", "order:\n  payment_window: 7m1s\n", []string{testKeys}, "order.payment_window: 7m1s does not fit in rocketmq.check_max (15) × rocketmq.check_interval (30s) minus one interval = 7m0s"},
		{"execute past check", "transaction:\n  execute_timeout: 6s\n", []string{testKeys}, "transaction.execute_timeout"},
		{"short webhook secret", "", []string{testKeys, "TXORDER_PAYMENT__WEBHOOK_SECRET=short"}, "payment.webhook_secret"},
		{"no webhook secret in prod", "mode: production\n", []string{testKeys}, "payment.webhook_secret: required in production"},
		{"missing key file", "auth:\n  api_keys_file: /nonexistent/keys\n", nil, "api_keys_file"},
		{"client name not an identifier", "", []string{"TXORDER_AUTH__API_KEYS=shop/1:0123456789abcdef0123"}, `name "shop/1" must be`},
		{"admin key is a client key", "", []string{testKeys, "TXORDER_AUTH__ADMIN_KEYS=ops:0123456789abcdef0123"}, `admin "ops" has the key of client "demo"`},
		{"limit for an unknown client", "", []string{testKeys, "TXORDER_LIMITS__CLIENTS__SHOP__RATE=5", "TXORDER_LIMITS__CLIENTS__SHOP__BURST=5"}, "limits.clients.shop: no client"},
		{"zero rate", "limits:\n  rate: 0\n", []string{testKeys}, "limits.rate"},
		{"zero burst override", "", []string{testKeys, "TXORDER_LIMITS__CLIENTS__DEMO__RATE=5"}, "limits.clients[demo].burst"},
		{"zero in-flight", "limits:\n  max_in_flight: 0\n", []string{testKeys}, "limits.max_in_flight"},
		{"sweep batch too big", "idempotency:\n  sweep_batch: 20000\n", []string{testKeys}, "idempotency.sweep_batch"},
		{"console trusted proxy not an address", "console:\n  logins:\n    trusted_proxies: [lb.internal]\n", []string{testKeys}, "console.logins.trusted_proxies[0]"},
		{"console zero login burst", "console:\n  logins:\n    burst: 0\n", []string{testKeys}, "console.logins.burst"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = write(strings.ReplaceAll(tc.name, " ", "_")+".yaml", tc.file)
			}
			env := tc.env
			if env == nil {
				env = []string{}
			}
			_, err := LoadOrderd(path, env)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
	t.Run("pprof on loopback", func(t *testing.T) {
		for _, addr := range []string{"127.0.0.1:6060", "[::1]:0", "localhost:6060"} {
			if _, err := LoadOrderd("", []string{testKeys, "TXORDER_HTTP__PPROF_ADDR=" + addr}); err != nil {
				t.Errorf("pprof_addr %s: %v, want accepted", addr, err)
			}
		}
	})
	t.Run("no api key", func(t *testing.T) {
		cfg, err := LoadOrderd("", []string{})
		if err != nil {
			t.Fatalf("a config without API keys must load (ordertool migrate needs none): %v", err)
		}
		if _, err := cfg.Auth.Clients(); err == nil || !strings.Contains(err.Error(), "TXORDER_AUTH__API_KEYS") {
			t.Errorf("Clients() err = %v, want one naming TXORDER_AUTH__API_KEYS", err)
		}
	})
	t.Run("key file", func(t *testing.T) {
		cfg, err := LoadOrderd(write("k.yaml", "auth:\n  api_keys_file: "+keyFile+"\n"), []string{})
		if err != nil {
			t.Fatal(err)
		}
		clients, _ := cfg.Auth.Clients()
		if clients["0123456789abcdef0123"] != "demo" {
			t.Errorf("clients = %v", clients)
		}
	})
}

func TestLimitsConfig(t *testing.T) {
	cfg, err := LoadOrderd("orderd.yaml", []string{testKeys + ",bulk:bulk-key-0123456789abcdef",
		"TXORDER_LIMITS__CLIENTS__BULK__RATE=500", "TXORDER_LIMITS__CLIENTS__BULK__BURST=1000"})
	if err != nil {
		t.Fatal(err)
	}
	def := DefaultOrderd().Limits
	if !cfg.Limits.Enabled || cfg.Limits.Rate != def.Rate || cfg.Limits.Burst != def.Burst || cfg.Limits.MaxInFlight != def.MaxInFlight {
		t.Errorf("limits = %+v, want the defaults %+v from orderd.yaml", cfg.Limits, def)
	}
	if got := cfg.Limits.Clients["bulk"]; got != (ClientLimit{Rate: 500, Burst: 1000}) {
		t.Errorf("bulk override = %+v", got)
	}
	if cfg.Idempotency != DefaultOrderd().Idempotency {
		t.Errorf("idempotency = %+v, want the defaults", cfg.Idempotency)
	}
}

func TestLogLogger(t *testing.T) {
	var buf strings.Builder
	Log{Level: "warn", Format: "json"}.Logger(&buf).Info("dropped")
	Log{Level: "warn", Format: "json"}.Logger(&buf).Warn("kept", "order_id", "x")
	if got := buf.String(); strings.Contains(got, "dropped") || !strings.Contains(got, `"msg":"kept","order_id":"x"`) {
		t.Fatalf("json logger wrote %q", got)
	}
	buf.Reset()
	Log{Level: "debug", Format: "text"}.Logger(&buf).Debug("shown")
	if got := buf.String(); !strings.Contains(got, "level=DEBUG msg=shown") {
		t.Fatalf("text logger wrote %q", got)
	}
}

func TestConsoleLoginsConfig(t *testing.T) {
	cfg, err := LoadOrderd("orderd.yaml", []string{testKeys, "TXORDER_CONSOLE__LOGINS__TRUSTED_PROXIES=10.0.0.0/8,192.168.1.7,fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Console.Logins
	if l.Burst != 10 || l.Every != 10*time.Second || len(l.TrustedProxies) != 3 || l.TrustedProxies[1] != "192.168.1.7" {
		t.Errorf("console.logins = %+v", l)
	}
}
