package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeJava stands in for the image's JVM running MQAdminStartup: it logs
// its command line to $FAKE/calls and keeps topics in $FAKE/topics. The
// cluster "elects a master" after $FAKE_READY_AFTER updateTopic calls
// (before that, updateTopic succeeds silently and the route stays empty,
// as mqadmin does on a cluster without a master); never when it is
// "never".
const fakeJava = `#!/bin/sh
echo "$*" >>"$FAKE/calls"
while [ "$#" -gt 0 ] && [ "$1" != org.apache.rocketmq.tools.command.MQAdminStartup ]; do shift; done
[ "$#" -gt 0 ] || { echo "no MQAdminStartup" >&2; exit 1; }
shift
cmd=$1; shift
topic=; queues=; perm=
while [ "$#" -gt 0 ]; do
	case $1 in
	-t) topic=$2; shift ;;
	-w) queues=$2; shift ;;
	-p) perm=$2; shift ;;
	esac
	shift
done
mkdir -p "$FAKE/topics"
case $cmd in
updateTopic)
	n=$(cat "$FAKE/updates" 2>/dev/null || echo 0)
	n=$((n + 1))
	echo "$n" >"$FAKE/updates"
	if [ "$FAKE_READY_AFTER" != never ] && [ "$n" -gt "$FAKE_READY_AFTER" ]; then
		echo "$queues $perm" >"$FAKE/topics/$topic"
	fi
	echo "create topic to 10.0.0.1:30911 success."
	;;
topicRoute)
	[ -f "$FAKE/topics/$topic" ] || { echo "No topic route info in name server for the topic: $topic" >&2; exit 1; }
	read -r q p <"$FAKE/topics/$topic"
	printf '{\n\t"brokerDatas":[{"brokerName":"txorder-broker-a"}],\n\t"queueDatas":[{\n\t\t"brokerName":"txorder-broker-a",\n\t\t"perm":%s,\n\t\t"readQueueNums":%s,\n\t\t"writeQueueNums":%s\n\t}]\n}\n' "$p" "$q" "$q"
	;;
clusterList)
	echo "#Cluster Name     #Broker Name      #BID  #Addr"
	;;
*)
	echo "unexpected command $cmd" >&2
	exit 1
	;;
esac
`

type initRun struct {
	code  int
	out   string
	calls []string
	dir   string
}

func runInit(t *testing.T, env ...string) initRun {
	t.Helper()
	dash := needTool(t, "dash", "dash")
	dir := t.TempDir()
	jdk := filepath.Join(dir, "jdk", "bin")
	if err := os.MkdirAll(jdk, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(jdk, "java"), []byte(fakeJava), 0o755); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "rocketmq-5.3.1")
	cmd := exec.Command(dash, "rocketmq-init.sh")
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"FAKE=" + dir,
		"JAVA_HOME=" + filepath.Join(dir, "jdk"),
		"ROCKETMQ_HOME=" + home,
		"NAMESRV_ADDR=namesrv-1:9876;namesrv-2:9876",
		"ROCKETMQ_CLUSTER=txorder-cluster",
		"ORDER_TOPIC=ORDER_PAID",
		"ORDER_TOPIC_QUEUES=4",
		"FULFILLMENT_GROUP=fulfillment",
		"INIT_RETRY_SECONDS=0",
		// What compose used to set: it must have no effect.
		"JAVA_OPT_EXT=-Xms128m -Xmx256m -Xmn64m",
	}, env...)
	out, err := cmd.CombinedOutput()
	r := initRun{out: string(out), dir: dir}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		r.code = ee.ExitCode()
	}
	b, _ := os.ReadFile(filepath.Join(dir, "calls"))
	r.calls = strings.Split(strings.TrimSpace(string(b)), "\n")
	return r
}

// TestInitScriptHeap: rocketmq-init runs MQAdminStartup in a JVM of
// ADMIN_JAVA_OPT's size (256 MiB by default), never through tools.sh and
// its fixed 1 GiB heap, with the classpath and logback file tools.sh and
// mqadmin would give it; it retries until the cluster has a master and
// both topics' routes show the wanted queues and perm 6.
func TestInitScriptHeap(t *testing.T) {
	r := runInit(t, "FAKE_READY_AFTER=2", "INIT_TIMEOUT_SECONDS=60")
	if r.code != 0 || !strings.Contains(r.out, "ORDER_PAID (4 queues) and %DLQ%fulfillment (readable) exist on cluster txorder-cluster") {
		t.Fatalf("exit %d, output:\n%s", r.code, r.out)
	}
	if !strings.Contains(r.out, "not ready (attempt 1)") {
		t.Errorf("no retry while the cluster had no master:\n%s", r.out)
	}
	home := filepath.Join(r.dir, "rocketmq-5.3.1")
	for _, call := range r.calls {
		for _, want := range []string{"-server -Xms128m -Xmx256m", "-cp .:" + home + "/conf:" + home + "/lib/*",
			"-Drmq.logback.configurationFile=" + home + "/conf/rmq.tools.logback.xml", "org.apache.rocketmq.tools.command.MQAdminStartup"} {
			if !strings.Contains(call, want) {
				t.Errorf("java %q lacks %q", call, want)
			}
		}
		if strings.Contains(call, "-Xmx1g") {
			t.Errorf("java %q has the 1 GiB heap", call)
		}
	}
	for topic, want := range map[string]string{"ORDER_PAID": "4 6", "%DLQ%fulfillment": "1 6"} {
		b, err := os.ReadFile(filepath.Join(r.dir, "topics", topic))
		if err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("topic %s: %q %v, want queues and perm %q", topic, b, err, want)
		}
	}

	r = runInit(t, "FAKE_READY_AFTER=0", "ADMIN_JAVA_OPT=-Xms64m -Xmx96m")
	if r.code != 0 || !strings.Contains(r.calls[0], "-server -Xms64m -Xmx96m -cp") {
		t.Errorf("ADMIN_JAVA_OPT not used: exit %d, calls %q", r.code, r.calls)
	}
}

func TestInitScriptGivesUp(t *testing.T) {
	r := runInit(t, "FAKE_READY_AFTER=never", "INIT_TIMEOUT_SECONDS=1", "INIT_RETRY_SECONDS=1")
	if r.code != 1 || !strings.Contains(r.out, "gave up after 1s: no master in cluster txorder-cluster") ||
		!strings.Contains(r.out, "#Cluster Name") {
		t.Errorf("exit %d, output:\n%s\nwant 1, the reason and the cluster list", r.code, r.out)
	}
}
