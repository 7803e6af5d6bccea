package configs

import (
	"slices"
	"strings"
	"testing"
)

// TestNameServersByName: NameServers may be host names (compose's
// namesrv-1:9876); cmd/ resolves them (internal/nsresolve). What the
// RocketMQ client could never use is refused here, naming the field.
func TestNameServersByName(t *testing.T) {
	cfg, err := LoadOrderd("", []string{"TXORDER_ROCKETMQ__NAME_SERVERS=namesrv-1:9876, namesrv-2:9876,10.0.0.3:9876"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"namesrv-1:9876", "namesrv-2:9876", "10.0.0.3:9876"}; !slices.Equal(cfg.RocketMQ.NameServers, want) {
		t.Errorf("orderd name servers %v, want %v", cfg.RocketMQ.NameServers, want)
	}
	f, err := LoadFulfillmentd("", []string{FulfillmentEnvPrefix + "ROCKETMQ__NAME_SERVERS=namesrv-1:9876,namesrv-2:9876"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"namesrv-1:9876", "namesrv-2:9876"}; !slices.Equal(f.RocketMQ.NameServers, want) {
		t.Errorf("fulfillmentd name servers %v, want %v", f.RocketMQ.NameServers, want)
	}
	for _, bad := range []string{
		"namesrv-1:9876;namesrv-2:9876", // the Java clients' separator: one entry here
		"http://namesrv-1:9876",
		"namesrv-1",
		"namesrv-1:0",
	} {
		_, err := LoadOrderd("", []string{"TXORDER_ROCKETMQ__NAME_SERVERS=" + bad})
		if err == nil || !strings.Contains(err.Error(), "rocketmq.name_servers") {
			t.Errorf("orderd accepted name_servers %q (err %v)", bad, err)
		}
		_, err = LoadFulfillmentd("", []string{FulfillmentEnvPrefix + "ROCKETMQ__NAME_SERVERS=" + bad})
		if err == nil || !strings.Contains(err.Error(), "rocketmq.name_servers") {
			t.Errorf("fulfillmentd accepted name_servers %q (err %v)", bad, err)
		}
	}
}
