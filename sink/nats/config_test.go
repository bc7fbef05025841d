package natssink

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/sink"
)

// TestValidate: Validate needs no server; its errors are permanent
// *sink.ConfigErrors naming the field as cnstream's YAML spells it, and
// never show a password, a token or a URL's user information.
func TestValidate(t *testing.T) {
	const url, secret = "nats://127.0.0.1:4222", "s3cr3t-Zq9"
	for _, tc := range []struct {
		name string
		cfg  Config
		want *sink.ConfigError // nil: valid
	}{
		{"url only", Config{URL: url}, nil},
		{"cluster", Config{URL: "nats://a:4222, tls://b:4222"}, nil},
		{"all set", Config{URL: url, Subject: "cn.{host}.{kind}", JetStream: true, Stream: "CN", MaxPending: 8, Encoding: JSON,
			User: "u", Password: secret, ReconnectWait: 1, MaxReconnects: 3, Timeout: 1}, nil},
		{"tls enable", Config{URL: url, TLS: TLS{Enable: true}}, nil},
		{"no url", Config{}, &sink.ConfigError{Field: "nats.url", Msg: "required: the server URL, nats://host:port"}},
		{"empty server", Config{URL: "nats://a:1,,nats://b:2"}, &sink.ConfigError{Field: "nats.url", Msg: "server 2 of the list is empty"}},
		{"scheme", Config{URL: "http://u:" + secret + "@host:4222"}, &sink.ConfigError{Field: "nats.url", Msg: `server 1 (http://REDACTED@host:4222): scheme "http": want nats, tls, ws or wss`}},
		{"subject", Config{URL: url, Subject: "a.{hostname}"}, &sink.ConfigError{Field: "nats.subject"}},
		{"stream without jetstream", Config{URL: url, Stream: "S"}, &sink.ConfigError{Field: "nats.stream", Msg: "set without jetstream: true (a stream stores JetStream publishes only)"}},
		{"max pending", Config{URL: url, MaxPending: -1}, &sink.ConfigError{Field: "nats.max_pending", Msg: "-1: must not be negative"}},
		{"encoding", Config{URL: url, Encoding: "jsonl"}, &sink.ConfigError{Field: "nats.encoding", Msg: `"jsonl": want msgpack or json`}},
		{"creds and nkey", Config{URL: url, CredsFile: "/dev/null", NKeyFile: "/dev/null"}, &sink.ConfigError{Field: "nats.nkey_file", Msg: "set with creds_file: choose one"}},
		{"token and user", Config{URL: url, Token: secret, User: "u"}, &sink.ConfigError{Field: "nats.token", Msg: "set with username: choose one"}},
		{"password without user", Config{URL: url, Password: secret}, &sink.ConfigError{Field: "nats.password", Msg: "set without username"}},
		{"creds file", Config{URL: url, CredsFile: "/nonexistent/creds"}, &sink.ConfigError{Field: "nats.creds_file", Msg: "stat /nonexistent/creds: no such file or directory"}},
		{"tls ca", Config{URL: url, TLS: TLS{CAFile: "/dev/null"}}, &sink.ConfigError{Field: "nats.tls.ca_file", Msg: "/dev/null holds no PEM certificate"}},
		{"tls cert without key", Config{URL: url, TLS: TLS{CertFile: "/dev/null"}}, &sink.ConfigError{Field: "nats.tls.key_file", Msg: "tls.cert_file and tls.key_file go together"}},
		{"reconnect wait", Config{URL: url, ReconnectWait: -1}, &sink.ConfigError{Field: "nats.reconnect_wait", Msg: "-1ns: must not be negative"}},
		{"timeout", Config{URL: url, Timeout: -1}, &sink.ConfigError{Field: "nats.timeout", Msg: "-1ns: must not be negative"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			var got *sink.ConfigError
			if err != nil {
				if !errors.As(err, &got) || !sink.IsPermanent(err) {
					t.Fatalf("Validate() = %v (%T), want a permanent *sink.ConfigError", err, err)
				}
				if strings.Contains(err.Error(), secret) || strings.Contains(got.Msg, secret) {
					t.Errorf("Validate() = %v: shows the secret", err)
				}
			}
			if tc.want != nil && tc.want.Msg == "" && got != nil {
				got = &sink.ConfigError{Field: got.Field} // the template's own message
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Validate() (-want +got):\n%s", d)
			}
		})
	}
}
