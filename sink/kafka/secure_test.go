package kafka_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cnstream/cnstream/testenv/need"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/kafka"
	"github.com/cnstream/cnstream/sink/sinktest"
)

// secureBroker is a broker started by testenv/kafka/start --secure, as its
// secure.env describes it.
type secureBroker struct {
	plaintext     string // PLAINTEXT listener (no TLS, no SASL)
	saslSSL       string // SASL over TLS
	saslPlaintext string // SASL without TLS
	ssl           string // TLS without SASL
	caFile        string // PEM of the CA that signed the broker's certificate
	user, pass    string // PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 credentials
}

// startSecure starts a private 1-node broker with TLS and SASL listeners
// (testenv/kafka/start --secure) on free ports; it is stopped when the test
// ends, and by itself if the test binary dies (--watch-pid).
func startSecure(t *testing.T) secureBroker {
	t.Helper()
	out, dir := startPrivate(t, "kafka-secure", 5, "--secure") // PLAINTEXT, CONTROLLER, SASL_SSL, SASL_PLAINTEXT, SSL

	env := map[string]string{}
	f, err := os.Open(filepath.Join(dir, "secure.env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
			env[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	b := secureBroker{
		plaintext: env["KAFKA_BOOTSTRAP"], saslSSL: env["KAFKA_SASL_SSL"], saslPlaintext: env["KAFKA_SASL_PLAINTEXT"],
		ssl: env["KAFKA_SSL"], caFile: env["KAFKA_CA_FILE"], user: env["KAFKA_USERNAME"], pass: env["KAFKA_PASSWORD"],
	}
	if b.plaintext != out || b.saslSSL == "" || b.saslPlaintext == "" || b.ssl == "" ||
		b.caFile == "" || b.user == "" || b.pass == "" {
		t.Fatalf("secure.env incomplete: %v (stdout %q)", env, out)
	}
	return b
}

// TestSecure writes through the TLS and SASL listeners of a real broker and
// reads back with kcat (PLAIN over TLS) and with kafka-go (the case's own
// TLS and SASL); then the misconfigurations, each failing within
// WriteTimeout without showing a password: a wrong password or user
// (permanent), a CA that is not trusted or a certificate for another name
// (permanent), SASL to a listener without it (permanent), no TLS to a TLS
// listener (permanent), TLS to a listener without it (retriable: see the
// case). One broker for all the cases, which run in parallel.
func TestSecure(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a Kafka broker with TLS and SASL listeners")
	}
	need.Tool(t, "kcat", "it is the independent client of this test")
	need.Tool(t, "openssl", "testenv/kafka/start --secure makes the test CA and certificates with it")
	b := startSecure(t)
	withCA := kafka.TLSConfig{Enable: true, CAFile: b.caFile}
	creds := func(mech string) kafka.SASLConfig {
		return kafka.SASLConfig{Mechanism: mech, Username: b.user, Password: b.pass}
	}
	for _, client := range clients {
		t.Run(client, func(t *testing.T) { testSecure(t, b, client, withCA, creds) })
	}
}

func testSecure(t *testing.T, b secureBroker, client string, withCA kafka.TLSConfig, creds func(string) kafka.SASLConfig) {

	for _, c := range []struct {
		name string
		addr string
		tls  kafka.TLSConfig
		sasl kafka.SASLConfig
	}{
		{"PLAIN over TLS", b.saslSSL, withCA, creds("PLAIN")},
		{"SCRAM-SHA-256 over TLS", b.saslSSL, withCA, creds("SCRAM-SHA-256")},
		{"SCRAM-SHA-512 over TLS", b.saslSSL, withCA, creds("SCRAM-SHA-512")},
		{"SCRAM-SHA-256 without TLS", b.saslPlaintext, kafka.TLSConfig{}, creds("SCRAM-SHA-256")},
		{"SCRAM-SHA-512 without TLS", b.saslPlaintext, kafka.TLSConfig{}, creds("SCRAM-SHA-512")},
		{"TLS without SASL", b.ssl, withCA, kafka.SASLConfig{}},
		{"TLS ServerName localhost", b.ssl, kafka.TLSConfig{Enable: true, CAFile: b.caFile, ServerName: "localhost"}, kafka.SASLConfig{}},
		{"TLS InsecureSkipVerify", b.saslSSL, kafka.TLSConfig{Enable: true, InsecureSkipVerify: true}, creds("SCRAM-SHA-512")},
	} {
		t.Run("write "+c.name, func(t *testing.T) {
			t.Parallel()
			topic := uniqueTopic(t)
			secureTopic(t, b.plaintext, topic, 2)
			s, err := kafka.New(kafka.Config{Brokers: []string{c.addr}, Topic: topic, Encoding: "json", TLS: c.tls, SASL: c.sasl, Client: client})
			if err != nil {
				t.Fatal(err)
			}
			want := sinktest.NewGenerator(21).Batch(50)
			if err := s.WriteBatch(t.Context(), want); err != nil {
				t.Fatalf("WriteBatch to %s: %v", c.addr, err)
			}
			if err := s.Close(t.Context()); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if st := s.Stats(); st.Messages != uint64(len(want)) || st.Errors != 0 {
				t.Errorf("Stats = %+v, want %d messages and no error", st, len(want))
			}

			for _, r := range []struct {
				name string
				read func() ([]kafkago.Message, error)
			}{
				{"kcat", func() ([]kafkago.Message, error) { return kcatSecure(t, b, topic) }},
				{"kafka-go", func() ([]kafkago.Message, error) { return readSecure(t, c.addr, c.tls, c.sasl, topic) }},
			} {
				msgs, err := r.read()
				if err != nil {
					t.Fatalf("reading back with %s: %v", r.name, err)
				}
				got, err := decode(msgs, "json", hostName)
				if err != nil {
					t.Fatalf("reading back with %s: %v", r.name, err)
				}
				sinktest.Check(t, want, got, sinktest.CheckOptions{Key: hostName})
			}
		})
	}

	const wrong = "not-the-password-0123"
	for _, c := range []struct {
		name      string
		addr      string
		tls       kafka.TLSConfig
		sasl      kafka.SASLConfig
		check     func(error) bool // the cause the error must hold
		what      string
		retriable bool
		// franzCheck and franzWhat replace check and what with
		// franz-go, when its error differs.
		franzCheck func(error) bool
		franzWhat  string
	}{
		{"wrong password PLAIN", b.saslSSL, withCA,
			kafka.SASLConfig{Mechanism: "PLAIN", Username: b.user, Password: wrong},
			isErr(kafkago.SASLAuthenticationFailed), "SASL_AUTHENTICATION_FAILED", false, nil, ""},
		{"wrong password SCRAM-SHA-256", b.saslPlaintext, kafka.TLSConfig{},
			kafka.SASLConfig{Mechanism: "SCRAM-SHA-256", Username: b.user, Password: wrong},
			isErr(kafkago.SASLAuthenticationFailed), "SASL_AUTHENTICATION_FAILED", false, nil, ""},
		{"wrong password SCRAM-SHA-512", b.saslSSL, withCA,
			kafka.SASLConfig{Mechanism: "SCRAM-SHA-512", Username: b.user, Password: wrong},
			isErr(kafkago.SASLAuthenticationFailed), "SASL_AUTHENTICATION_FAILED", false, nil, ""},
		{"unknown user SCRAM-SHA-512", b.saslSSL, withCA,
			kafka.SASLConfig{Mechanism: "SCRAM-SHA-512", Username: "nobody", Password: wrong},
			isErr(kafkago.SASLAuthenticationFailed), "SASL_AUTHENTICATION_FAILED", false, nil, ""},
		{"TLS with the system roots", b.ssl, kafka.TLSConfig{Enable: true}, kafka.SASLConfig{},
			isAs[x509.UnknownAuthorityError], "x509.UnknownAuthorityError", false, nil, ""},
		{"TLS with another ServerName", b.saslSSL, kafka.TLSConfig{Enable: true, CAFile: b.caFile, ServerName: "kafka.example.com"}, creds("SCRAM-SHA-512"),
			isAs[x509.HostnameError], "x509.HostnameError", false, nil, ""},
		// Kafka reads the ClientHello as the size of a request (0x16030100..,
		// 369 MB, over socket.request.max.bytes) and closes the connection
		// without a byte in answer: the TLS handshake ends in a bare io.EOF,
		// which a broker shutting down or a proxy gives too. So it stays
		// retriable (no tls.RecordHeaderError: that needs a peer that
		// answers), and fails at once, without waiting for WriteTimeout.
		{"TLS to the PLAINTEXT listener", b.plaintext, withCA, kafka.SASLConfig{},
			isErr(io.EOF), "io.EOF", true, nil, ""},
		{"SASL to the PLAINTEXT listener", b.plaintext, kafka.TLSConfig{}, creds("SCRAM-SHA-512"),
			isErr(kafkago.IllegalSASLState), "ILLEGAL_SASL_STATE", false, nil, ""},
		// The listener answers with a TLS alert, which kafka-go recognizes.
		// franz-go reads the alert as a response size and says so.
		{"no TLS to the SSL listener", b.ssl, kafka.TLSConfig{}, kafka.SASLConfig{},
			isErr(io.ErrUnexpectedEOF), "io.ErrUnexpectedEOF (broker appears to be expecting TLS)", false,
			hasText("appear to be a tls alert record"), "franz-go's TLS alert error"},
		{"no TLS to the SASL_SSL listener", b.saslSSL, kafka.TLSConfig{}, creds("SCRAM-SHA-512"),
			isErr(io.ErrUnexpectedEOF), "io.ErrUnexpectedEOF (broker appears to be expecting TLS)", false,
			hasText("appear to be a tls alert record"), "franz-go's TLS alert error"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			const timeout = 5 * time.Second
			s, err := kafka.New(kafka.Config{Brokers: []string{c.addr}, Topic: uniqueTopic(t), TLS: c.tls, SASL: c.sasl, WriteTimeout: timeout, Client: client})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			start := time.Now()
			err = s.WriteBatch(t.Context(), sinktest.NewGenerator(1).Batch(10))
			d := time.Since(start)
			t.Logf("after %v: %v", d.Round(time.Millisecond), err)
			switch {
			case err == nil:
				t.Fatalf("WriteBatch to %s = nil, want an error", c.addr)
			case !c.retriable && !sink.IsPermanent(err):
				t.Errorf("WriteBatch to %s = %v: retriable, want permanent (retrying cannot help)", c.addr, err)
			case c.retriable && sink.IsPermanent(err):
				t.Errorf("WriteBatch to %s = %v: permanent, want retriable", c.addr, err)
			case errors.Is(err, kafka.ErrWriteTimeout):
				t.Errorf("WriteBatch to %s = %v: a timeout, want the failure itself", c.addr, err)
			}
			check, what := c.check, c.what
			if client == kafka.ClientFranzGo && c.franzCheck != nil {
				check, what = c.franzCheck, c.franzWhat
			}
			if !check(err) {
				t.Errorf("WriteBatch to %s = %v, want an error holding %s", c.addr, err, what)
			}
			if d >= timeout {
				t.Errorf("WriteBatch to %s took %v, not within WriteTimeout %v", c.addr, d, timeout)
			}
			if err != nil && (strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), b.pass)) {
				t.Errorf("the error shows a password: %v", err)
			}
		})
	}
}

func isErr(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

func hasText(s string) func(error) bool {
	return func(err error) bool { return err != nil && strings.Contains(err.Error(), s) }
}

func isAs[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}

// secureTopic creates topic with n partitions through the PLAINTEXT listener
// of the secure broker and waits until every partition has a leader.
func secureTopic(t *testing.T, addr, topic string, n int) {
	t.Helper()
	c := &kafkago.Client{Addr: kafkago.TCP(addr), Timeout: 30 * time.Second}
	res, err := c.CreateTopics(t.Context(), &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
		{Topic: topic, NumPartitions: n, ReplicationFactor: 1},
	}})
	if err == nil {
		err = res.Errors[topic]
	}
	if err != nil {
		t.Fatalf("CreateTopics %s: %v", topic, err)
	}
	waitTopic(t, addr, topic, n)
}

// kcatSecure reads every message of topic with kcat (librdkafka), over TLS
// with the test CA and SASL PLAIN: Debian's librdkafka (2.0) cannot do SCRAM
// with Kafka 4 (confluentinc/librdkafka#4895, fixed in 2.6.1).
func kcatSecure(t *testing.T, b secureBroker, topic string) ([]kafkago.Message, error) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kcat", "-C", "-b", b.saslSSL,
		"-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=PLAIN",
		"-X", "sasl.username="+b.user, "-X", "sasl.password="+b.pass, "-X", "ssl.ca.location="+b.caFile,
		"-t", topic, "-o", "beginning", "-e", "-q", "-J")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kcat -C over SASL_SSL: %v: %s", err, stderr.String())
	}
	var msgs []kafkago.Message
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var m struct {
			Partition int      `json:"partition"`
			Offset    int64    `json:"offset"`
			Key       string   `json:"key"`
			Payload   string   `json:"payload"` // the JSON value, as it is
			Headers   []string `json:"headers"` // name, value, name, value...
		}
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("kcat -J output: %w", err)
		}
		km := kafkago.Message{Topic: topic, Partition: m.Partition, Offset: m.Offset, Key: []byte(m.Key), Value: []byte(m.Payload)}
		for i := 0; i+1 < len(m.Headers); i += 2 {
			km.Headers = append(km.Headers, kafkago.Header{Key: m.Headers[i], Value: []byte(m.Headers[i+1])})
		}
		msgs = append(msgs, km)
	}
	return msgs, nil
}

// readSecure reads every message of topic with kafka-go through addr, with
// the TLS and SASL settings the sink had.
func readSecure(t *testing.T, addr string, tc kafka.TLSConfig, sc kafka.SASLConfig, topic string) ([]kafkago.Message, error) {
	d := &kafkago.Dialer{Timeout: 10 * time.Second}
	if tc.Enable {
		d.TLS = &tls.Config{ServerName: tc.ServerName, InsecureSkipVerify: tc.InsecureSkipVerify} //nolint:gosec // as the case asks
		if tc.CAFile != "" {
			pem, err := os.ReadFile(tc.CAFile)
			if err != nil {
				return nil, err
			}
			d.TLS.RootCAs = x509.NewCertPool()
			d.TLS.RootCAs.AppendCertsFromPEM(pem)
		}
	}
	switch sc.Mechanism {
	case "":
	case "PLAIN":
		d.SASLMechanism = plain.Mechanism{Username: sc.Username, Password: sc.Password}
	default:
		algo := scram.SHA256
		if sc.Mechanism == "SCRAM-SHA-512" {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, sc.Username, sc.Password)
		if err != nil {
			return nil, err
		}
		d.SASLMechanism = m
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	ps, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return nil, fmt.Errorf("ReadPartitions %s: %w", topic, err)
	}
	var out []kafkago.Message
	for _, p := range ps {
		leader := net.JoinHostPort(p.Leader.Host, strconv.Itoa(p.Leader.Port))
		lc, err := d.DialLeader(ctx, "tcp", leader, topic, p.ID)
		if err != nil {
			return nil, fmt.Errorf("DialLeader %s/%d at %s: %w", topic, p.ID, leader, err)
		}
		first, last, err := lc.ReadOffsets()
		for next := first; err == nil && next < last; {
			if _, err = lc.Seek(next, kafkago.SeekAbsolute); err != nil {
				break
			}
			_ = lc.SetReadDeadline(time.Now().Add(10 * time.Second))
			batch := lc.ReadBatch(1, 16<<20)
			for {
				m, merr := batch.ReadMessage()
				if merr != nil {
					break
				}
				if m.Offset >= next {
					out = append(out, m)
					next = m.Offset + 1
				}
			}
			err = batch.Close()
		}
		lc.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s/%d: %w", topic, p.ID, err)
		}
	}
	return out, nil
}
