package natssink

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/cnstream/cnstream/sink"
)

// Encoding is how an event is written in a message's payload.
type Encoding string

const (
	// Msgpack is schema.AppendMsgpack; Content-Type "application/msgpack".
	Msgpack Encoding = "msgpack"
	// JSON is schema.AppendJSON; Content-Type "application/json".
	JSON Encoding = "json"
)

// Config configures a Sink. Only URL is required: the zero value of every
// other field selects its default (core NATS, subjects
// "cnstream.{host}.{kind}", MessagePack, reconnecting forever every second,
// 10 s to acknowledge a batch).
type Config struct {
	// URL is the server to connect to, "nats://host:port", or a
	// comma-separated list of servers of one cluster. Credentials in a URL
	// ("nats://user:pass@host") work but never appear in errors. Required.
	URL string

	// Subject is the template of every message's subject. Placeholders:
	// {host} (the host name, with '.', whitespace, '*' and '>' replaced by
	// '_', since '.' separates tokens), {kind} (schema.Kind's name: fork,
	// exec, ...), {boot_id}. A missing host or boot id renders as
	// "unknown". Default "cnstream.{host}.{kind}".
	Subject string

	// JetStream publishes to JetStream: every message is acknowledged by the
	// stream that stores it and deduplicated on its Nats-Msg-Id (the event
	// id). Default false: core NATS, acknowledged only as received by the
	// server (see the package documentation).
	JetStream bool

	// Stream, with JetStream, is the name of a stream New creates when it
	// does not exist (file storage, a 2-minute duplicate window, subjects
	// from the wildcard form of Subject: "cnstream.{host}.{kind}" gives
	// "cnstream.>"). An existing stream is used as it is. Default "": New
	// creates nothing, the operator owns the streams. Invalid without
	// JetStream.
	Stream string

	// MaxPending, with JetStream, bounds the publishes awaiting their ack
	// (as jetstream.WithPublishAsyncMaxPending does): a larger batch is published
	// in windows of MaxPending. Default 4096.
	MaxPending int

	// Encoding is Msgpack or JSON. Default Msgpack.
	Encoding Encoding

	// EventsPerMessage, when above 1, puts up to that many events of a
	// batch in one message: those that share a subject, in their order
	// (see the package documentation, "Several events per message": the
	// Content-Type, the Nats-Msg-Id and the consumers' side change). A
	// JetStream server spends about as much CPU on a message whatever its
	// size (some 10 us here), so this is the lever when the server's CPU
	// bounds the rate. At most 65535. Default 0 or 1: one event per
	// message.
	EventsPerMessage int

	// CredsFile is a credentials file (JWT and NKey seed,
	// nats.UserCredentials). Default: none.
	CredsFile string

	// NKeyFile is a file holding an NKey seed (nats.NkeyOptionFromSeed).
	// Default: none. Not with CredsFile.
	NKeyFile string

	// Token is an authentication token. Default: none. Not with User.
	Token string

	// User and Password authenticate with a user name and password
	// (cnstream's YAML: username and password, as for the Kafka sink's
	// SASL). Default: none. Password needs User.
	User     string
	Password string

	// TLS configures TLS. Default: TLS only when the URL says so
	// ("tls://") or the server requires it, verified against the system's
	// roots.
	TLS TLS

	// ReconnectWait is the pause between reconnect attempts to a server.
	// Default 1 second.
	ReconnectWait time.Duration

	// MaxReconnects is how many reconnect attempts are made before the
	// connection is closed for good (WriteBatch then fails with a
	// permanent error). Default 0 and any negative value: reconnect
	// forever.
	MaxReconnects int

	// Timeout bounds the wait for a batch's acknowledgement (the flush's
	// PONG under core NATS, every PubAck under JetStream), and New's
	// connection and stream set-up. Default 10 seconds.
	Timeout time.Duration
}

// TLS configures the connection's TLS. The zero value uses the system's
// roots and no client certificate.
type TLS struct {
	// Enable turns TLS on, verified against the system's roots when CAFile
	// is empty. Setting any other field, or a "tls://" URL, turns it on
	// too. Default false.
	Enable bool
	// CAFile is a PEM file of the roots that verify the server. Default:
	// the system's roots.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// servers that verify clients. Default: none. Both or neither.
	CertFile string
	KeyFile  string
	// InsecureSkipVerify accepts any server certificate. For tests only.
	InsecureSkipVerify bool
}

func (t TLS) enabled() bool {
	return t.Enable || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.InsecureSkipVerify
}

const (
	defaultSubject       = "cnstream.{host}.{kind}"
	defaultMaxPending    = 4096
	maxEventsPerMessage  = 1<<16 - 1
	defaultReconnectWait = time.Second
	defaultTimeout       = 10 * time.Second
	// duplicateWindow of the streams New creates.
	duplicateWindow = 2 * time.Minute
)

// resolved is a Config with defaults applied, and what New derives from it.
type resolved struct {
	Config
	urls      []string // the servers, as given
	subject   *template
	tlsConfig *tls.Config // nil: nats.go's default
}

// resolve returns c with defaults applied, or a permanent *sink.ConfigError
// naming the first bad field as cnstream's YAML spells it ("nats.url").
// Errors never hold a secret (Password, Token, a URL's user information).
func (c Config) resolve() (*resolved, error) {
	secrets := c.secrets()
	bad := func(field, format string, args ...any) (*resolved, error) {
		msg := fmt.Sprintf(format, args...)
		for _, s := range secrets {
			if len(s) >= 3 { // shorter, it would mangle the message and hide nothing
				msg = strings.ReplaceAll(msg, s, "REDACTED")
			}
		}
		return nil, sink.Permanent(&sink.ConfigError{Field: "nats." + field, Msg: msg})
	}
	r := &resolved{Config: c}
	if strings.TrimSpace(c.URL) == "" {
		return bad("url", "required: the server URL, nats://host:port")
	}
	for i, u := range strings.Split(c.URL, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			return bad("url", "server %d of the list is empty", i+1)
		}
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		p, err := url.Parse(u)
		if err != nil || p.Host == "" {
			return bad("url", "server %d (%s) is not a URL like nats://host:port", i+1, redactURL(u))
		}
		switch p.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return bad("url", "server %d (%s): scheme %q: want nats, tls, ws or wss", i+1, redactURL(u), p.Scheme)
		}
		r.urls = append(r.urls, u)
	}

	if c.Subject == "" {
		r.Subject = defaultSubject
	}
	t, err := parseTemplate(r.Subject)
	if err != nil {
		return bad("subject", "%v", err)
	}
	r.subject = t

	if c.Stream != "" {
		if !c.JetStream {
			return bad("stream", "set without jetstream: true (a stream stores JetStream publishes only)")
		}
		if strings.ContainsAny(c.Stream, " \t\r\n.*>/\\") {
			return bad("stream", "%q is not a stream name (no whitespace, '.', '*', '>', '/' or '\\')", c.Stream)
		}
	}
	switch {
	case c.MaxPending == 0:
		r.MaxPending = defaultMaxPending
	case c.MaxPending < 0:
		return bad("max_pending", "%d: must not be negative", c.MaxPending)
	}
	if c.EventsPerMessage < 0 || c.EventsPerMessage > maxEventsPerMessage {
		return bad("events_per_message", "%d: want 0 to %d", c.EventsPerMessage, maxEventsPerMessage)
	}
	switch c.Encoding {
	case "":
		r.Encoding = Msgpack
	case Msgpack, JSON:
	default:
		return bad("encoding", "%q: want %s or %s", c.Encoding, Msgpack, JSON)
	}

	if c.CredsFile != "" && c.NKeyFile != "" {
		return bad("nkey_file", "set with creds_file: choose one")
	}
	if c.Token != "" && c.User != "" {
		return bad("token", "set with username: choose one")
	}
	if c.Password != "" && c.User == "" {
		return bad("password", "set without username")
	}
	for _, f := range []struct{ field, path string }{
		{"creds_file", c.CredsFile}, {"nkey_file", c.NKeyFile},
		{"tls.ca_file", c.TLS.CAFile}, {"tls.cert_file", c.TLS.CertFile}, {"tls.key_file", c.TLS.KeyFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return bad(f.field, "%v", err)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return bad("tls.key_file", "tls.cert_file and tls.key_file go together")
	}
	if c.TLS.enabled() {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.TLS.InsecureSkipVerify} //nolint:gosec // the operator's choice, documented
		if c.TLS.CAFile != "" {
			pem, err := os.ReadFile(c.TLS.CAFile)
			if err != nil {
				return bad("tls.ca_file", "%v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return bad("tls.ca_file", "%s holds no PEM certificate", c.TLS.CAFile)
			}
			tc.RootCAs = pool
		}
		if c.TLS.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
			if err != nil {
				// The message names the files, never the key's bytes.
				return bad("tls.cert_file", "%v", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		r.tlsConfig = tc
	}

	switch {
	case c.ReconnectWait == 0:
		r.ReconnectWait = defaultReconnectWait
	case c.ReconnectWait < 0:
		return bad("reconnect_wait", "%v: must not be negative", c.ReconnectWait)
	}
	if c.MaxReconnects <= 0 {
		r.MaxReconnects = -1
	}
	switch {
	case c.Timeout == 0:
		r.Timeout = defaultTimeout
	case c.Timeout < 0:
		return bad("timeout", "%v: must not be negative", c.Timeout)
	}
	return r, nil
}

// secrets returns the strings an error must not show.
func (c Config) secrets() []string {
	var s []string
	for _, v := range []string{c.Password, c.Token} {
		if v != "" {
			s = append(s, v)
		}
	}
	for _, u := range strings.Split(c.URL, ",") {
		u = strings.TrimSpace(u)
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		if p, err := url.Parse(u); err == nil && p.User != nil {
			if pw, ok := p.User.Password(); ok && pw != "" {
				s = append(s, pw)
			} else if n := p.User.Username(); n != "" {
				s = append(s, n) // a token in the user position
			}
		}
	}
	return s
}

// redactURL returns u without its user information.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = "REDACTED@" + rest[i+1:]
	}
	return scheme + "://" + rest
}

// redactedError hides secrets in the message of the error it wraps, which
// stays reachable with errors.Is and errors.As.
type redactedError struct {
	err     error
	secrets []string
}

func (e *redactedError) Error() string {
	msg := e.err.Error()
	for _, s := range e.secrets {
		msg = strings.ReplaceAll(msg, s, "REDACTED")
	}
	return msg
}

func (e *redactedError) Unwrap() error { return e.err }

func redact(err error, secrets []string) error {
	if err == nil || len(secrets) == 0 {
		return err
	}
	var ce *sink.ConfigError
	if errors.As(err, &ce) {
		return err // resolve's errors: their messages are redacted already
	}
	msg := err.Error()
	for _, s := range secrets {
		if strings.Contains(msg, s) {
			return &redactedError{err: err, secrets: secrets}
		}
	}
	return err
}

// Validate checks c as New does, without connecting: cnstream validate uses
// it. Errors are permanent, wrap a *sink.ConfigError naming the field as
// cnstream's YAML spells it ("nats.tls.ca_file"), and hold no secret.
func (c Config) Validate() error {
	if _, err := c.resolve(); err != nil {
		return redact(err, c.secrets())
	}
	return nil
}
