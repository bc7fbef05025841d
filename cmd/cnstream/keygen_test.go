package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/cnstream/cnstream/archive"
)

// TestKeygen: the signer key is written 0600 and its public key beside
// it; they sign and verify a checkpoint; an existing key is never
// overwritten; a bad name is a usage error.
func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "archive.key")
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"keygen", "--out", key, "--name", "audit-test"}, &out, &errb); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, errb.String())
	}
	st, err := os.Stat(key)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("signer key: %v, mode %v, want 0600", err, st.Mode().Perm())
	}
	skey, _ := os.ReadFile(key)
	vkey, _ := os.ReadFile(key + ".pub")
	if !strings.HasPrefix(string(skey), "PRIVATE+KEY+audit-test+") || !strings.HasPrefix(string(vkey), "audit-test+") {
		t.Fatalf("keys: %q / %q", skey[:20], vkey)
	}
	if !strings.Contains(out.String(), strings.TrimSpace(string(vkey))) || strings.Contains(out.String(), "PRIVATE") {
		t.Fatalf("output shows the public key only: %s", out.String())
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := loadVerifier(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	text, err := archive.NewCheckpoint("cnstream/test", []archive.FileEntry{{Name: "f", Records: 1, Root: archive.HashRecords([][]byte{[]byte("x")})}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := archive.Sign(text, signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := archive.OpenCheckpoint(msg, verifier); err != nil {
		t.Fatalf("the public key does not verify the signer's checkpoint: %v", err)
	}
	if _, err := loadVerifier(key); err == nil || !strings.Contains(err.Error(), "private") {
		t.Fatalf("verify given the signer key: %v", err)
	}

	// Never overwritten.
	errb.Reset()
	if code := run(t.Context(), []string{"keygen", "--out", key}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "exists") {
		t.Fatalf("second keygen: exit %d: %s", code, errb.String())
	}
	if again, _ := os.ReadFile(key); !bytes.Equal(again, skey) {
		t.Fatal("the key was overwritten")
	}
	errb.Reset()
	if code := run(t.Context(), []string{"keygen", "--out", filepath.Join(dir, "k2"), "--name", "a+b"}, &out, &errb); code != 2 {
		t.Fatalf("bad name: exit %d: %s", code, errb.String())
	}
	if code := run(t.Context(), []string{"keygen"}, &out, &errb); code != 2 {
		t.Fatalf("no --out: exit %d", code)
	}
}
