package dledger

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	src := "# comment\n" +
		"! also a comment\n" +
		"   \n" +
		"brokerClusterName = txorder-cluster\n" +
		"brokerName:txorder-broker-a\n" +
		"listenPort 30911\n" +
		"dLegerPeers=n0-a:1;\\\n" +
		"    n1-b:2\n" +
		"withTab=\tvalue \n" +
		"escaped\\=key=\\u0041\\tB\r\n" +
		"crOnly=1\r" +
		"empty=\n" +
		"keyOnly\n" +
		"last=x"
	c, err := Parse("t.conf", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{"brokerClusterName", "txorder-cluster", 4},
		{"brokerName", "txorder-broker-a", 5},
		{"listenPort", "30911", 6},
		{"dLegerPeers", "n0-a:1;n1-b:2", 7},
		{"withTab", "value ", 9},
		{"escaped=key", "A\tB", 10},
		{"crOnly", "1", 11},
		{"empty", "", 12},
		{"keyOnly", "", 13},
		{"last", "x", 14},
	}
	if len(c.Entries) != len(want) {
		t.Fatalf("got %d entries %+v, want %d", len(c.Entries), c.Entries, len(want))
	}
	for i, w := range want {
		if c.Entries[i] != w {
			t.Errorf("entry %d = %+v, want %+v", i, c.Entries[i], w)
		}
	}
}

func TestParseErrorNamesFileAndLine(t *testing.T) {
	_, err := Parse("bad.conf", []byte("a=1\nb=\\u12G4\n"))
	if err == nil || !strings.Contains(err.Error(), "bad.conf:2") {
		t.Fatalf("err = %v, want one naming bad.conf:2", err)
	}
}

func TestGetSetDelete(t *testing.T) {
	c, err := Parse("t.conf", []byte("a=1\nb=2\na=3\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get("a"); v != "3" {
		t.Errorf("Get(a) = %q, want the last value 3", v)
	}
	c2 := c.Set("a", "4").Set("z", "9")
	if v, _ := c.Get("a"); v != "3" {
		t.Errorf("Set changed the original: Get(a) = %q", v)
	}
	if v, _ := c2.Get("a"); v != "4" {
		t.Errorf("after Set, Get(a) = %q, want 4", v)
	}
	if v, ok := c2.Get("z"); !ok || v != "9" {
		t.Errorf("after Set, Get(z) = %q %v, want 9", v, ok)
	}
	if _, ok := c2.Delete("a").Get("a"); ok {
		t.Error("after Delete, a is still set")
	}
}

func TestParsePeers(t *testing.T) {
	peers, err := ParsePeers("n0-broker-n0:40911; n1-10.0.0.2:40912;n2-broker-n2:40913;")
	if err != nil {
		t.Fatal(err)
	}
	want := []Peer{{"n0", "broker-n0", 40911}, {"n1", "10.0.0.2", 40912}, {"n2", "broker-n2", 40913}}
	if len(peers) != len(want) {
		t.Fatalf("got %v, want %v", peers, want)
	}
	for i := range want {
		if peers[i] != want[i] {
			t.Errorf("peer %d = %v, want %v", i, peers[i], want[i])
		}
	}
	for _, bad := range []string{"", "n0", "n0-host", "-host:1", "n0-host:0", "n0-host:x", "n0-a:1;n0-b:2", "n0-a:1;n1-a:1"} {
		if _, err := ParsePeers(bad); err == nil {
			t.Errorf("ParsePeers(%q) succeeded, want an error", bad)
		}
	}
}

func TestShippedParse(t *testing.T) {
	group, err := Shipped()
	if err != nil {
		t.Fatal(err)
	}
	if len(group) != 3 {
		t.Fatalf("got %d confs, want 3", len(group))
	}
	for i, c := range group {
		if c.File != ShippedFiles[i] {
			t.Errorf("conf %d is %s, want %s", i, c.File, ShippedFiles[i])
		}
		fromDisk, err := ParseFile(c.File)
		if err != nil {
			t.Fatal(err)
		}
		if len(fromDisk.Entries) != len(c.Entries) {
			t.Errorf("%s: embedded and on-disk copies differ", c.File)
		}
	}
}
