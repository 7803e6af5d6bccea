package remoting

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, codec := range []byte{CodecJSON, CodecRocketMQ} {
		cmd := &Command{
			Code: SendMessage, Language: "GO", Version: 317, Opaque: 42, Flag: FlagResponse,
			Remark: "ok \"quoted\" \n é",
			Ext:    map[string]string{"properties": "UNIQ_KEY\x01ABC\x02TAGS\x01t\x02", "queueId": "3"},
			Body:   []byte("hello"),
			Codec:  codec,
		}
		got, err := ReadCommand(bytes.NewReader(Encode(cmd)), 0)
		if err != nil {
			t.Fatalf("codec %d: decode: %v", codec, err)
		}
		if !reflect.DeepEqual(got, cmd) {
			t.Errorf("codec %d: round trip\n got %+v\nwant %+v", codec, got, cmd)
		}
	}
}

func TestDecodeGoClientHeader(t *testing.T) {
	// The first request a Go consumer makes, as captured in the spec (§1.2).
	header := `{"code":105,"language":"GO","version":317,"opaque":1,"flag":0,"remark":"","extFields":{"topic":"orders"}}`
	frame := make([]byte, 8, 8+len(header))
	binary.BigEndian.PutUint32(frame, uint32(4+len(header)))
	binary.BigEndian.PutUint32(frame[4:], uint32(len(header)))
	frame = append(frame, header...)
	if !bytes.Equal(frame[:8], []byte{0, 0, 0, 0x6d, 0, 0, 0, 0x69}) {
		t.Fatalf("frame prefix % x, want 00 00 00 6d 00 00 00 69", frame[:8])
	}
	cmd, err := ReadCommand(bytes.NewReader(frame), 0)
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Code != 105 || cmd.Opaque != 1 || cmd.Ext["topic"] != "orders" || cmd.IsResponse() || cmd.Language != "GO" {
		t.Errorf("decoded %+v", cmd)
	}
}

func TestJSONHeaderIsStandardJSONWithStringExt(t *testing.T) {
	cmd := NewResponse(&Command{Opaque: 7}, Success, "")
	cmd.Ext["queueOffset"] = "5"
	cmd.Ext["props"] = "a\x01b\x02\xff"
	f := Encode(cmd)
	hl := binary.BigEndian.Uint32(f[4:]) & 0xFFFFFF
	var h map[string]any
	if err := json.Unmarshal(f[8:8+hl], &h); err != nil {
		t.Fatalf("header is not JSON: %v: %s", err, f[8:8+hl])
	}
	ext := h["extFields"].(map[string]any)
	if ext["queueOffset"] != "5" || ext["props"] != "a\x01b\x02\ufffd" {
		t.Errorf("ext fields %v", ext)
	}
	if h["flag"].(float64) != FlagResponse || h["opaque"].(float64) != 7 {
		t.Errorf("flag/opaque %v/%v", h["flag"], h["opaque"])
	}
	if bytes.ContainsAny(f[8:8+hl], " \n") {
		t.Errorf("header is not compact: %s", f[8:8+hl])
	}
}

func TestReadCommandLimits(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"huge length", []byte{0x7f, 0xff, 0xff, 0xff}, ErrFrameTooLarge},
		{"negative length", []byte{0xff, 0xff, 0xff, 0xff}, ErrMalformed},
		{"too short", []byte{0, 0, 0, 2, 0, 0}, ErrMalformed},
		{"truncated", []byte{0, 0, 0, 100, 0, 0}, io.ErrUnexpectedEOF},
		{"empty", nil, io.EOF},
		{"bad codec", []byte{0, 0, 0, 4, 9, 0, 0, 0}, ErrMalformed},
		{"not json", append([]byte{0, 0, 0, 7, 0, 0, 0, 3}, "abc"...), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadCommand(bytes.NewReader(tt.input), 1024)
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(NewRequest(GetRouteInfoByTopic, map[string]string{"topic": "orders"}, nil))[4:])
	bin := NewRequest(SendMessage, map[string]string{"topic": "t", "properties": "a\x01b\x02"}, []byte("body"))
	bin.Codec = CodecRocketMQ
	f.Add(Encode(bin)[4:])
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{1, 0, 0, 13, 0, 105, 9, 1, 0x3d, 0, 0, 0, 1, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Fuzz(func(t *testing.T, frame []byte) {
		cmd, err := Decode(frame)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode and decode to the same command.
		again, err := ReadCommand(bytes.NewReader(Encode(cmd)), len(frame)*8+1024)
		if err != nil {
			t.Fatalf("re-decode of %+v: %v", cmd, err)
		}
		wantCode := cmd.Code
		if cmd.Codec == CodecRocketMQ {
			wantCode = int(int16(cmd.Code))
		}
		if again.Code != wantCode {
			t.Fatalf("code %d became %d", cmd.Code, again.Code)
		}
		if again.Opaque != cmd.Opaque || again.Flag != cmd.Flag || len(again.Ext) != len(cmd.Ext) || !bytes.Equal(again.Body, cmd.Body) {
			t.Fatalf("round trip changed the command:\n got %+v\nwant %+v", again, cmd)
		}
	})
}

// FuzzJSONHeader checks the reflection-free header parser against
// encoding/json: whenever the fast path accepts input, encoding/json must
// accept it too and agree on every field.
func FuzzJSONHeader(f *testing.F) {
	f.Add([]byte(`{"code":105,"language":"GO","version":317,"opaque":1,"flag":0,"remark":"","extFields":{"topic":"orders"}}`))
	f.Add([]byte(`{"code":10,"extFields":{"properties":"UNIQ_KEY\u0001AB\u0002","k":"\ud83d\ude00 \"q\" \\ \/ é"},"serializeTypeCurrentRPC":"JSON"}`))
	f.Add([]byte(` { "remark" : null , "extFields" : null , "language" : "JAVA" } `))
	f.Add([]byte(`{"opaque":-2147483648,"flag":2147483647,"code":-1}`))
	f.Add([]byte(`{"opaque":2147483648}`))
	f.Add([]byte(`{"code":1.5}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, fastLang, ok := parseJSONHeaderFast(b)
		if !ok {
			return
		}
		std, stdLang, err := decodeJSONHeaderStd(b)
		if err != nil {
			t.Fatalf("fast path accepted %q, encoding/json says %v", b, err)
		}
		fast.Language, std.Language = nil, nil
		if len(fast.ExtFields) == 0 {
			fast.ExtFields = nil
		}
		if len(std.ExtFields) == 0 {
			std.ExtFields = nil
		}
		if !reflect.DeepEqual(fast, std) || fastLang != stdLang {
			t.Fatalf("input %q\nfast %+v %q\n std %+v %q", b, fast, fastLang, std, stdLang)
		}
	})
}

func BenchmarkDecodeSendHeader(b *testing.B) {
	req := NewRequest(SendMessage, map[string]string{
		"producerGroup": "pg", "topic": "orders", "queueId": "1", "sysFlag": "0", "bornTimestamp": "1795253638763",
		"flag": "0", "properties": "UNIQ_KEY\x01C0000202000000000000000000000001\x02TAGS\x01commit\x02", "reconsumeTimes": "0",
		"unitMode": "false", "maxReconsumeTimes": "0", "batch": "false", "defaultTopic": "TBW102", "defaultTopicQueueNums": "4",
	}, make([]byte, 1024))
	frame := Encode(req)[4:]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(frame); err != nil {
			b.Fatal(err)
		}
	}
}
