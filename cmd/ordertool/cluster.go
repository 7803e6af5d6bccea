package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/internal/nsresolve"
	"github.com/txorder/txorder/internal/remoting"
)

// clusterReport is what `ordertool cluster --json` prints.
type clusterReport struct {
	// NameServer is the NameServer that answered.
	NameServer string          `json:"name_server"`
	Clusters   []clusterGroups `json:"clusters"`
}

type clusterGroups struct {
	Name    string        `json:"name"`
	Brokers []brokerGroup `json:"brokers"`
}

// brokerGroup is one broker name: a DLedger group or a master with its
// slaves. Master is the address of brokerId 0, empty while there is none
// (a DLedger election under way).
type brokerGroup struct {
	Name   string       `json:"name"`
	Master string       `json:"master"`
	Nodes  []brokerNode `json:"nodes"`
}

type brokerNode struct {
	ID   int64  `json:"id"`
	Addr string `json:"addr"`
	Role string `json:"role"`
}

func runCluster(ctx context.Context, env *environment, args []string) error {
	envName := configs.EnvName("rocketmq.name_servers")
	fs := newFlagSet(env, "cluster [--namesrv host:port[,host:port]] [--json] [--master]",
		"Asks a NameServer for the cluster's brokers (GET_BROKER_CLUSTER_INFO) and prints each\n"+
			"broker group with its nodes and which one is the master (brokerId 0; in a DLedger group,\n"+
			"the elected leader, the followers having ids 1..3 from dLegerSelfId n0..n2). The\n"+
			"NameServers are tried in turn until one answers; exit 1 when none does.")
	namesrv := fs.String("namesrv", "", "NameServers, comma- or semicolon-separated (default: rocketmq.name_servers of the orderd configuration, which $"+envName+" overrides)")
	configPath := fs.String("config", env.configPath("orderd"), "orderd configuration file, for the default NameServers (empty: defaults and environment only)")
	asJSON := fs.Bool("json", false, "print JSON")
	masterOnly := fs.Bool("master", false, "print only the master address of each broker group, one per line; exit 1 if a group has none")
	timeout := fs.Duration("timeout", 3*time.Second, "bound of the request to each NameServer")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	var addrs []string
	if *namesrv != "" {
		var err error
		if addrs, err = splitNameServers(*namesrv); err != nil {
			fmt.Fprintf(env.stderr, "ordertool cluster: --namesrv: %v\n", err)
			return errUsage
		}
	} else {
		cfg, err := configs.LoadOrderd(*configPath, configs.WithoutFulfillment(env.environ))
		if err != nil {
			return err
		}
		addrs = cfg.RocketMQ.NameServers
	}

	answered, ci, err := clusterInfo(ctx, addrs, *timeout)
	if err != nil {
		return err
	}
	report := newClusterReport(answered, ci)
	switch {
	case *masterOnly:
		return printMasters(env.stdout, report)
	case *asJSON:
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	default:
		return printCluster(env.stdout, report)
	}
}

// clusterInfo asks each NameServer in turn and returns the first answer,
// naming the one that answered as given (a host name is resolved through
// nsresolve, as the services resolve it, and each of its addresses tried).
func clusterInfo(ctx context.Context, addrs []string, timeout time.Duration) (string, remoting.ClusterInfo, error) {
	ns, err := nsresolve.New(addrs, slog.New(slog.DiscardHandler), nsresolve.Options{Timeout: timeout})
	if err != nil {
		return "", remoting.ClusterInfo{}, err
	}
	var errs []error
	for _, target := range ns.Targets(ctx) {
		if target.Err != nil {
			errs = append(errs, target.Err)
			continue
		}
		for _, addr := range target.IPs {
			callCtx, cancel := context.WithTimeout(ctx, timeout)
			ci, err := remoting.GetClusterInfo(callCtx, addr)
			cancel()
			if err == nil {
				return target.Addr, ci, nil
			}
			if !strings.Contains(err.Error(), addr) {
				err = fmt.Errorf("%s: %w", addr, err)
			}
			errs = append(errs, target.Wrap(addr, err))
			if ctx.Err() != nil {
				break
			}
		}
	}
	return "", remoting.ClusterInfo{}, fmt.Errorf("no NameServer answered: %w", errors.Join(errs...))
}

func splitNameServers(list string) ([]string, error) {
	var out []string
	for _, a := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ';' }) {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || host == "" || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%q is not host:port", a)
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, errors.New("no NameServer address")
	}
	return out, nil
}

func lookupEnv(environ []string, name string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// newClusterReport sorts the NameServer's tables into clusters, broker
// groups and nodes by id. Brokers the cluster table does not list are put
// under the cluster their own data names.
func newClusterReport(answered string, ci remoting.ClusterInfo) clusterReport {
	members := map[string][]string{}
	listed := map[string]bool{}
	for cluster, names := range ci.ClusterAddrTable {
		for _, name := range names {
			if _, ok := ci.BrokerAddrTable[name]; ok && !listed[name] {
				members[cluster] = append(members[cluster], name)
				listed[name] = true
			}
		}
	}
	for name, bd := range ci.BrokerAddrTable {
		if !listed[name] {
			members[bd.Cluster] = append(members[bd.Cluster], name)
		}
	}
	report := clusterReport{NameServer: answered, Clusters: []clusterGroups{}}
	for _, cluster := range slices.Sorted(maps.Keys(members)) {
		cg := clusterGroups{Name: cluster}
		names := members[cluster]
		slices.Sort(names)
		for _, name := range names {
			bd := ci.BrokerAddrTable[name]
			bg := brokerGroup{Name: name, Nodes: []brokerNode{}}
			for _, id := range slices.Sorted(maps.Keys(bd.BrokerAddrs)) {
				role := "slave"
				if id == 0 {
					role = "master"
					bg.Master = bd.BrokerAddrs[id]
				}
				bg.Nodes = append(bg.Nodes, brokerNode{ID: id, Addr: bd.BrokerAddrs[id], Role: role})
			}
			cg.Brokers = append(cg.Brokers, bg)
		}
		report.Clusters = append(report.Clusters, cg)
	}
	return report
}

func printCluster(w io.Writer, r clusterReport) error {
	fmt.Fprintf(w, "NameServer %s\n", r.NameServer)
	if len(r.Clusters) == 0 {
		fmt.Fprintln(w, "no brokers registered")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tBROKER\tID\tADDRESS\tROLE")
	var leaderless []string
	for _, c := range r.Clusters {
		for _, b := range c.Brokers {
			for _, n := range b.Nodes {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", c.Name, b.Name, n.ID, n.Addr, n.Role)
			}
			if b.Master == "" {
				leaderless = append(leaderless, b.Name)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, name := range leaderless {
		fmt.Fprintf(w, "broker %s has no master: no node is brokerId 0 (a DLedger election may be under way)\n", name)
	}
	return nil
}

func printMasters(w io.Writer, r clusterReport) error {
	var leaderless []string
	for _, c := range r.Clusters {
		for _, b := range c.Brokers {
			if b.Master == "" {
				leaderless = append(leaderless, b.Name)
				continue
			}
			fmt.Fprintln(w, b.Master)
		}
	}
	if len(r.Clusters) == 0 {
		return fmt.Errorf("NameServer %s knows no brokers", r.NameServer)
	}
	if len(leaderless) > 0 {
		return fmt.Errorf("no master for %s (a DLedger election may be under way)", strings.Join(leaderless, ", "))
	}
	return nil
}
