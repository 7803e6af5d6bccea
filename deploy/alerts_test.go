package deploy_test

import (
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/internal/rmqtest"
	"github.com/txorder/txorder/internal/testenv"
)

const alertsFile = "prometheus/alerts.yml"

// loadAlerts parses the rule file with Prometheus's own parser (the one
// `promtool check rules` and the server use), failing on any error.
func loadAlerts(t *testing.T) []rulefmt.RuleNode {
	t.Helper()
	groups, errs := rulefmt.ParseFile(alertsFile)
	if len(errs) > 0 {
		t.Fatalf("%s: %v", alertsFile, errs)
	}
	var rules []rulefmt.RuleNode
	for _, g := range groups.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s has no rules", alertsFile)
	}
	return rules
}

// TestAlertRules: every rule is an alert with a severity, a summary, a
// description and a runbook that is a section of docs/operations.md; the
// issue's alerts are all there; and Prometheus loads this very file.
func TestAlertRules(t *testing.T) {
	rules := loadAlerts(t)
	ops, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := markdownAnchors(string(ops))
	var names []string
	for _, r := range rules {
		name := r.Alert.Value
		if name == "" {
			t.Errorf("rule %q is not an alert", r.Record.Value)
			continue
		}
		names = append(names, name)
		if sev := r.Labels["severity"]; sev != "page" && sev != "ticket" {
			t.Errorf("%s: severity %q, want page or ticket", name, sev)
		}
		for _, a := range []string{"summary", "description", "runbook"} {
			if r.Annotations[a] == "" {
				t.Errorf("%s has no %s annotation", name, a)
			}
		}
		file, anchor, _ := strings.Cut(r.Annotations["runbook"], "#")
		if file != "docs/operations.md" || !anchors[anchor] {
			t.Errorf("%s: runbook %q is not a section of docs/operations.md", name, r.Annotations["runbook"])
		}
	}
	for _, want := range []string{"TxorderServiceDown", "SpillEntriesDead", "CloserClosingOrders", "OrderCacheNotDraining",
		"DeadLettersPending", "MySQLBreakerOpen", "RedisBreakerOpen", "ReconcilerRepublishing", "FulfillmentLagging",
		"FulfillmentStalled", "RedisMemoryNearLimit"} {
		if !slices.Contains(names, want) {
			t.Errorf("no alert %s (have %v)", want, names)
		}
	}

	// prometheus.yml loads the file where compose mounts it.
	cfg := readPrometheusConfig(t)
	mounted := ""
	for _, v := range service(t, project(t), "prometheus").Volumes {
		if strings.HasSuffix(v.Source, "/deploy/prometheus/alerts.yml") && v.ReadOnly {
			mounted = v.Target
		}
	}
	if mounted == "" || !slices.Contains(cfg.RuleFiles, mounted) {
		t.Errorf("prometheus.yml rule_files %v; the alerts are mounted at %q", cfg.RuleFiles, mounted)
	}
}

// markdownAnchors returns GitHub's anchors of the file's headings.
func markdownAnchors(md string) map[string]bool {
	out := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		out[strings.ReplaceAll(drop.ReplaceAllString(h, ""), " ", "-")] = true
	}
	return out
}

// series is what one /metrics scrape exposes: metric name → the label sets
// of its samples.
type series map[string][]map[string]string

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? `)
var labelPair = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// metricsText is the service's /metrics page.
func metricsText(t *testing.T, addr string) string {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func scrape(t *testing.T, addr string, into series) {
	t.Helper()
	for _, line := range strings.Split(metricsText(t, addr), "\n") {
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ls := map[string]string{}
		for _, p := range labelPair.FindAllStringSubmatch(m[3], -1) {
			ls[p[1]] = p[2]
		}
		into[m[1]] = append(into[m[1]], ls)
	}
}

// TestAlertMetricsExported starts orderd and fulfillmentd as processes
// (against MariaDB, Redis and rmqtest), drives one order through
// placement, payment, the check-back's commit and fulfillment so that the
// counters an alert watches have their series, scrapes both, and checks
// every metric an alert expression selects, and every label it matches
// on, against what they export (up against prometheus.yml's jobs).
func TestAlertMetricsExported(t *testing.T) {
	rules := loadAlerts(t)
	got := runServices(t)

	jobs := prometheusJobs(t)
	for _, r := range rules {
		expr, err := parser.ParseExpr(r.Expr.Value)
		if err != nil {
			t.Errorf("%s: %v", r.Alert.Value, err)
			continue
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			if vs.Name == "up" {
				for _, m := range vs.LabelMatchers {
					if m.Name == "job" {
						for _, job := range []string{"orderd", "fulfillmentd"} {
							if !m.Matches(job) || !slices.Contains(jobs, job) {
								t.Errorf("%s: %s does not select job %s of prometheus.yml (jobs %v)", r.Alert.Value, m, job, jobs)
							}
						}
					}
				}
				return nil
			}
			samples, ok := got[vs.Name]
			if !ok {
				t.Errorf("%s: metric %s is exported by neither orderd nor fulfillmentd", r.Alert.Value, vs.Name)
				return nil
			}
			for _, m := range vs.LabelMatchers {
				if m.Name == labels.MetricName {
					continue
				}
				if !slices.ContainsFunc(samples, func(ls map[string]string) bool {
					v, has := ls[m.Name]
					return has && (m.Type == labels.MatchNotEqual || m.Type == labels.MatchNotRegexp || m.Matches(v))
				}) {
					t.Errorf("%s: no series of %s has a label matching %s (series %v)", r.Alert.Value, vs.Name, m, samples)
				}
			}
			return nil
		})
	}
}

func prometheusJobs(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, sc := range readPrometheusConfig(t).ScrapeConfigs {
		out = append(out, sc.JobName)
	}
	return out
}

const (
	alertsAPIKey = "alerts-test-key-0123456789"
	alertsSecret = "alerts-test-webhook-secret-0123456789ab"
)

// runServices runs orderd and fulfillmentd, places and pays two orders,
// waits until fulfillmentd applied them, and returns both scrapes merged.
// The first is released by its payment's fast commit; the second's
// coordinates are deleted before its payment, so its check-back commits
// it: both ways of publishing have their series.
func runServices(t *testing.T) series {
	t.Helper()
	mq := rmqtest.RunT(t, rmqtest.Options{TransactionTimeout: 2 * time.Second, CheckInterval: 250 * time.Millisecond,
		CheckMax: 1000, Topics: map[string]int{"ORDER_PAID": 4}})
	my := testenv.MySQL(t)
	dsn, err := mysql.ParseDSN(my.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	rd := testenv.Redis(t)
	var orderEnv, fulfillmentEnv []string
	for _, kv := range []string{"MYSQL__ADDR=" + dsn.Addr, "MYSQL__USER=" + dsn.User, "MYSQL__PASSWORD=" + dsn.Passwd, "MYSQL__DATABASE=" + dsn.DBName} {
		orderEnv = append(orderEnv, configs.EnvPrefix+kv)
		fulfillmentEnv = append(fulfillmentEnv, configs.FulfillmentEnvPrefix+kv)
	}
	orderd := testenv.StartService(t, testenv.Build(t, "cmd/orderd"), []string{"--config", "../configs/orderd.yaml"}, append(orderEnv,
		"TXORDER_HTTP__ADDR=127.0.0.1:0",
		"TXORDER_REDIS__ADDR="+rd.Addr(),
		"TXORDER_ROCKETMQ__NAME_SERVERS="+mq.NameServerAddr(),
		"TXORDER_ROCKETMQ__INSTANCE_NAME=orderd-"+uuid.NewString()[:8],
		"TXORDER_ROCKETMQ__TRANSACTION_TIMEOUT=2s",
		"TXORDER_ROCKETMQ__SEND_TIMEOUT=700ms",
		"TXORDER_ROCKETMQ__CHECK_INTERVAL=250ms",
		"TXORDER_ROCKETMQ__CHECK_MAX=1000",
		"TXORDER_TRANSACTION__EXECUTE_TIMEOUT=1s",
		"TXORDER_MYSQL__TIMEOUT=1s",
		"TXORDER_REDIS__TIMEOUT=200ms",
		"TXORDER_ORDER__PAYMENT_WINDOW=1m",
		"TXORDER_RECONCILER__GRACE=2s",
		"TXORDER_AUTH__API_KEYS=alerts:"+alertsAPIKey,
		"TXORDER_PAYMENT__WEBHOOK_SECRET="+alertsSecret,
	), "orderd ready", nil)
	fulfillmentd := testenv.StartService(t, testenv.Build(t, "cmd/fulfillmentd"), []string{"--config", "../configs/fulfillmentd.yaml"}, append(fulfillmentEnv,
		configs.FulfillmentEnvPrefix+"HTTP__ADDR=127.0.0.1:0",
		configs.FulfillmentEnvPrefix+"ROCKETMQ__NAME_SERVERS="+mq.NameServerAddr(),
		configs.FulfillmentEnvPrefix+"ROCKETMQ__INSTANCE_NAME=fulfillmentd-"+uuid.NewString()[:8],
	), "fulfillmentd ready", nil)

	rdb := redis.NewClient(&redis.Options{Addr: rd.Addr()})
	defer rdb.Close()
	recorded := func(id string) string {
		key := "txorder:halfmsg:" + id
		for deadline := time.Now().Add(10 * time.Second); rdb.Exists(t.Context(), key).Val() == 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no coordinates recorded for %s", id)
			}
		}
		return key
	}
	first := placeOrder(t, orderd.Addr, "alerts-1")
	recorded(first)
	payOrder(t, orderd.Addr, first)
	id := placeOrder(t, orderd.Addr, "alerts-2")
	if err := rdb.Del(t.Context(), recorded(id)).Err(); err != nil {
		t.Fatal(err)
	}
	payOrder(t, orderd.Addr, id)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if strings.Contains(metricsText(t, fulfillmentd.Addr), "\ntxorder_fulfillment_applied_total 2\n") {
			got := series{}
			scrape(t, fulfillmentd.Addr, got)
			scrape(t, orderd.Addr, got)
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s not applied by fulfillmentd within 30s", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func placeOrder(t *testing.T, addr, key string) string {
	return testenv.PlaceOrder(t, "http://"+addr, alertsAPIKey, key)
}

func payOrder(t *testing.T, addr, id string) {
	t.Helper()
	res, err := http.DefaultClient.Do(testenv.PaymentRequest(t, "http://"+addr, alertsSecret, "txn-"+id, id))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("pay = %d %s", res.StatusCode, b)
	}
}
