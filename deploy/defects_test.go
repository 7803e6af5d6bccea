package deploy_test

// One check per defect of issue 11 found in docker-compose.yml; each fails
// on the file as it was before the fix (and the README's verified table
// names them).

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/go-units"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/internal/nsresolve"
)

var nameServers = []string{"namesrv-1", "namesrv-2"}

// composeDNS resolves the project's service and host names the way
// Docker's embedded DNS does on the compose network (to made-up container
// addresses).
func composeDNS(p *types.Project) nsresolve.LookupFunc {
	ips := map[string]string{}
	for i, name := range p.ServiceNames() {
		ip := "172.18.0." + strconv.Itoa(i+2)
		ips[name] = ip
		if h := p.Services[name].Hostname; h != "" {
			ips[h] = ip
		}
	}
	return func(_ context.Context, host string) ([]string, error) {
		if ip, ok := ips[host]; ok {
			return []string{ip}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
}

// TestNameServersResolvable (defect 1): orderd's and fulfillmentd's
// NameServers are the NameServer services by name; given as is, the
// RocketMQ client refuses them ("IP addr error"), through the resolver
// every client of ours uses they become addresses it accepts.
func TestNameServersResolvable(t *testing.T) {
	p := project(t)
	orderd, err := configs.LoadOrderd("", environ(envOf(t, service(t, p, "orderd"))))
	if err != nil {
		t.Fatal(err)
	}
	fulfillmentd, err := configs.LoadFulfillmentd("", environ(envOf(t, service(t, p, "fulfillmentd"))))
	if err != nil {
		t.Fatal(err)
	}
	for name, addrs := range map[string][]string{"orderd": orderd.RocketMQ.NameServers, "fulfillmentd": fulfillmentd.RocketMQ.NameServers} {
		var hosts []string
		for _, a := range addrs {
			host, _, _ := net.SplitHostPort(a)
			hosts = append(hosts, host)
		}
		if !slices.Equal(hosts, nameServers) {
			t.Errorf("%s's NameServers %v, want the services %v", name, addrs, nameServers)
		}
		if err := primitive.NamesrvAddr(addrs).Check(); err == nil {
			t.Fatalf("%s: the client accepts %v as is; the resolver is no longer needed", name, addrs)
		}
		r, err := nsresolve.New(addrs, discardLogger(), nsresolve.Options{Lookup: composeDNS(p)})
		if err != nil {
			t.Fatal(err)
		}
		got := r.Resolve()
		if len(got) != len(addrs) || slices.Contains(got, nsresolve.Unresolved) {
			t.Errorf("%s: %v resolve to %v", name, addrs, got)
		}
		if err := primitive.NamesrvAddr(got).Check(); err != nil {
			t.Errorf("%s: the client refuses the resolved %v: %v", name, got, err)
		}
	}
}

// TestRocketMQRunsUnderPID1Wrapper (defect 2): the NameServers, the
// brokers and the init job run with deploy/pid1.sh as PID 1, mounted
// read-only where the entrypoint expects it, and the command it starts is
// still the image's launcher.
func TestRocketMQRunsUnderPID1Wrapper(t *testing.T) {
	p := project(t)
	launcher := map[string]string{"namesrv-1": "mqnamesrv", "namesrv-2": "mqnamesrv", "rocketmq-init": "/opt/txorder/rocketmq-init.sh"}
	for _, b := range brokers {
		launcher[b] = "mqbroker"
	}
	for name, want := range launcher {
		s := service(t, p, name)
		if len(s.Entrypoint) != 2 || s.Entrypoint[0] != "sh" {
			t.Errorf("service %s: entrypoint %v, want [sh <pid1.sh>]", name, s.Entrypoint)
			continue
		}
		mounted := false
		for _, v := range s.Volumes {
			if v.Source == filepath.Join(p.WorkingDir, "deploy", "pid1.sh") && v.Target == s.Entrypoint[1] && v.ReadOnly {
				mounted = true
			}
		}
		if !mounted {
			t.Errorf("service %s: %s is not deploy/pid1.sh mounted read-only", name, s.Entrypoint[1])
		}
		if len(s.Command) < 2 || s.Command[0] != "sh" || s.Command[1] != want {
			t.Errorf("service %s: command %v, want sh %s …", name, s.Command, want)
		}
		if name != "rocketmq-init" && (s.StopGracePeriod == nil || *s.StopGracePeriod < types.Duration(30e9)) {
			t.Errorf("service %s: stop_grace_period %v, want at least 30s for the JVM's shutdown hook", name, s.StopGracePeriod)
		}
	}
}

// heapMax returns the last -Xmx of a JVM option string (the JVM takes the
// last), in bytes.
func heapMax(opts string) int64 {
	var v int64
	for _, f := range strings.Fields(opts) {
		if s, ok := strings.CutPrefix(f, "-Xmx"); ok {
			n, err := units.RAMInBytes(s)
			if err == nil {
				v = n
			}
		}
	}
	return v
}

// TestInitHeapIsTheOneSet (defect 3): rocketmq-init sizes mqadmin's JVM
// with ADMIN_JAVA_OPT, which its script passes to java, not with
// JAVA_OPT_EXT, which the image's tools.sh ignores (its -Xmx1g wins).
func TestInitHeapIsTheOneSet(t *testing.T) {
	env := envOf(t, service(t, project(t), "rocketmq-init"))
	if v, ok := env["JAVA_OPT_EXT"]; ok {
		t.Errorf("rocketmq-init sets JAVA_OPT_EXT=%q, which bin/tools.sh never reads: mqadmin would run with -Xmx1g", v)
	}
	if heap := heapMax(env["ADMIN_JAVA_OPT"]); heap <= 0 || heap > 512<<20 {
		t.Errorf("rocketmq-init ADMIN_JAVA_OPT %q: -Xmx %d bytes, want set and at most 512m", env["ADMIN_JAVA_OPT"], heap)
	}
	var code []string // the script without its comments
	for _, line := range strings.Split(readFile(t, "rocketmq-init.sh"), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			code = append(code, line)
		}
	}
	script := strings.Join(code, "\n")
	for _, banned := range []string{"bin/mqadmin", "tools.sh", "sh \"$mqadmin\""} {
		if strings.Contains(script, banned) {
			t.Errorf("rocketmq-init.sh still runs mqadmin through %q", banned)
		}
	}
	if !strings.Contains(script, "$java_opt") || !strings.Contains(script, "ADMIN_JAVA_OPT") {
		t.Error("rocketmq-init.sh does not pass ADMIN_JAVA_OPT to java")
	}
}

// GC log budgets in /dev/shm, from the image's launch scripts
// (rocketmq-docker image-build/scripts/runbroker-customize.sh:61-62:
// -Xloggc:/dev/shm/mq_gc_%p.log, 5 files of 30m; runserver-customize.sh:59:
// -Xloggc:/dev/shm/rmq_srv_gc.log, no rotation, which compose's
// JAVA_OPT_EXT adds).
const (
	brokerGCLogBytes = 5 * 30 << 20
	shmHeadroom      = 32 << 20
)

var gcRotation = regexp.MustCompile(`-XX:\+UseGCLogFileRotation\b.*-XX:NumberOfGCLogFiles=(\d+)\b.*-XX:GCLogFileSize=(\d+[kmgKMG])\b`)

// TestGCLogsFitInShm (risk: /dev/shm): each JVM's GC log budget plus
// headroom fits in its container's shm_size (Docker's default is 64 MB).
func TestGCLogsFitInShm(t *testing.T) {
	p := project(t)
	for _, b := range brokers {
		s := service(t, p, b)
		if int64(s.ShmSize) < brokerGCLogBytes+shmHeadroom {
			t.Errorf("service %s: shm_size %d bytes, want at least %d (5 × 30 MB of GC log + headroom)", b, s.ShmSize, brokerGCLogBytes+shmHeadroom)
		}
	}
	for _, n := range nameServers {
		s := service(t, p, n)
		m := gcRotation.FindStringSubmatch(envOf(t, s)["JAVA_OPT_EXT"])
		if m == nil {
			t.Errorf("service %s: JAVA_OPT_EXT %q does not rotate the GC log (runserver.sh writes it to /dev/shm unbounded)", n, envOf(t, s)["JAVA_OPT_EXT"])
			continue
		}
		files, _ := strconv.ParseInt(m[1], 10, 64)
		size, _ := units.RAMInBytes(m[2])
		if int64(s.ShmSize) < files*size+shmHeadroom {
			t.Errorf("service %s: shm_size %d bytes, want at least %d (%d × %s of GC log + headroom)", n, s.ShmSize, files*size+shmHeadroom, files, m[2])
		}
	}
}

// dashboardPorts: the port the dashboard listens on per image tag
// (apache/rocketmq-dashboard src/main/resources/application.yml:19 at tags
// rocketmq-dashboard-2.0.0 and -2.1.0).
var dashboardPorts = map[string]uint32{"2.0.0": 8080, "2.1.0": 8082}

func checkDashboard(s types.ServiceConfig) []string {
	tag := s.Image[strings.LastIndex(s.Image, ":")+1:]
	want, known := dashboardPorts[tag]
	if !known {
		return []string{"dashboard image " + s.Image + ": unknown tag; add its server.port (application.yml) to dashboardPorts"}
	}
	var problems []string
	for _, port := range s.Ports {
		if port.Target != want {
			problems = append(problems, "dashboard "+s.Image+" listens on "+strconv.Itoa(int(want))+", compose maps "+port.Published+":"+strconv.Itoa(int(port.Target)))
		}
	}
	if len(s.Ports) == 0 {
		problems = append(problems, "dashboard publishes no port")
	}
	return problems
}

// TestDashboardPortMatchesTag (risk: the dashboard's port moved from 8080
// to 8082 in 2.1.0): the published port's target is what the pinned tag
// listens on; a tag bump without the port change is caught.
func TestDashboardPortMatchesTag(t *testing.T) {
	s := service(t, project(t), "dashboard")
	if problems := checkDashboard(s); len(problems) > 0 {
		t.Error(problems)
	}
	bumped := s
	bumped.Image = "apacherocketmq/rocketmq-dashboard:2.1.0"
	if len(checkDashboard(bumped)) == 0 {
		t.Error("a bump to 2.1.0 keeping the 8080 mapping passed")
	}
}

// TestRedisMaxmemory (defect 5): Redis has a maxmemory with noeviction
// (full means refused writes, never evicted orders or claims), and the
// container's memory limit leaves room above it for the AOF rewrite's
// fork and client buffers.
func TestRedisMaxmemory(t *testing.T) {
	s := service(t, project(t), "redis")
	args := map[string]string{}
	for i := 0; i+1 < len(s.Command); i++ {
		if strings.HasPrefix(s.Command[i], "--") {
			args[s.Command[i]] = s.Command[i+1]
		}
	}
	maxmem, err := units.RAMInBytes(args["--maxmemory"])
	if err != nil || maxmem <= 0 {
		t.Fatalf("redis --maxmemory %q: want a limit", args["--maxmemory"])
	}
	if args["--maxmemory-policy"] != "noeviction" {
		t.Errorf("redis --maxmemory-policy %q, want noeviction", args["--maxmemory-policy"])
	}
	if limit := int64(s.MemLimit); limit < maxmem*3/2 {
		t.Errorf("redis mem_limit %d bytes, want at least 1.5 × maxmemory (%d)", limit, maxmem*3/2)
	}
}

// TestPublishBrokersOverride (risk: host-side clients cannot reach the
// brokers): deploy/compose.publish-brokers.yml, merged over the compose
// file, publishes each broker on its own listenPort (the port it
// registers with the NameServers as broker-nX:port) and the NameServers,
// on PUBLISH_ADDR; without it none is published.
func TestPublishBrokersOverride(t *testing.T) {
	base := project(t)
	for _, name := range append(slices.Clone(brokers), nameServers...) {
		if len(service(t, base, name).Ports) != 0 {
			t.Errorf("service %s is published by docker-compose.yml", name)
		}
	}
	root, _ := filepath.Abs("..")
	files := []types.ConfigFile{}
	for _, f := range []string{"docker-compose.yml", "deploy/compose.publish-brokers.yml"} {
		files = append(files, types.ConfigFile{Filename: filepath.Join(root, f), Content: []byte(readFile(t, filepath.Join(root, f)))})
	}
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{WorkingDir: root, ConfigFiles: files, Environment: env(nil)},
		func(o *loader.Options) { o.SetProjectName("txorder", true) })
	if err != nil {
		t.Fatal(err)
	}
	confs := mountedConfs(t, p)
	for i, b := range brokers {
		port, _ := confs[i].Get("listenPort")
		host, _ := confs[i].Get("brokerIP1")
		s := service(t, p, b)
		if host != b || len(s.Ports) != 1 || s.Ports[0].Published != port || strconv.Itoa(int(s.Ports[0].Target)) != port ||
			s.Ports[0].HostIP != "127.0.0.1" {
			t.Errorf("service %s (registers %s:%s) publishes %+v, want 127.0.0.1:%s:%s", b, host, port, s.Ports, port, port)
		}
	}
	published := map[string]bool{}
	for _, n := range nameServers {
		for _, port := range service(t, p, n).Ports {
			if port.Target != 9876 || published[port.Published] {
				t.Errorf("service %s publishes %+v", n, port)
			}
			published[port.Published] = true
		}
	}
	if len(published) != len(nameServers) {
		t.Errorf("NameServers published on %v, want one port each", published)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
