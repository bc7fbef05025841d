package archive

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// TestParseSignerKey: the verifier derived from a signer key is the one
// GenerateKey made with it, and opens what the signer signed; malformed
// keys fail without quoting the key.
func TestParseSignerKey(t *testing.T) {
	skey, vkey, err := GenerateKey("host-a")
	if err != nil {
		t.Fatal(err)
	}
	signer, verifier, gotV, err := ParseSignerKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	if gotV != vkey {
		t.Errorf("verifier key %q, GenerateKey made %q", gotV, vkey)
	}
	text, err := NewCheckpoint("o", []FileEntry{{Name: "a", Records: 1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := Sign(text, signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenCheckpoint(msg, verifier); err != nil {
		t.Errorf("derived verifier: %v", err)
	}
	other, _, _ := GenerateKey("host-a")
	_, otherV, _, err := ParseSignerKey(other)
	if err != nil {
		t.Fatal(err)
	}
	var unverified *note.UnverifiedNoteError
	if _, err := OpenCheckpoint(msg, otherV); !errors.As(err, &unverified) {
		t.Errorf("another key's verifier opened it: %v", err)
	}
	for _, bad := range []string{"", vkey, skey[:len(skey)-4], strings.Replace(skey, "host-a", "host-b", 1)} {
		_, _, _, err := ParseSignerKey(bad)
		if err == nil {
			t.Errorf("ParseSignerKey(%q) accepted", bad)
			continue
		}
		if fields := strings.Split(skey, "+"); strings.Contains(err.Error(), fields[len(fields)-1]) {
			t.Errorf("error quotes the key: %v", err)
		}
	}
}

func TestValidOrigin(t *testing.T) {
	for _, o := range []string{"cnstream/host-a", "a b"} {
		if err := ValidOrigin(o); err != nil {
			t.Errorf("ValidOrigin(%q) = %v", o, err)
		}
	}
	for _, o := range []string{"", " a", "a\n", "a\x00b", "\xff"} {
		if err := ValidOrigin(o); !errors.Is(err, ErrMalformed) {
			t.Errorf("ValidOrigin(%q) = %v, want ErrMalformed", o, err)
		}
	}
}
