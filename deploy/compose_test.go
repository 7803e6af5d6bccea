// Package deploy_test checks docker-compose.yml, the Dockerfile and the
// files in deploy/ without Docker: the compose file is loaded with the
// compose-spec loader (as `docker compose` does) and its services are
// checked against issue 7's rules and against the dledger confs they mount.
package deploy_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/dledger"
)

const composeFile = "../docker-compose.yml"

// secrets are the variables .env must define; the values satisfy orderd's
// production checks (API keys of 16+ characters, a 32+ character secret).
var secrets = map[string]string{
	"MYSQL_ROOT_PASSWORD":    "test-root-password",
	"MYSQL_PASSWORD":         "test-txorder-password",
	"TXORDER_API_KEYS":       "shop:test-api-key-0123456789",
	"TXORDER_WEBHOOK_SECRET": "test-webhook-secret-0123456789abcdef",
}

func env(overrides map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range secrets {
		out[k] = v
	}
	for k, v := range overrides {
		if v == "" {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

func load(environment map[string]string) (*types.Project, error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return nil, err
	}
	content, err := os.ReadFile(composeFile)
	if err != nil {
		return nil, err
	}
	return loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml"), Content: content}},
		Environment: environment,
	}, func(o *loader.Options) { o.SetProjectName("txorder", true) })
}

func project(t *testing.T) *types.Project {
	t.Helper()
	p, err := load(env(nil))
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("service %s: %v", name, err)
	}
	return s
}

func envOf(t *testing.T, s types.ServiceConfig) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range s.Environment {
		if v == nil {
			t.Fatalf("service %s: %s has no value", s.Name, k)
		}
		out[k] = *v
	}
	return out
}

func environ(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

var brokers = []string{"broker-n0", "broker-n1", "broker-n2"}

func TestComposeServices(t *testing.T) {
	p := project(t)
	want := []string{"api", "broker-n0", "broker-n1", "broker-n2", "broker-volumes", "dashboard", "fulfillmentd", "migrate",
		"mysql", "namesrv-1", "namesrv-2", "orderd", "prometheus", "redis", "rocketmq-init"}
	got := p.ServiceNames()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("services %v, want %v", got, want)
	}
	var raw map[string]any
	b, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["version"]; ok {
		t.Error("docker-compose.yml has a top-level version: key; the Compose spec has none")
	}
}

// pinnedTag: a version, not latest (v2.55.1, 8.4.3, 3.22, 1.26.8-alpine).
var pinnedTag = regexp.MustCompile(`^v?[0-9]+(\.[0-9]+)+(-[A-Za-z0-9.]+)?$`)

func imagePinned(image string) error {
	if strings.Contains(image, "@sha256:") {
		return nil
	}
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return fmt.Errorf("image %q has no tag (means :latest)", image)
	}
	if tag := image[i+1:]; !pinnedTag.MatchString(tag) {
		return fmt.Errorf("image %q: tag %q is not a pinned version", image, tag)
	}
	return nil
}

func TestImagesPinnedOrBuilt(t *testing.T) {
	p := project(t)
	targets := dockerfileTargets(t)
	for _, s := range p.Services {
		if s.Build != nil {
			if s.Build.Target == "" || !targets[s.Build.Target] {
				t.Errorf("service %s builds target %q; the Dockerfile has %v", s.Name, s.Build.Target, targets)
			}
			if s.Build.Context != p.WorkingDir {
				t.Errorf("service %s builds from %s, want the repository root", s.Name, s.Build.Context)
			}
			continue
		}
		if s.Image == "" {
			t.Errorf("service %s has neither image nor build", s.Name)
		} else if err := imagePinned(s.Image); err != nil {
			t.Errorf("service %s: %v", s.Name, err)
		}
	}
}

// dockerfileTargets returns the Dockerfile's stage names, and checks that
// every base image is pinned once its ARG defaults are applied.
func dockerfileTargets(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	args := map[string]string{}
	stages := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "ARG":
			if k, v, ok := strings.Cut(f[1], "="); ok {
				args[k] = v
			}
		case len(f) >= 2 && f[0] == "FROM":
			image := os.Expand(f[1], func(k string) string { return args[k] })
			if !stages[image] {
				if err := imagePinned(image); err != nil {
					t.Errorf("Dockerfile %q: %v", line, err)
				}
			}
			if len(f) == 4 && strings.EqualFold(f[2], "AS") {
				stages[f[3]] = true
			}
		case len(f) >= 2 && f[0] == "USER":
			if u := strings.Split(f[1], ":")[0]; u == "0" || u == "root" {
				t.Errorf("Dockerfile runs as root: %q", line)
			}
		}
	}
	if !strings.Contains(string(b), "CGO_ENABLED=0") {
		t.Error("Dockerfile does not build with CGO_ENABLED=0 (static binaries)")
	}
	return stages
}

func TestDependsOn(t *testing.T) {
	p := project(t)
	for _, s := range p.Services {
		for dep, d := range s.DependsOn {
			target, err := p.GetService(dep)
			if err != nil {
				t.Errorf("service %s depends on %s, which does not exist", s.Name, dep)
				continue
			}
			want := types.ServiceConditionCompletedSuccessfully // a one-shot job
			if target.HealthCheck != nil && !target.HealthCheck.Disable {
				want = types.ServiceConditionHealthy
			}
			if d.Condition != want {
				t.Errorf("service %s depends on %s with condition %q, want %q", s.Name, dep, d.Condition, want)
			}
			if want == types.ServiceConditionCompletedSuccessfully && target.Restart != "" && target.Restart != "no" {
				t.Errorf("service %s waits for %s to complete, but %s restarts (%s)", s.Name, dep, dep, target.Restart)
			}
		}
	}
	// The ordering issue 7 asks for.
	orderd := service(t, p, "orderd")
	for _, dep := range []string{"rocketmq-init", "migrate", "mysql", "redis"} {
		if _, ok := orderd.DependsOn[dep]; !ok {
			t.Errorf("orderd does not wait for %s", dep)
		}
	}
	init := service(t, p, "rocketmq-init")
	for _, b := range brokers {
		if init.DependsOn[b].Condition != types.ServiceConditionHealthy {
			t.Errorf("rocketmq-init does not wait for %s to be healthy", b)
		}
	}
}

// brokerMounts returns the container description of a broker service and
// the path of the conf it mounts.
func brokerContainer(t *testing.T, p *types.Project, s types.ServiceConfig) (dledger.Container, string) {
	t.Helper()
	ct := dledger.Container{Service: s.Name, Home: envOf(t, s)["ROCKETMQ_HOME"]}
	var confPath string
	for _, v := range s.Volumes {
		ct.Mounts = append(ct.Mounts, dledger.Mount{Source: v.Source, Target: v.Target, Volume: v.Type == types.VolumeTypeVolume})
		if v.Type == types.VolumeTypeBind && strings.HasSuffix(v.Source, ".conf") {
			confPath = v.Source
			if !v.ReadOnly {
				t.Errorf("service %s mounts %s writable; mount it :ro", s.Name, v.Source)
			}
		}
	}
	for i, arg := range s.Command {
		if arg == "-c" && i+1 < len(s.Command) {
			ct.ConfigArg = s.Command[i+1]
		}
	}
	if confPath == "" {
		t.Fatalf("service %s mounts no .conf file", s.Name)
	}
	return ct, confPath
}

func TestBrokersMountTheDLedgerConfs(t *testing.T) {
	p := project(t)
	var mounted []string
	var group []dledger.Conf
	hosts := map[string]string{}
	for _, name := range brokers {
		s := service(t, p, name)
		if !slices.Equal(s.Command[:2], []string{"sh", "mqbroker"}) {
			t.Errorf("service %s runs %v, want sh mqbroker -c …", name, s.Command)
		}
		// ROCKETMQ_HOME as stated must be the image's: /home/rocketmq/rocketmq-<tag>.
		tag := s.Image[strings.LastIndex(s.Image, ":")+1:]
		if home := envOf(t, s)["ROCKETMQ_HOME"]; home != "/home/rocketmq/rocketmq-"+tag {
			t.Errorf("service %s: ROCKETMQ_HOME %q does not match image %s", name, home, s.Image)
		}
		ct, confPath := brokerContainer(t, p, s)
		if filepath.Dir(confPath) != filepath.Join(p.WorkingDir, "dledger") {
			t.Errorf("service %s mounts %s, not a file of ./dledger", name, confPath)
		}
		mounted = append(mounted, filepath.Base(confPath))
		conf, err := dledger.ParseFile(confPath)
		if err != nil {
			t.Fatal(err)
		}
		group = append(group, conf)
		if problems := dledger.DefaultRules().CheckContainer(conf, ct); len(problems) != 0 {
			t.Errorf("service %s: %v", name, problems)
		}
		self, _ := conf.Get("dLegerSelfId")
		host := s.Hostname
		if host == "" {
			host = s.Name
		}
		hosts[self] = host
		// The healthcheck probes the conf's listen port.
		port, _ := conf.Get("listenPort")
		if s.HealthCheck == nil || !strings.Contains(strings.Join(s.HealthCheck.Test, " "), "/"+port) {
			t.Errorf("service %s: healthcheck does not probe listenPort %s", name, port)
		}
		if got := envOf(t, s)["NAMESRV_ADDR"]; got != "namesrv-1:9876;namesrv-2:9876" {
			t.Errorf("service %s: NAMESRV_ADDR %q, want both NameServers", name, got)
		}
	}
	if !slices.Equal(mounted, dledger.ShippedFiles) {
		t.Errorf("brokers mount %v, want %v", mounted, dledger.ShippedFiles)
	}
	rules := dledger.DefaultRules()
	rules.Hosts = hosts
	if problems := rules.Validate(group); len(problems) != 0 {
		t.Errorf("mounted confs: %v", problems)
	}
}

func TestRedisAOFAlways(t *testing.T) {
	s := service(t, project(t), "redis")
	cmd := strings.Join(s.Command, " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync always"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("redis runs %q, want %s", cmd, want)
		}
	}
	if !strings.HasPrefix(s.Image, "redis:7.") {
		t.Errorf("redis image %s, want Redis 7", s.Image)
	}
}

func TestDataOnNamedVolumes(t *testing.T) {
	p := project(t)
	want := map[string]string{
		"mysql": "/var/lib/mysql", "redis": "/data", "prometheus": "/prometheus",
		"broker-n0": dledger.DefaultVolumeRoot, "broker-n1": dledger.DefaultVolumeRoot, "broker-n2": dledger.DefaultVolumeRoot,
	}
	for name, target := range want {
		s := service(t, p, name)
		found := false
		for _, v := range s.Volumes {
			if v.Target == target && v.Type == types.VolumeTypeVolume {
				found = true
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("service %s uses volume %s, not declared under volumes:", name, v.Source)
				}
			}
		}
		if !found {
			t.Errorf("service %s has no named volume at %s", name, target)
		}
	}
	if s := service(t, p, "mysql"); !strings.HasPrefix(s.Image, "mysql:8.") || s.HealthCheck == nil {
		t.Errorf("mysql: image %s, healthcheck %v; want MySQL 8 with a healthcheck", s.Image, s.HealthCheck)
	}
	// Bind mounts carry configuration only, read-only; data is on volumes.
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind && !v.ReadOnly {
				t.Errorf("service %s bind-mounts %s writable", s.Name, v.Source)
			}
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("service %s mounts %s: %v", s.Name, v.Source, err)
				}
			}
		}
	}
}

type published struct {
	hostIP    string
	published string
	target    uint32
}

func publishedPorts(p *types.Project) map[string][]published {
	out := map[string][]published{}
	for _, s := range p.Services {
		for _, port := range s.Ports {
			out[s.Name] = append(out[s.Name], published{port.HostIP, port.Published, port.Target})
		}
	}
	return out
}

func TestOnlyIntendedPortsPublished(t *testing.T) {
	want := func(ip string) map[string][]published {
		return map[string][]published{
			"api":        {{ip, "8080", 8080}},
			"dashboard":  {{ip, "8082", 8080}},
			"prometheus": {{ip, "9090", 9090}},
		}
	}
	check := func(p *types.Project, ip string) {
		t.Helper()
		got := publishedPorts(p)
		if fmt.Sprint(got) != fmt.Sprint(want(ip)) {
			t.Errorf("published ports %v, want %v", got, want(ip))
		}
		for _, s := range p.Services {
			if s.NetworkMode == "host" {
				t.Errorf("service %s uses the host network", s.Name)
			}
		}
	}
	check(project(t), "127.0.0.1")
	p, err := load(env(map[string]string{"PUBLISH_ADDR": "0.0.0.0"}))
	if err != nil {
		t.Fatal(err)
	}
	check(p, "0.0.0.0")
}

var requiredVar = regexp.MustCompile(`\$\{([A-Z0-9_]+):\?[^}]+\}`)

func TestSecretsAreRequiredVariables(t *testing.T) {
	b, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	required := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, m := range requiredVar.FindAllStringSubmatch(line, -1) {
			required[m[1]] = true
		}
	}
	for name := range secrets {
		if !required[name] {
			t.Errorf("%s is not used as a required variable ${%s:?…}", name, name)
		}
		_, err := load(env(map[string]string{name: ""}))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("without %s: load error %v, want one naming it", name, err)
		}
	}
	// .env.example documents exactly the required variables (and may add
	// optional ones).
	ex, err := os.ReadFile("../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, line := range strings.Split(string(ex), "\n") {
		if k, _, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(k, "#") {
			documented[k] = true
		}
	}
	for name := range required {
		if !documented[name] {
			t.Errorf(".env.example does not set %s", name)
		}
	}
	// No secret is written into the compose file: the services get them
	// from the variables.
	p := project(t)
	for _, s := range p.Services {
		for k, v := range s.Environment {
			if v == nil || !regexp.MustCompile(`PASSWORD|SECRET|API_KEYS`).MatchString(k) {
				continue
			}
			if !slices.Contains(mapValues(secrets), *v) {
				t.Errorf("service %s: %s is not taken from .env", s.Name, k)
			}
		}
	}
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestOrderdAgreesWithBrokers loads orderd's configuration from its compose
// environment with orderd's own loader (which refuses a payment window the
// check settings cannot cover) and checks the brokers' confs against it.
func TestOrderdAgreesWithBrokers(t *testing.T) {
	p := project(t)
	orderdEnv := envOf(t, service(t, p, "orderd"))
	cfg, err := configs.LoadOrderd("", environ(orderdEnv))
	if err != nil {
		t.Fatalf("orderd's compose environment: %v", err)
	}
	if _, err := cfg.Auth.Clients(); err != nil {
		t.Errorf("orderd's API keys: %v", err)
	}
	if cfg.Mode != "production" {
		t.Errorf("orderd mode %q, want production", cfg.Mode)
	}
	if want := []string{"namesrv-1:9876", "namesrv-2:9876"}; !slices.Equal(cfg.RocketMQ.NameServers, want) {
		t.Errorf("orderd name servers %v, want %v", cfg.RocketMQ.NameServers, want)
	}
	if cfg.MySQL.MigrateOnStart {
		t.Error("orderd migrates on start; the migrate job does it once")
	}
	checkGrace(t, service(t, p, "orderd"), cfg.HTTP.DrainDelay+cfg.HTTP.ShutdownTimeout)
	rules := dledger.Rules{
		PaymentWindow:      cfg.Order.PaymentWindow,
		CheckInterval:      cfg.RocketMQ.CheckInterval,
		CheckMax:           cfg.RocketMQ.CheckMax,
		TransactionTimeout: cfg.RocketMQ.TransactionTimeout,
	}
	group := mountedConfs(t, p)
	if problems := rules.Validate(group); len(problems) != 0 {
		t.Errorf("brokers disagree with orderd: %v", problems)
	}

	// The check bites: a longer window in compose would be caught twice,
	// by orderd itself and by the brokers' rules.
	orderdEnv["TXORDER_ORDER__PAYMENT_WINDOW"] = "10m"
	if _, err := configs.LoadOrderd("", environ(orderdEnv)); err == nil || !strings.Contains(err.Error(), "payment_window") {
		t.Errorf("orderd accepted a 10m payment window: %v", err)
	}
	rules.PaymentWindow = 10 * time.Minute
	if problems := rules.Validate(group); len(problems) == 0 {
		t.Error("a 10m payment window passed the brokers' rules")
	}

	// The migrate job writes the same database orderd reads.
	migrate, err := configs.LoadOrderd("", environ(envOf(t, service(t, p, "migrate"))))
	if err != nil {
		t.Fatal(err)
	}
	if migrate.MySQL.DSN() != cfg.MySQL.DSN() {
		t.Errorf("migrate's database %s, orderd's %s", migrate.MySQL.Addr+"/"+migrate.MySQL.Database, cfg.MySQL.Addr+"/"+cfg.MySQL.Database)
	}
}

// checkGrace: Docker must wait longer than the service's own graceful
// shutdown before it sends SIGKILL (its default is 10s).
func checkGrace(t *testing.T, s types.ServiceConfig, shutdown time.Duration) {
	t.Helper()
	if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= shutdown {
		t.Errorf("service %s: stop_grace_period %v, want more than its shutdown timeout %s", s.Name, s.StopGracePeriod, shutdown)
	}
}

func mountedConfs(t *testing.T, p *types.Project) []dledger.Conf {
	t.Helper()
	var group []dledger.Conf
	for _, name := range brokers {
		_, path := brokerContainer(t, p, service(t, p, name))
		c, err := dledger.ParseFile(path)
		if err != nil {
			t.Fatal(err)
		}
		group = append(group, c)
	}
	return group
}

func TestFulfillmentd(t *testing.T) {
	p := project(t)
	s := service(t, p, "fulfillmentd")
	cfg, err := configs.LoadFulfillmentd("", environ(envOf(t, s)))
	if err != nil {
		t.Fatalf("fulfillmentd's compose environment: %v", err)
	}
	if want := []string{"namesrv-1:9876", "namesrv-2:9876"}; !slices.Equal(cfg.RocketMQ.NameServers, want) {
		t.Errorf("fulfillmentd name servers %v, want %v", cfg.RocketMQ.NameServers, want)
	}
	if cfg.MySQL.MigrateOnStart {
		t.Error("fulfillmentd migrates on start; the migrate job does it once")
	}
	checkGrace(t, s, cfg.HTTP.ShutdownTimeout)
	// rocketmq-init makes the dead letter topic of fulfillmentd's group
	// readable, and creates its topic.
	init := envOf(t, service(t, p, "rocketmq-init"))
	if init["FULFILLMENT_GROUP"] != cfg.RocketMQ.Group || init["ORDER_TOPIC"] != cfg.RocketMQ.Topic {
		t.Errorf("rocketmq-init prepares group %q topic %q; fulfillmentd uses %q %q",
			init["FULFILLMENT_GROUP"], init["ORDER_TOPIC"], cfg.RocketMQ.Group, cfg.RocketMQ.Topic)
	}
	orderd, err := configs.LoadOrderd("", environ(envOf(t, service(t, p, "orderd"))))
	if err != nil {
		t.Fatal(err)
	}
	if init["ORDER_TOPIC"] != orderd.RocketMQ.Topic {
		t.Errorf("rocketmq-init creates %q; orderd publishes to %q", init["ORDER_TOPIC"], orderd.RocketMQ.Topic)
	}
	if init["ROCKETMQ_CLUSTER"] != brokerCluster(t, p) {
		t.Errorf("rocketmq-init creates topics on cluster %q; the brokers form %q", init["ROCKETMQ_CLUSTER"], brokerCluster(t, p))
	}
}

func brokerCluster(t *testing.T, p *types.Project) string {
	t.Helper()
	v, _ := mountedConfs(t, p)[0].Get("brokerClusterName")
	return v
}

// prometheusConfig is what the tests read of deploy/prometheus.yml.
type prometheusConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
		DNSSDConfigs []struct {
			Names []string `yaml:"names"`
			Type  string   `yaml:"type"`
			Port  int      `yaml:"port"`
		} `yaml:"dns_sd_configs"`
	} `yaml:"scrape_configs"`
}

func readPrometheusConfig(t *testing.T) prometheusConfig {
	t.Helper()
	b, err := os.ReadFile("prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg prometheusConfig
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestPrometheusScrapesBothServices checks deploy/prometheus.yml against the
// services' listen ports: every replica of orderd and fulfillmentd, found
// through Docker's DNS.
func TestPrometheusScrapesBothServices(t *testing.T) {
	p := project(t)
	cfg := readPrometheusConfig(t)
	targets := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("job %s scrapes %s", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				targets[target] = true
			}
		}
		// Scaled services are found by DNS: one A record per container.
		for _, d := range sc.DNSSDConfigs {
			if d.Type != "A" {
				t.Errorf("job %s: dns_sd type %q, want A (Docker's DNS has no SRV records)", sc.JobName, d.Type)
			}
			for _, name := range d.Names {
				targets[fmt.Sprintf("%s:%d", name, d.Port)] = true
			}
		}
	}
	addrs := map[string]string{
		"orderd":       envOf(t, service(t, p, "orderd"))["TXORDER_HTTP__ADDR"],
		"fulfillmentd": envOf(t, service(t, p, "fulfillmentd"))["TXORDER_FULFILLMENT__HTTP__ADDR"],
	}
	for name, addr := range addrs {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host != "0.0.0.0" {
			t.Errorf("%s listens on %q, want 0.0.0.0:<port> in its container", name, addr)
			continue
		}
		if !targets[name+":"+port] {
			t.Errorf("prometheus does not scrape %s:%s (targets %v)", name, port, targets)
		}
	}
	// Prometheus mounts this very file.
	found := false
	for _, v := range service(t, p, "prometheus").Volumes {
		if v.Source == filepath.Join(p.WorkingDir, "deploy", "prometheus.yml") && v.Target == "/etc/prometheus/prometheus.yml" {
			found = true
		}
	}
	if !found {
		t.Error("prometheus does not mount deploy/prometheus.yml")
	}
}

func TestInitScriptMounted(t *testing.T) {
	p := project(t)
	s := service(t, p, "rocketmq-init")
	script := ""
	for _, v := range s.Volumes {
		if v.Source == filepath.Join(p.WorkingDir, "deploy", "rocketmq-init.sh") {
			script = v.Target
		}
	}
	if script == "" || !slices.Contains(s.Command, script) {
		t.Errorf("rocketmq-init runs %v, mounts %v; want it to run deploy/rocketmq-init.sh", s.Command, s.Volumes)
	}
	if s.Restart != "no" {
		t.Errorf("rocketmq-init restart %q, want no (a one-shot)", s.Restart)
	}
	b, err := os.ReadFile("rocketmq-init.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"updateTopic", "-p 6", "%DLQ%", "topicRoute"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("rocketmq-init.sh lacks %q", want)
		}
	}
}
