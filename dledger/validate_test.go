package dledger

import (
	"strings"
	"testing"
	"time"
)

func shippedGroup(t *testing.T) []Conf {
	t.Helper()
	group, err := Shipped()
	if err != nil {
		t.Fatal(err)
	}
	return group
}

// composeRules are the rules docker-compose.yml's orderd environment
// implies.
func composeRules() Rules {
	return Rules{
		PaymentWindow: 5 * time.Minute, CheckInterval: 30 * time.Second, CheckMax: 15,
		TransactionTimeout: 6 * time.Second,
		Hosts:              map[string]string{"n0": "broker-n0", "n1": "broker-n1", "n2": "broker-n2"},
	}
}

func TestShippedConfsPass(t *testing.T) {
	group := shippedGroup(t)
	for name, rules := range map[string]Rules{"default": DefaultRules(), "zero": {}, "compose": composeRules()} {
		if problems := rules.Validate(group); len(problems) != 0 {
			t.Errorf("%s rules: shipped confs have problems:\n%s", name, list(problems))
		}
	}
	if problems := Validate(group); len(problems) != 0 {
		t.Errorf("Validate: %s", list(problems))
	}
}

func list(problems []Problem) string {
	var b strings.Builder
	for _, p := range problems {
		b.WriteString("  " + p.String() + "\n")
	}
	return b.String()
}

// edit returns a copy of the shipped group with fn applied to it.
func edit(t *testing.T, fn func(g []Conf) []Conf) []Conf {
	t.Helper()
	g := shippedGroup(t)
	return fn(g)
}

func set(i int, kv ...string) func(g []Conf) []Conf {
	return func(g []Conf) []Conf {
		for j := 0; j < len(kv); j += 2 {
			g[i] = g[i].Set(kv[j], kv[j+1])
		}
		return g
	}
}

func setAll(kv ...string) func(g []Conf) []Conf {
	return func(g []Conf) []Conf {
		for i := range g {
			g = set(i, kv...)(g)
		}
		return g
	}
}

func del(i int, key string) func(g []Conf) []Conf {
	return func(g []Conf) []Conf {
		g[i] = g[i].Delete(key)
		return g
	}
}

// want is a problem a trap must produce: in this file, about this key, with
// these words in the message.
type want struct {
	file, key string
	words     []string
}

func TestTraps(t *testing.T) {
	tests := []struct {
		name  string
		rules Rules
		group func(g []Conf) []Conf
		want  []want
	}{
		{
			name:  "different brokerName per node (public template trap)",
			group: set(1, "brokerName", "RaftNode01"),
			want: []want{
				{"broker-n1.conf", "brokerName", []string{"RaftNode01", "same brokerName"}},
				{"broker-n1.conf", "dLegerGroup", []string{"differs from brokerName"}},
			},
		},
		{
			name:  "same listenPort on every node (public template trap)",
			group: setAll("listenPort", "30911"),
			want: []want{
				{"broker-n1.conf", "listenPort", []string{"30911", "broker-n0.conf"}},
				{"broker-n2.conf", "listenPort", []string{"30911", "broker-n0.conf"}},
			},
		},
		{
			name:  "store path outside the volume (public template trap)",
			group: set(0, "storePathRootDir", "/tmp/rmqstore/node00", "storePathCommitLog", "/tmp/rmqstore/node00/commitlog"),
			want: []want{
				{"broker-n0.conf", "storePathRootDir", []string{"/tmp/rmqstore/node00", "outside the volume", DefaultVolumeRoot}},
				{"broker-n0.conf", "storePathCommitLog", []string{"outside the volume"}},
			},
		},
		{
			name:  "store path escaping the volume with ..",
			group: set(2, "storePathCommitLog", "/home/rocketmq/store/../commitlog"),
			want:  []want{{"broker-n2.conf", "storePathCommitLog", []string{"outside the volume"}}},
		},
		{
			name:  "store path outside a configured volume root",
			rules: Rules{VolumeRoot: "/data"},
			group: func(g []Conf) []Conf { return g },
			want:  []want{{"broker-n0.conf", "storePathRootDir", []string{"outside the volume mounted at /data"}}},
		},
		{
			name:  "storePathRootDir missing",
			group: del(1, "storePathRootDir"),
			want:  []want{{"broker-n1.conf", "storePathRootDir", []string{"not set"}}},
		},
		{
			name:  "dLegerGroup differs from brokerName on every node",
			group: setAll("dLegerGroup", "RaftNode00"),
			want:  []want{{"broker-n0.conf", "dLegerGroup", []string{"RaftNode00", "brokerName"}}},
		},
		{
			name:  "different brokerClusterName",
			group: set(2, "brokerClusterName", "DefaultCluster"),
			want:  []want{{"broker-n2.conf", "brokerClusterName", []string{"DefaultCluster"}}},
		},
		{
			name:  "dLegerPeers differ between nodes",
			group: set(1, "dLegerPeers", "n0-broker-n0:40911;n1-broker-n1:40912;n2-broker-n2:40914"),
			want:  []want{{"broker-n1.conf", "dLegerPeers", []string{"identical"}}},
		},
		{
			name:  "selfId missing from dLegerPeers",
			group: set(2, "dLegerSelfId", "n3"),
			want: []want{
				{"broker-n2.conf", "dLegerPeers", []string{"n3", "cannot join"}},
				{"broker-n0.conf", "dLegerPeers", []string{"n2-broker-n2:40913", "no configuration file"}},
			},
		},
		{
			name:  "own peer entry at another host than brokerIP1",
			group: set(1, "brokerIP1", "broker-n9"),
			want:  []want{{"broker-n1.conf", "dLegerPeers", []string{"broker-n9", "brokerIP1"}}},
		},
		{
			name:  "own peer entry at another host than the compose service",
			rules: Rules{Hosts: map[string]string{"n0": "rocketmq-0", "n1": "broker-n1", "n2": "broker-n2"}},
			group: func(g []Conf) []Conf { return g },
			want:  []want{{"broker-n0.conf", "dLegerPeers", []string{"rocketmq-0"}}},
		},
		{
			name: "selfId not a letter and digits",
			group: func(g []Conf) []Conf {
				peers := "node0-broker-n0:40911;n1-broker-n1:40912;n2-broker-n2:40913"
				for i := range g {
					g[i] = g[i].Set("dLegerPeers", peers)
				}
				g[0] = g[0].Set("dLegerSelfId", "node0")
				return g
			},
			want: []want{{"broker-n0.conf", "dLegerSelfId", []string{"node0", "letter followed by digits"}}},
		},
		{
			name:  "duplicate selfId",
			group: set(2, "dLegerSelfId", "n1", "brokerIP1", "broker-n1"),
			want:  []want{{"broker-n2.conf", "dLegerSelfId", []string{"also the id of broker-n1.conf"}}},
		},
		{
			name:  "DLedger off",
			group: set(0, "enableDLegerCommitLog", "false"),
			want:  []want{{"broker-n0.conf", "enableDLegerCommitLog", []string{"must be true"}}},
		},
		{
			name:  "DLedger key missing",
			group: del(2, "enableDLegerCommitLog"),
			want:  []want{{"broker-n2.conf", "enableDLegerCommitLog", []string{"not set"}}},
		},
		{
			name:  "ASYNC_FLUSH",
			group: set(1, "flushDiskType", "ASYNC_FLUSH"),
			want:  []want{{"broker-n1.conf", "flushDiskType", []string{"SYNC_FLUSH"}}},
		},
		{
			name:  "flushDiskType missing",
			group: del(0, "flushDiskType"),
			want:  []want{{"broker-n0.conf", "flushDiskType", []string{"not set"}}},
		},
		{
			name:  "payment window does not fit the check budget",
			group: setAll("transactionCheckMax", "5"),
			want: []want{{"broker-n0.conf", "transactionCheckMax", []string{"5m0s", "does not fit", "2m0s"}},
				{"broker-n2.conf", "transactionCheckMax", []string{"does not fit"}}},
		},
		{
			name:  "longer payment window than the shipped budget",
			rules: Rules{PaymentWindow: 10 * time.Minute},
			group: func(g []Conf) []Conf { return g },
			want:  []want{{"broker-n1.conf", "transactionCheckMax", []string{"10m0s", "7m0s"}}},
		},
		{
			name:  "transaction settings missing",
			group: del(0, "transactionCheckInterval"),
			want:  []want{{"broker-n0.conf", "transactionCheckInterval", []string{"not set", "60s in 4.9"}}},
		},
		{
			name:  "transaction settings differ between nodes",
			group: set(2, "transactionCheckInterval", "60000"),
			want:  []want{{"broker-n2.conf", "transactionCheckInterval", []string{"60000", "30000"}}},
		},
		{
			name:  "transaction settings disagree with orderd",
			rules: Rules{CheckInterval: time.Minute, CheckMax: 20, TransactionTimeout: 10 * time.Second},
			group: func(g []Conf) []Conf { return g },
			want: []want{
				{"broker-n0.conf", "transactionCheckInterval", []string{"30000 ms", "rocketmq.check_interval is 1m0s"}},
				{"broker-n0.conf", "transactionCheckMax", []string{"rocketmq.check_max is 20"}},
				{"broker-n0.conf", "transactionTimeOut", []string{"rocketmq.transaction_timeout is 10s"}},
			},
		},
		{
			name:  "not a number",
			group: set(1, "transactionTimeOut", "6s"),
			want:  []want{{"broker-n1.conf", "transactionTimeOut", []string{"positive integer"}}},
		},
		{
			name:  "misspelt key the broker ignores",
			group: set(0, "transactionTimeout", "6000"),
			want:  []want{{"broker-n0.conf", "transactionTimeout", []string{"did you mean transactionTimeOut"}}},
		},
		{
			name: "DLedger spelt the documented way",
			group: func(g []Conf) []Conf {
				v, _ := g[1].Get("dLegerPeers")
				g[1] = g[1].Delete("dLegerPeers").Set("dLedgerPeers", v)
				return g
			},
			want: []want{
				{"broker-n1.conf", "dLedgerPeers", []string{"did you mean dLegerPeers"}},
				{"broker-n1.conf", "dLegerPeers", []string{"not set"}},
			},
		},
		{
			name: "trailing white space",
			group: func(g []Conf) []Conf {
				g[2] = g[2].Set("enableDLegerCommitLog", "true ")
				return g
			},
			want: []want{{"broker-n2.conf", "enableDLegerCommitLog", []string{"white space"}}},
		},
		{
			name: "key set twice",
			group: func(g []Conf) []Conf {
				g[0].Entries = append(g[0].Entries, Entry{Key: "listenPort", Value: "30911", Line: 99})
				return g
			},
			want: []want{{"broker-n0.conf", "listenPort", []string{"set again"}}},
		},
		{
			name:  "DLedger port on another node's fast channel",
			group: setAll("dLegerPeers", "n0-broker-n0:30919;n1-broker-n1:40912;n2-broker-n2:40913"),
			want:  []want{{"broker-n1.conf", "listenPort", []string{"30919", "DLedger port", "broker-n0.conf"}}},
		},
		{
			name:  "DLedger port on the node's own HA port",
			group: setAll("dLegerPeers", "n0-broker-n0:30912;n1-broker-n1:40912;n2-broker-n2:40913"),
			want:  []want{{"broker-n0.conf", "dLegerPeers", []string{"30912", "HA"}}},
		},
		{
			name:  "listen port ranges overlap",
			group: set(1, "listenPort", "30912"),
			want:  []want{{"broker-n1.conf", "listenPort", []string{"30912", "broker-n0.conf"}}},
		},
		{
			name:  "two nodes only",
			group: func(g []Conf) []Conf { return g[:2] },
			want: []want{
				{"broker-n0.conf", "dLegerPeers", []string{"2 configuration files, want 3"}},
				{"broker-n0.conf", "dLegerPeers", []string{"n2", "no configuration file"}},
			},
		},
		{
			name:  "peers of a two-node group",
			group: setAll("dLegerPeers", "n0-broker-n0:40911;n1-broker-n1:40912"),
			want: []want{
				{"broker-n0.conf", "dLegerPeers", []string{"lists 2 nodes, want 3"}},
				{"broker-n2.conf", "dLegerPeers", []string{"cannot join"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems := tt.rules.Validate(edit(t, tt.group))
			if len(problems) == 0 {
				t.Fatal("no problems")
			}
			for _, w := range tt.want {
				if !hasProblem(problems, w) {
					t.Errorf("no problem in %s about %s with %q; got:\n%s", w.file, w.key, w.words, list(problems))
				}
			}
			for _, p := range problems {
				if p.File == "" || p.Key == "" || !strings.Contains(p.String(), p.Key) || !strings.HasPrefix(p.String(), p.File) {
					t.Errorf("problem does not name its file and key: %+v", p)
				}
			}
		})
	}
}

func hasProblem(problems []Problem, w want) bool {
	for _, p := range problems {
		if p.File != w.file || p.Key != w.key {
			continue
		}
		ok := true
		for _, word := range w.words {
			if !strings.Contains(p.Message, word) {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func TestProblemString(t *testing.T) {
	p := Problem{File: "broker-n1.conf", Line: 12, Key: "brokerName", Message: "boom"}
	if got, want := p.String(), "broker-n1.conf:12: brokerName: boom"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	p.Line = 0
	if got, want := p.String(), "broker-n1.conf: brokerName: boom"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestProblemLines(t *testing.T) {
	group := edit(t, set(1, "brokerName", "other"))
	for _, p := range Validate(group) {
		if p.Key == "brokerName" {
			if want := group[1].line("brokerName"); p.Line != want || want == 0 {
				t.Errorf("brokerName problem on line %d, want %d", p.Line, want)
			}
			return
		}
	}
	t.Fatal("no brokerName problem")
}

func TestValidateEmpty(t *testing.T) {
	if problems := Validate(nil); len(problems) != 1 {
		t.Fatalf("Validate(nil) = %v, want one problem", problems)
	}
}

const home = "/home/rocketmq/rocketmq-5.3.1"

func goodContainer(i int) Container {
	name := ShippedFiles[i]
	return Container{
		Service: "broker-n" + string(rune('0'+i)),
		Home:    home,
		Mounts: []Mount{
			{Source: "/repo/dledger/" + name, Target: home + "/conf/dledger/" + name},
			{Source: "broker-n0-store", Target: DefaultVolumeRoot, Volume: true},
		},
		ConfigArg: home + "/conf/dledger/" + name,
	}
}

func TestCheckContainer(t *testing.T) {
	group := shippedGroup(t)
	for i, c := range group {
		if problems := DefaultRules().CheckContainer(c, goodContainer(i)); len(problems) != 0 {
			t.Errorf("%s: %s", c.File, list(problems))
		}
	}
	relative := goodContainer(0)
	relative.ConfigArg = "../conf/dledger/broker-n0.conf"
	if problems := DefaultRules().CheckContainer(group[0], relative); len(problems) != 0 {
		t.Errorf("-c relative to ROCKETMQ_HOME/bin: %s", list(problems))
	}

	tests := []struct {
		name string
		edit func(ct *Container)
		want want
	}{
		{
			name: "config mounted outside ROCKETMQ_HOME (public template trap)",
			edit: func(ct *Container) {
				ct.Mounts[0].Target = "/opt/rocketmq-4.9.4/conf/dledger/broker.conf"
				ct.ConfigArg = "../conf/dledger/broker.conf"
			},
			want: want{"broker-n0.conf", "volumes", []string{"/opt/rocketmq-4.9.4/conf/dledger/broker.conf", "outside ROCKETMQ_HOME"}},
		},
		{
			name: "-c names another file than the mount",
			edit: func(ct *Container) { ct.ConfigArg = "../conf/dledger/broker.conf" },
			want: want{"broker-n0.conf", "command", []string{"would read another file"}},
		},
		{
			name: "no -c",
			edit: func(ct *Container) { ct.ConfigArg = "" },
			want: want{"broker-n0.conf", "command", []string{"without -c"}},
		},
		{
			name: "conf not mounted",
			edit: func(ct *Container) { ct.Mounts = ct.Mounts[1:] },
			want: want{"broker-n0.conf", "volumes", []string{"not mounted"}},
		},
		{
			name: "no volume at the store root",
			edit: func(ct *Container) { ct.Mounts[1].Target = "/home/rocketmq/data" },
			want: want{"broker-n0.conf", "volumes", []string{"no named volume at /home/rocketmq/store"}},
		},
		{
			name: "store root bind-mounted, not a volume",
			edit: func(ct *Container) { ct.Mounts[1].Volume = false },
			want: want{"broker-n0.conf", "volumes", []string{"no named volume"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := goodContainer(0)
			ct.Mounts = append([]Mount(nil), ct.Mounts...)
			tt.edit(&ct)
			problems := DefaultRules().CheckContainer(group[0], ct)
			if !hasProblem(problems, tt.want) {
				t.Errorf("no problem about %s with %q; got:\n%s", tt.want.key, tt.want.words, list(problems))
			}
		})
	}
}
