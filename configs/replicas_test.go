package configs

import (
	"os"
	"testing"
	"time"
)

// TestInstanceNameFromHostname: replicas started from one configuration
// (containers of a scaled compose service) get distinct RocketMQ client
// ids from "{hostname}" in their instance names.
func TestInstanceNameFromHostname(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	o, err := LoadOrderd("orderd.yaml", []string{testKeys, "TXORDER_ROCKETMQ__INSTANCE_NAME=orderd-tx-{hostname}"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "orderd-tx-" + host; o.RocketMQ.InstanceName != want {
		t.Errorf("orderd instance name = %q, want %q", o.RocketMQ.InstanceName, want)
	}
	f, err := LoadFulfillmentd("fulfillmentd.yaml", []string{"TXORDER_FULFILLMENT__ROCKETMQ__INSTANCE_NAME={hostname}-fulfillmentd"})
	if err != nil {
		t.Fatal(err)
	}
	if want := host + "-fulfillmentd"; f.RocketMQ.InstanceName != want {
		t.Errorf("fulfillmentd instance name = %q, want %q", f.RocketMQ.InstanceName, want)
	}
	if got := ExpandHostname("orderd-tx"); got != "orderd-tx" {
		t.Errorf("a name without the placeholder changed: %q", got)
	}
}

func TestDrainDelay(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want time.Duration
		ok   bool
	}{
		{"", 5 * time.Second, true},
		{"TXORDER_HTTP__DRAIN_DELAY=0s", 0, true},
		{"TXORDER_HTTP__DRAIN_DELAY=-1s", 0, false},
		{"TXORDER_HTTP__DRAIN_DELAY=10m", 0, false},
	} {
		cfg, err := LoadOrderd("orderd.yaml", []string{testKeys, tc.env})
		if (err == nil) != tc.ok {
			t.Errorf("%q: err = %v, want ok %v", tc.env, err, tc.ok)
			continue
		}
		if tc.ok && cfg.HTTP.DrainDelay != tc.want {
			t.Errorf("%q: drain delay = %s, want %s", tc.env, cfg.HTTP.DrainDelay, tc.want)
		}
	}
}
