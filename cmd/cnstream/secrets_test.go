//go:build linux

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSecretsNeverShown plants one distinctive secret in every place the
// configuration can hold one (Kafka SASL PLAIN and SCRAM passwords; NATS
// token, password, user information of the URL, credentials and NKey
// files; a TLS private key, the file's content; OTLP headers and the OTLP
// endpoint's user information), written in the file and given through
// ${VAR}, and greps every output for it: validate, run --print-default,
// configuration errors, run failing to connect to NATS, and run's log at
// debug level, as text and as JSON, while its Kafka sinks and OTLP export
// fail against closed ports, with a scrape of /metrics and /readyz.
func TestSecretsNeverShown(t *testing.T) {
	var rnd [6]byte
	rand.Read(rnd[:])
	secret := "S3cr3t-" + hex.EncodeToString(rnd[:])
	t.Setenv("CNSTREAM_TEST_SECRET", secret)
	dir := t.TempDir()
	write := func(name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile, keyFile, keyBody := writeTestCert(t, dir)
	badKey := write("bad-key.pem", "-----BEGIN PRIVATE KEY-----\n"+secret+"\n-----END PRIVATE KEY-----\n")
	creds := write("user.creds", "-----BEGIN NATS USER JWT-----\n"+secret+"\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\nSU"+secret+"\n------END USER NKEY SEED------\n")
	nkey := write("user.nk", "SU"+secret+"\n")
	closed := freeAddr(t) // nothing listens there
	check := func(what, out string) {
		t.Helper()
		for _, s := range []string{secret, keyBody} {
			if strings.Contains(out, s) {
				t.Errorf("%s shows a secret (%s):\n%s", what, s, out)
			}
		}
	}

	kafka := fmt.Sprintf(`  - name: kafka-plain
    type: kafka
    retry: {max_elapsed: 1s}
    kafka:
      brokers: ["%[1]s"]
      tls: {enable: true, ca_file: %[2]s, cert_file: %[2]s, key_file: %[3]s, insecure_skip_verify: true}
      sasl: {mechanism: PLAIN, username: cnstream, password: ${CNSTREAM_TEST_SECRET}}
  - name: kafka-scram
    type: kafka
    retry: {max_elapsed: 1s}
    kafka:
      brokers: %[1]s
      sasl:
        mechanism: SCRAM-SHA-512
        username: cnstream
        password: %[4]s
`, closed, certFile, keyFile, secret)
	telemetry := func(listen, format string) string {
		return fmt.Sprintf(`telemetry:
  listen: %s
  otlp:
    endpoint: http://otlp:${CNSTREAM_TEST_SECRET}@%s
    interval: 100ms
    headers: {authorization: "Bearer ${CNSTREAM_TEST_SECRET}", x-api-key: %s}
log:
  level: debug
  format: %s
`, listen, closed, secret, format)
	}
	head := fmt.Sprintf("source:\n  process_events: false\n  groups: [%d]\ntransform:\n  enrich: false\nsinks:\n", groupRun)
	natsSinks := []string{
		fmt.Sprintf(`  - name: nats
    type: nats
    nats: {url: "nats://%s", token: ${CNSTREAM_TEST_SECRET}, timeout: 500ms}
`, closed),
		fmt.Sprintf(`  - name: nats
    type: nats
    nats: {url: "nats://%s", username: cnstream, password: "%s", timeout: 500ms, tls: {ca_file: %s, cert_file: %s, key_file: %s}}
`, closed, secret, certFile, certFile, keyFile),
		fmt.Sprintf(`  - name: nats
    type: nats
    nats: {url: ["nats://cnstream:${CNSTREAM_TEST_SECRET}@%s", "nats://${CNSTREAM_TEST_SECRET}@%s"], timeout: 500ms}
`, closed, closed),
		fmt.Sprintf(`  - name: nats
    type: nats
    nats: {url: "nats://%s", creds_file: %s, timeout: 500ms}
`, closed, creds),
		fmt.Sprintf(`  - name: nats
    type: nats
    nats: {url: "nats://%s", nkey_file: %s, timeout: 500ms}
`, closed, nkey),
	}

	for i := range natsSinks {
		natsSinks[i] = strings.Replace(natsSinks[i], "name: nats\n", fmt.Sprintf("name: nats%d\n", i), 1)
	}

	// validate: every sink at once.
	all := write("all.yaml", head+kafka+strings.Join(natsSinks[:3], "")+telemetry("off", "json"))
	out, err := exec.Command(cnstreamBin, "validate", all).CombinedOutput()
	if err != nil {
		t.Fatalf("validate: %v: %s", err, out)
	}
	check("validate", string(out))
	if !strings.Contains(string(out), "warning: sinks[0].kafka.tls.insecure_skip_verify is true") {
		t.Errorf("validate does not report insecure_skip_verify:\n%s", out)
	}
	out, err = exec.Command(cnstreamBin, "run", "--print-default").CombinedOutput()
	if err != nil {
		t.Fatalf("run --print-default: %v: %s", err, out)
	}
	check("run --print-default", string(out))

	// Configuration errors next to, or about, the secrets.
	for name, text := range map[string]string{
		"unknown mechanism":              strings.Replace(head+kafka+telemetry("off", "text"), "SCRAM-SHA-512", "SCRAM-SHA-1024", 1),
		"mechanism is the secret":        strings.Replace(head+kafka+telemetry("off", "text"), "SCRAM-SHA-512", secret, 1),
		"key file holds the secret":      strings.Replace(head+kafka+telemetry("off", "text"), keyFile, badKey, 1),
		"nats key file holds the secret": head + strings.Replace(natsSinks[1], keyFile, badKey, 1) + telemetry("off", "text"),
		"required variable":              strings.Replace(head+kafka+telemetry("off", "text"), "password: ${CNSTREAM_TEST_SECRET}", "password: ${CNSTREAM_TEST_UNSET:?set the Kafka password}", 1),
		"secret in an int":               head + kafka + "    queue: {events: ${CNSTREAM_TEST_SECRET}}\n" + telemetry("off", "text"),
		"secret in a size":               head + kafka + "    queue: {bytes: ${CNSTREAM_TEST_SECRET}}\n" + telemetry("off", "text"),
		"secret as a policy":             head + kafka + "    queue: {policy: ${CNSTREAM_TEST_SECRET}}\n" + telemetry("off", "text"),
		"bad otlp endpoint":              head + kafka + strings.Replace(telemetry("off", "text"), "http://otlp:", "otlp://otlp:", 1),
		"yaml syntax":                    head + kafka + "      password: [" + secret + "\n" + telemetry("off", "text"),
		"plaintext PLAIN":                strings.Replace(head+kafka+telemetry("off", "text"), "enable: true, ", "", 1),
	} {
		p := write("bad.yaml", text)
		out, err := exec.Command(cnstreamBin, "validate", p).CombinedOutput()
		if err == nil {
			t.Errorf("%s: validate succeeded:\n%s", name, out)
		}
		check("validate error ("+name+")", string(out))
		out, err = exec.Command(cnstreamBin, "run", "--config", p).CombinedOutput()
		if err == nil {
			t.Errorf("%s: run succeeded:\n%s", name, out)
		}
		check("run's configuration error ("+name+")", string(out))
	}

	// run with a NATS sink it cannot reach fails at start, naming the
	// server, not the credentials.
	for i, ns := range natsSinks {
		p := write(fmt.Sprintf("nats%d.yaml", i), head+ns+telemetry("off", "text"))
		out, err := exec.Command(cnstreamBin, "run", "--config", p).CombinedOutput()
		if err == nil {
			t.Errorf("run with an unreachable NATS server succeeded: %s", out)
		}
		check(fmt.Sprintf("run with an unreachable NATS server (%d)", i), string(out))
	}

	// run at debug level, text and JSON: the Kafka sinks fail every write,
	// OTLP export fails; /metrics and /readyz are read meanwhile.
	for _, format := range []string{"text", "json"} {
		addr := freeAddr(t)
		runCmd, stderr := startRun(t, write("run-"+format+".yaml", head+kafka+telemetry(addr, format)))
		if out, err := exec.Command(cnstreamBin, "send", "--group", fmt.Sprint(groupRun), "--id", testID().String(), "--count", "100", "--quiet").CombinedOutput(); err != nil {
			t.Fatalf("send: %v: %s", err, out)
		}
		warn := map[string]string{"text": "level=WARN", "json": `"level":"WARN"`}[format]
		for deadline := time.Now().Add(20 * time.Second); !strings.Contains(stderr.String(), "telemetry export failed") || !strings.Contains(stderr.String(), "kafka-scram"); {
			if time.Now().After(deadline) {
				t.Fatalf("no failed export and Kafka write logged within 20 s; stderr: %s", stderr.String())
			}
			time.Sleep(50 * time.Millisecond) // polling the log with a deadline
		}
		if !strings.Contains(stderr.String(), warn) || !strings.Contains(stderr.String(), "insecure_skip_verify") {
			t.Errorf("%s log: no warning about insecure_skip_verify:\n%s", format, stderr.String())
		}
		for _, path := range []string{"/metrics", "/readyz", "/healthz"} {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			check(path, string(body))
			if path == "/readyz" && !strings.Contains(string(body), "kafka-plain") {
				t.Errorf("/readyz: %s", body)
			}
		}
		if err := runCmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		_ = runCmd.Wait() // undelivered events make it fail: expected
		check("run's "+format+" log", stderr.String())
	}
}

// writeTestCert writes a self-signed certificate and its ECDSA key (PEM)
// into dir, and returns their paths and a line of the key's base64 body.
func writeTestCert(t *testing.T, dir string) (certFile, keyFile, keyBody string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, strings.Split(string(keyPEM), "\n")[1]
}
