package natssink

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
)

// TestParsePubAck: the replies a nats-server sends (testdata/puback/*.json
// are v2.15.2's), and odd but valid JSON, decode as encoding/json decodes
// them; the fast path (no encoding/json) takes the server's forms, and
// every seed of testdata/puback.
func TestParsePubAck(t *testing.T) {
	for _, c := range []struct {
		in   string
		want pubAck
		fast bool // read without encoding/json
	}{
		{`{"stream":"S","seq":1}`, pubAck{Stream: "S", Seq: 1}, true},
		{`{"stream":"BENCH_NATS","seq":18446744073709551615,"duplicate":true}`, pubAck{Stream: "BENCH_NATS", Seq: 1<<64 - 1, Duplicate: true}, true},
		{`{"stream":"S","domain":"hub","seq":7,"val":"3","batch":"b","count":2}`, pubAck{Stream: "S", Seq: 7, Domain: "hub"}, true},
		{` { "stream" : "S" , "seq" : 0 , "duplicate" : false } `, pubAck{Stream: "S"}, true},
		{`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"S"}`,
			pubAck{Stream: "S", Error: &ackError{Code: 503, ErrCode: 10077, Description: "maximum messages exceeded"}}, true},
		{`{"error":{"code":400,"description":"a"},"error":{"err_code":1}}`, pubAck{Error: &ackError{Code: 400, ErrCode: 1, Description: "a"}}, true},
		{`{}`, pubAck{}, true},
		// The server's own (testdata/puback).
		{`{"stream":"ZZCAP","seq":1,"duplicate": true}`, pubAck{Stream: "ZZCAP", Seq: 1, Duplicate: true}, true},
		{`{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"},"stream":"ZZCAP","seq":0}`,
			pubAck{Stream: "ZZCAP", Error: &ackError{Code: 400, ErrCode: 10054, Description: "message size exceeds maximum allowed"}}, true},
		// encoding/json's forms.
		{`{"Stream":"S","SEQ":2}`, pubAck{Stream: "S", Seq: 2}, false},
		{`{"stream":"S\u0041","seq":2}`, pubAck{Stream: "SA", Seq: 2}, false},
		{`{"stream":"S","seq":2,"x":[1,{"a":null}],"error":null}`, pubAck{Stream: "S", Seq: 2}, false},
		{`{"stream":"é","seq":2}`, pubAck{Stream: "é", Seq: 2}, false},
		{`null`, pubAck{}, false},
	} {
		var got pubAck
		if err := parsePubAck([]byte(c.in), &got, "S"); err != nil {
			t.Errorf("parsePubAck(%s): %v", c.in, err)
			continue
		}
		if d := cmp.Diff(c.want, got); d != "" {
			t.Errorf("parsePubAck(%s) (-want +got):\n%s", c.in, d)
		}
		var fast pubAck
		if ok := fastPubAck([]byte(c.in), &fast, ""); ok != c.fast {
			t.Errorf("fastPubAck(%s) = %v, want %v", c.in, ok, c.fast)
		}
	}
	seeds, _ := filepath.Glob(filepath.Join("testdata", "puback", "*.json"))
	if len(seeds) == 0 {
		t.Fatal("no testdata/puback/*.json")
	}
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var a pubAck
		if !fastPubAck(b, &a, "") || a.Stream != "ZZCAP" {
			t.Errorf("%s: not read by the fast path: %+v", p, a)
		}
	}
	for _, in := range []string{``, `{`, `{"stream":"S"`, `{"stream":"S",}`, `{"seq":-1}`, `{"seq":1.5}`, `{"seq":18446744073709551616}`,
		`{"error":{"err_code":65536}}`, `{"stream":"S"} x`, `{"duplicate":"true"}`, `{"seq":01}`, `{"seq":2e0}`, `[]`} {
		var got pubAck
		if err := parsePubAck([]byte(in), &got, ""); !errors.Is(err, errInvalidAck) {
			t.Errorf("parsePubAck(%s) = %v, %+v; want an error wrapping errInvalidAck", in, err, got)
		}
	}
}

// TestPubAckResult: what an ack says of its message.
func TestPubAckResult(t *testing.T) {
	if dup, err := (&pubAck{Stream: "S", Seq: 1, Duplicate: true}).result(); !dup || err != nil {
		t.Errorf("duplicate ack: %v, %v", dup, err)
	}
	_, err := (&pubAck{Error: &ackError{Code: 400, ErrCode: uint16(jetstream.JSErrCodeStreamMessageExceedsMaximum), Description: "message size exceeds maximum allowed"}}).result()
	var api *jetstream.APIError
	if !errors.As(err, &api) || api.ErrorCode != jetstream.JSErrCodeStreamMessageExceedsMaximum || api.Code != 400 {
		t.Errorf("error ack: %v, want the *jetstream.APIError", err)
	}
	if _, err := (&pubAck{Seq: 1}).result(); !errors.Is(err, errInvalidAck) {
		t.Errorf("ack without a stream: %v, want errInvalidAck", err)
	}
}

// FuzzParsePubAck: parsePubAck never panics and agrees with
// encoding/json on every input: the same pubAck, or an error exactly
// when json.Unmarshal fails. Seeded with the server's replies
// (testdata/puback).
func FuzzParsePubAck(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "puback", "*.json"))
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{`{"stream":"S","seq":1}`, `{"Stream":"S"}`, `{"error":{"code":1}}`, `{"seq":1e3}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got, want pubAck
		err := parsePubAck(data, &got, "S")
		jerr := json.Unmarshal(data, &want)
		if (err != nil) != (jerr != nil) {
			t.Fatalf("parsePubAck(%q) = %v, json.Unmarshal = %v", data, err, jerr)
		}
		if err != nil {
			if !errors.Is(err, errInvalidAck) {
				t.Fatalf("parsePubAck(%q) = %v, want errInvalidAck", data, err)
			}
			return
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("parsePubAck(%q) (-json +got):\n%s", data, d)
		}
	})
}
