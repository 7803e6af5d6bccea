package dledger

import (
	"fmt"
	"maps"
	"net"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultVolumeRoot is where docker-compose.yml mounts each broker's named
// volume, and so where every store path must point.
const DefaultVolumeRoot = "/home/rocketmq/store"

// DefaultPaymentWindow is orderd's default order.payment_window.
const DefaultPaymentWindow = 5 * time.Minute

// Problem is one thing wrong with a group's configuration. Its String names
// the file, the line when known, and the key.
type Problem struct {
	File string
	// Line is the line of the offending entry; 0 when the key is missing or
	// the problem is about the container rather than the file.
	Line    int
	Key     string
	Message string
}

func (p Problem) String() string {
	loc := p.File
	if p.Line > 0 {
		loc += ":" + strconv.Itoa(p.Line)
	}
	return loc + ": " + p.Key + ": " + p.Message
}

// Rules are the expectations a group is checked against. The zero value of
// a field means its default (VolumeRoot, GroupSize, PaymentWindow) or that
// the rule is not checked (the orderd settings and Hosts).
type Rules struct {
	// VolumeRoot is where the node's persistent volume is mounted
	// (DefaultVolumeRoot): every store path must be under it.
	VolumeRoot string
	// GroupSize is the number of nodes (default 3).
	GroupSize int
	// PaymentWindow is orderd's order.payment_window (default 5m): it must
	// fit in (transactionCheckMax - 1) × transactionCheckInterval, or the
	// broker gives up on an unpaid order's half message before orderd
	// closes the order.
	PaymentWindow time.Duration
	// CheckInterval, CheckMax and TransactionTimeout are orderd's
	// rocketmq.check_interval, check_max and transaction_timeout; when set,
	// the broker's transactionCheckInterval, transactionCheckMax and
	// transactionTimeOut must equal them.
	CheckInterval      time.Duration
	CheckMax           int
	TransactionTimeout time.Duration
	// Hosts maps a dLegerSelfId to the host name the node is reachable at
	// (the compose service); when set, the node's own dLegerPeers entry
	// must use it.
	Hosts map[string]string
}

// DefaultRules returns the rules Validate uses.
func DefaultRules() Rules {
	return Rules{VolumeRoot: DefaultVolumeRoot, GroupSize: 3, PaymentWindow: DefaultPaymentWindow}
}

func (r Rules) withDefaults() Rules {
	if r.VolumeRoot == "" {
		r.VolumeRoot = DefaultVolumeRoot
	}
	if r.GroupSize == 0 {
		r.GroupSize = 3
	}
	if r.PaymentWindow == 0 {
		r.PaymentWindow = DefaultPaymentWindow
	}
	return r
}

// Validate checks group with DefaultRules.
func Validate(group []Conf) []Problem {
	return DefaultRules().Validate(group)
}

// Keys the broker reads, in the exact spelling of its setters. The broker
// ignores keys it does not know, so a near miss ("dLedgerPeers",
// "transactionTimeout") silently keeps a default.
var knownKeys = []string{
	"brokerClusterName", "brokerName", "brokerIP1", "brokerIP2", "brokerId", "brokerRole",
	"listenPort", "namesrvAddr", "enableDLegerCommitLog", "dLegerGroup", "dLegerPeers",
	"dLegerSelfId", "preferredLeaderId", "storePathRootDir", "storePathCommitLog",
	"storePathConsumeQueue", "storePathIndex", "storeCheckpoint", "abortFile",
	"flushDiskType", "transactionTimeOut", "transactionCheckInterval", "transactionCheckMax",
	"autoCreateTopicEnable", "autoCreateSubscriptionGroup", "sendMessageThreadPoolNums",
	"deleteWhen", "fileReservedTime",
}

// selfIDPattern: DLedgerCommitLog derives the follower's brokerId from the
// digits after the first character of dLegerSelfId (n0 → 1).
var selfIDPattern = regexp.MustCompile(`^[A-Za-z][0-9]+$`)

type checker struct {
	rules    Rules
	problems []Problem
}

func (ck *checker) add(c Conf, key, format string, args ...any) {
	ck.problems = append(ck.problems, Problem{File: c.File, Line: c.line(key), Key: key, Message: fmt.Sprintf(format, args...)})
}

// node is what the group checks need from one conf.
type node struct {
	conf   Conf
	selfID string
	peers  []Peer // nil when dLegerPeers is missing or malformed
	listen int    // 0 when missing or malformed
	tx     map[string]int64
}

// Validate checks group, one Conf per node, for everything a DLedger group
// needs: the same brokerClusterName and brokerName on every node,
// dLegerGroup equal to brokerName, identical dLegerPeers naming every node
// once (its own entry at its own host), distinct dLegerSelfIds, distinct
// listen ports whose port ranges do not collide, enableDLegerCommitLog=true,
// flushDiskType=SYNC_FLUSH, store paths on the volume, and transaction check
// settings that are explicit, equal on every node and compatible with
// orderd. It also reports misspelt keys, keys set twice and values with
// trailing white space (Java keeps it, and "true " is false). Every Problem
// names the file and the key; nil means the group is sound.
func (r Rules) Validate(group []Conf) []Problem {
	ck := &checker{rules: r.withDefaults()}
	if len(group) == 0 {
		return []Problem{{Key: "dLegerPeers", Message: "no broker configuration files to check"}}
	}
	nodes := make([]node, 0, len(group))
	for _, c := range group {
		nodes = append(nodes, ck.node(c))
	}
	ck.group(nodes)
	return ck.problems
}

func (ck *checker) node(c Conf) node {
	n := node{conf: c, tx: map[string]int64{}}
	ck.syntax(c)

	if v, ok := c.Get("enableDLegerCommitLog"); !ok {
		ck.add(c, "enableDLegerCommitLog", "not set: the broker defaults to false and runs a plain master/slave commit log with no election; set enableDLegerCommitLog=true")
	} else if v != "true" {
		ck.add(c, "enableDLegerCommitLog", "%q: must be true, or this node is not part of the DLedger group", v)
	}
	if v, ok := c.Get("flushDiskType"); !ok {
		ck.add(c, "flushDiskType", "not set: the default is ASYNC_FLUSH; set flushDiskType=SYNC_FLUSH (ignored in DLedger mode, it matters if the group is ever run in master/slave or controller mode)")
	} else if v != "SYNC_FLUSH" {
		ck.add(c, "flushDiskType", "%q: must be SYNC_FLUSH (ignored in DLedger mode, it matters if the group is ever run in master/slave or controller mode)", v)
	}
	for _, key := range []string{"brokerClusterName", "brokerName"} {
		if v, _ := c.Get(key); v == "" {
			ck.add(c, key, "not set: every node of the group needs the same %s", key)
		}
	}
	brokerName, _ := c.Get("brokerName")
	if g, ok := c.Get("dLegerGroup"); !ok || g == "" {
		ck.add(c, "dLegerGroup", "not set: it must equal brokerName (%q)", brokerName)
	} else if brokerName != "" && g != brokerName {
		ck.add(c, "dLegerGroup", "%q differs from brokerName %q: the DLedger group and the broker name must be the same on every node", g, brokerName)
	}

	n.selfID, _ = c.Get("dLegerSelfId")
	switch {
	case n.selfID == "":
		ck.add(c, "dLegerSelfId", "not set: each node needs its own id from dLegerPeers (n0, n1, n2)")
	case !selfIDPattern.MatchString(n.selfID):
		ck.add(c, "dLegerSelfId", "%q: must be a letter followed by digits (n0): the broker derives a follower's brokerId from the digits and fails to start otherwise", n.selfID)
	}

	if raw, ok := c.Get("dLegerPeers"); !ok || raw == "" {
		ck.add(c, "dLegerPeers", "not set: list every node as id-host:port separated by ';' (n0-broker-n0:40911;…)")
	} else if peers, err := ParsePeers(raw); err != nil {
		ck.add(c, "dLegerPeers", "%v", err)
	} else {
		n.peers = peers
		ck.ownPeer(n)
	}

	if v, ok := c.Get("listenPort"); !ok {
		ck.add(c, "listenPort", "not set: the default 10911 would be the same on every node; give each node its own port (30911, 30921, 30931)")
	} else if p, err := strconv.Atoi(v); err != nil || p < 3 || p > 65534 {
		ck.add(c, "listenPort", "%q is not a usable port (the broker also binds listenPort-2 and listenPort+1)", v)
	} else {
		n.listen = p
	}

	ck.storePaths(c)
	n.tx = ck.transaction(c)
	return n
}

// syntax reports misspelt keys, keys set twice and trailing white space.
func (ck *checker) syntax(c Conf) {
	seen := map[string]int{}
	for _, e := range c.Entries {
		if first, dup := seen[e.Key]; dup {
			ck.problems = append(ck.problems, Problem{File: c.File, Line: e.Line, Key: e.Key,
				Message: fmt.Sprintf("set again (first on line %d): the broker uses the last value, %q", first, lastValue(c, e.Key))})
		} else {
			seen[e.Key] = e.Line
		}
		if strings.TrimRight(e.Value, " \t\f") != e.Value {
			ck.problems = append(ck.problems, Problem{File: c.File, Line: e.Line, Key: e.Key,
				Message: fmt.Sprintf("value %q ends in white space, which Java keeps: numbers and enums then fail to parse and are ignored, and \"true \" reads as false", e.Value)})
		}
		for _, k := range knownKeys {
			if e.Key != k && normalizeKey(e.Key) == normalizeKey(k) {
				ck.problems = append(ck.problems, Problem{File: c.File, Line: e.Line, Key: e.Key,
					Message: fmt.Sprintf("unknown key, did you mean %s? The broker matches keys exactly and ignores unknown ones", k)})
			}
		}
	}
}

func lastValue(c Conf, key string) string {
	v, _ := c.Get(key)
	return v
}

// normalizeKey folds case and the two spellings of DLedger ("DLeger" in
// the broker's keys).
func normalizeKey(k string) string {
	return strings.ReplaceAll(strings.ToLower(k), "ledger", "leger")
}

// ownPeer checks the node's own entry in its dLegerPeers.
func (ck *checker) ownPeer(n node) {
	if n.selfID == "" {
		return
	}
	c := n.conf
	var own *Peer
	for i := range n.peers {
		if n.peers[i].ID == n.selfID {
			own = &n.peers[i]
		}
	}
	if own == nil {
		ck.add(c, "dLegerPeers", "does not list this node's dLegerSelfId %q: the node cannot join the group", n.selfID)
		return
	}
	if ip, ok := c.Get("brokerIP1"); ok && ip != "" && ip != own.Host {
		ck.add(c, "dLegerPeers", "this node's entry %s uses host %q but brokerIP1 is %q: the peers reach it at an address that is not its own", own, own.Host, ip)
	}
	if want, ok := ck.rules.Hosts[n.selfID]; ok && want != own.Host {
		ck.add(c, "dLegerPeers", "this node's entry %s uses host %q but node %s runs as %q", own, own.Host, n.selfID, want)
	}
}

// storeKeys are the store paths a broker writes, besides storePath*.
var storeKeys = []string{"storeCheckpoint", "abortFile"}

func (ck *checker) storePaths(c Conf) {
	root := ck.rules.VolumeRoot
	if v, _ := c.Get("storePathRootDir"); v == "" {
		ck.add(c, "storePathRootDir", "not set: the default ${user.home}/store depends on the user the broker runs as; set it on the volume (%s)", root)
	}
	for _, e := range c.Entries {
		if !strings.HasPrefix(e.Key, "storePath") && !slices.Contains(storeKeys, e.Key) {
			continue
		}
		if e.Value != lastValue(c, e.Key) {
			continue // an overridden duplicate; reported by syntax
		}
		if !within(root, e.Value) {
			ck.problems = append(ck.problems, Problem{File: c.File, Line: e.Line, Key: e.Key,
				Message: fmt.Sprintf("%q is outside the volume mounted at %s: the node's data would be lost with its container", e.Value, root)})
		}
	}
}

// within reports whether p is root or below it, as a clean absolute path.
func within(root, p string) bool {
	p = strings.TrimRight(p, "/")
	if !path.IsAbs(p) || path.Clean(p) != p {
		return false
	}
	root = path.Clean(root)
	return p == root || strings.HasPrefix(p, root+"/")
}

// transaction checks the check-back settings of one node and returns the
// parsed values (only those that parsed).
func (ck *checker) transaction(c Conf) map[string]int64 {
	r := ck.rules
	out := map[string]int64{}
	for _, key := range []string{"transactionTimeOut", "transactionCheckInterval", "transactionCheckMax"} {
		v, ok := c.Get(key)
		if !ok {
			ck.add(c, key, "not set: the broker's default differs between versions (transactionCheckInterval is 60s in 4.9, 30s in 5.x); set it to agree with orderd")
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			ck.add(c, key, "%q: want a positive integer (milliseconds, or a count for transactionCheckMax)", v)
			continue
		}
		out[key] = n
	}
	ms := func(key string) time.Duration { return time.Duration(out[key]) * time.Millisecond }
	if t, ok := out["transactionTimeOut"]; ok && r.TransactionTimeout > 0 && ms("transactionTimeOut") != r.TransactionTimeout {
		ck.add(c, "transactionTimeOut", "%d ms, but orderd's rocketmq.transaction_timeout is %s", t, r.TransactionTimeout)
	}
	iv, okI := out["transactionCheckInterval"]
	if okI && r.CheckInterval > 0 && ms("transactionCheckInterval") != r.CheckInterval {
		ck.add(c, "transactionCheckInterval", "%d ms, but orderd's rocketmq.check_interval is %s", iv, r.CheckInterval)
	}
	mx, okM := out["transactionCheckMax"]
	if okM && r.CheckMax > 0 && mx != int64(r.CheckMax) {
		ck.add(c, "transactionCheckMax", "%d, but orderd's rocketmq.check_max is %d", mx, r.CheckMax)
	}
	if okI && okM {
		budget := time.Duration(mx-1) * ms("transactionCheckInterval")
		if r.PaymentWindow > budget {
			ck.add(c, "transactionCheckMax", "the payment window %s does not fit in (transactionCheckMax %d - 1) × transactionCheckInterval %s = %s: the broker would give up on an unpaid order's half message before orderd closes the order; raise transactionCheckMax or shorten the window",
				r.PaymentWindow, mx, ms("transactionCheckInterval"), budget)
		}
	}
	return out
}

// sameKeys must have one value across the group.
var sameKeys = []string{"brokerClusterName", "brokerName", "dLegerGroup", "transactionTimeOut", "transactionCheckInterval", "transactionCheckMax"}

func (ck *checker) group(nodes []node) {
	first := nodes[0].conf
	for _, n := range nodes[1:] {
		for _, key := range sameKeys {
			want, okW := first.Get(key)
			got, okG := n.conf.Get(key)
			if okW && okG && got != want {
				ck.add(n.conf, key, "%q here but %q in %s: every node of a DLedger group needs the same %s", got, want, first.File, key)
			}
		}
	}

	// dLegerPeers: identical everywhere, one entry per node of this group.
	var ref *node
	for i := range nodes {
		if nodes[i].peers != nil {
			ref = &nodes[i]
			break
		}
	}
	if ref != nil {
		for _, n := range nodes {
			if n.peers != nil && n.conf.File != ref.conf.File && peersString(n.peers) != peersString(ref.peers) {
				ck.add(n.conf, "dLegerPeers", "%q here but %q in %s: dLegerPeers must be identical on every node", peersString(n.peers), peersString(ref.peers), ref.conf.File)
			}
		}
		if len(ref.peers) != ck.rules.GroupSize {
			ck.add(ref.conf, "dLegerPeers", "lists %d nodes, want %d (an odd number: a majority must survive one node's loss)", len(ref.peers), ck.rules.GroupSize)
		}
		ids := map[string]bool{}
		for _, n := range nodes {
			ids[n.selfID] = true
		}
		for _, p := range ref.peers {
			if !ids[p.ID] {
				ck.add(ref.conf, "dLegerPeers", "lists %s, but no configuration file has dLegerSelfId=%s", p, p.ID)
			}
		}
	}
	if len(nodes) != ck.rules.GroupSize {
		ck.add(first, "dLegerPeers", "the group has %d configuration files, want %d", len(nodes), ck.rules.GroupSize)
	}

	// dLegerSelfId unique.
	bySelf := map[string]string{}
	for _, n := range nodes {
		if n.selfID == "" {
			continue
		}
		if other, dup := bySelf[n.selfID]; dup {
			ck.add(n.conf, "dLegerSelfId", "%q is also the id of %s: every node needs its own", n.selfID, other)
		} else {
			bySelf[n.selfID] = n.conf.File
		}
	}
	ck.ports(nodes)
}

// ports keeps every node's ports apart: its listenPort, listenPort-2 (the
// fast "VIP" channel), listenPort+1 (HA) and its DLedger port. Containers
// have their own network namespaces, but distinct ports let the group run on
// one host and make the port name the node.
func (ck *checker) ports(nodes []node) {
	type use struct {
		file, what string
	}
	used := map[int]use{}
	byListen := map[int]string{}
	for _, n := range nodes {
		if n.listen == 0 {
			continue
		}
		if other, dup := byListen[n.listen]; dup {
			ck.add(n.conf, "listenPort", "%d is also the listenPort of %s: give each node its own (30911, 30921, 30931) so the nodes can share a host and the port tells them apart", n.listen, other)
			continue
		}
		byListen[n.listen] = n.conf.File
		mine := map[int]string{n.listen - 2: "listenPort-2 (fast channel)", n.listen: "listenPort", n.listen + 1: "listenPort+1 (HA)"}
		if own := ownPeerPort(n); own > 0 {
			if what, clash := mine[own]; clash {
				ck.add(n.conf, "dLegerPeers", "this node's DLedger port %d is also its %s", own, what)
			} else {
				mine[own] = "DLedger port"
			}
		}
		for _, port := range slices.Sorted(maps.Keys(mine)) {
			what := mine[port]
			if u, clash := used[port]; clash {
				key := "listenPort"
				if what == "DLedger port" {
					key = "dLegerPeers"
				}
				ck.add(n.conf, key, "port %d (%s) is also the %s of %s", port, what, u.what, u.file)
				continue
			}
			used[port] = use{file: n.conf.File, what: what}
		}
	}
}

func ownPeerPort(n node) int {
	for _, p := range n.peers {
		if p.ID == n.selfID {
			return p.Port
		}
	}
	return 0
}

// Peer is one entry of dLegerPeers: "n0-broker-n0:40911".
type Peer struct {
	ID   string
	Host string
	Port int
}

func (p Peer) String() string {
	return p.ID + "-" + net.JoinHostPort(p.Host, strconv.Itoa(p.Port))
}

// ParsePeers parses a dLegerPeers value, "id-host:port" entries separated
// by ';'. The id ends at the first '-', so hosts may contain dashes.
// Duplicate ids or addresses are errors.
func ParsePeers(s string) ([]Peer, error) {
	var out []Peer
	ids, addrs := map[string]bool{}, map[string]bool{}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, addr, ok := strings.Cut(part, "-")
		if !ok || id == "" {
			return nil, fmt.Errorf("entry %q: want id-host:port", part)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" {
			return nil, fmt.Errorf("entry %q: want id-host:port", part)
		}
		pn, err := strconv.Atoi(port)
		if err != nil || pn < 1 || pn > 65535 {
			return nil, fmt.Errorf("entry %q: bad port %q", part, port)
		}
		if ids[id] {
			return nil, fmt.Errorf("entry %q: id %s is listed twice", part, id)
		}
		if addrs[addr] {
			return nil, fmt.Errorf("entry %q: address %s is listed twice", part, addr)
		}
		ids[id], addrs[addr] = true, true
		out = append(out, Peer{ID: id, Host: host, Port: pn})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no entries")
	}
	return out, nil
}

func peersString(peers []Peer) string {
	parts := make([]string, len(peers))
	for i, p := range peers {
		parts[i] = p.String()
	}
	return strings.Join(parts, ";")
}
