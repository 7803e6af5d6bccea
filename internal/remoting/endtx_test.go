package remoting

import (
	"net/netip"
	"testing"
)

func TestDecodeMessageID(t *testing.T) {
	tests := []struct {
		name, id string
		host     string
		offset   int64
		bad      bool
	}{
		// 127.0.0.1:10911, offset 0x1234 — the shape of a send result's
		// OffsetMsgID from a broker on an IPv4 address.
		{name: "ipv4", id: "7F00000100002A9F0000000000001234", host: "127.0.0.1:10911", offset: 0x1234},
		{name: "ipv4 lower case", id: "7f00000100002a9f00000000ffffffff", host: "127.0.0.1:10911", offset: 0xffffffff},
		{name: "ipv6", id: "00000000000000000000000000000001" + "00002A9F" + "0000000000000010", host: "[::1]:10911", offset: 16},
		{name: "uniq id of the client is not an offset id", id: "0A0000010000000000000000000000000000", bad: true},
		{name: "not hex", id: "ZZ00000100002A9F0000000000001234", bad: true},
		{name: "empty", id: "", bad: true},
		{name: "negative offset", id: "7F00000100002A9F8000000000000000", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, off, err := DecodeMessageID(tt.id)
			if tt.bad {
				if err == nil {
					t.Fatalf("DecodeMessageID(%q) = %v %d, want an error", tt.id, host, off)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if host.String() != tt.host || off != tt.offset {
				t.Errorf("got %s %d, want %s %d", host, off, tt.host, tt.offset)
			}
		})
	}
}

func TestEncodeMessageIDRoundTrip(t *testing.T) {
	for _, host := range []string{"10.1.2.3:10911", "[2001:db8::7]:30911"} {
		ap := netip.MustParseAddrPort(host)
		id := EncodeMessageID(ap, 987654321)
		got, off, err := DecodeMessageID(id)
		if err != nil || got != ap || off != 987654321 {
			t.Errorf("%s: %s decodes to %v %d %v", host, id, got, off, err)
		}
	}
}

func TestEndTransactionHeaderFields(t *testing.T) {
	req := NewEndTransaction(EndTransactionHeader{ProducerGroup: "g", TranStateTableOffset: 7, CommitLogOffset: 4096,
		CommitOrRollback: TransactionCommitType, MsgID: "ABC"})
	want := map[string]string{"producerGroup": "g", "tranStateTableOffset": "7", "commitLogOffset": "4096",
		"commitOrRollback": "8", "fromTransactionCheck": "false", "msgId": "ABC", "transactionId": ""}
	if req.Code != EndTransaction || req.IsOneway() {
		t.Fatalf("code %d oneway %v, want %d two-way", req.Code, req.IsOneway(), EndTransaction)
	}
	for k, v := range want {
		if got, ok := req.Ext[k]; !ok || got != v {
			t.Errorf("ext %s = %q (present %v), want %q", k, got, ok, v)
		}
	}
}
