package archive

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// ParseSignerKey parses a signer key in the encoding of note.NewSigner
// ("PRIVATE+KEY+<name>+<hash>+<base64>", Ed25519) and returns its signer,
// the matching verifier and the verifier key text (note.NewVerifier's
// encoding), so that a writer holding only the signer key can check the
// checkpoints it signed before. Errors say what is wrong without quoting
// the key.
func ParseSignerKey(skey string) (note.Signer, note.Verifier, string, error) {
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, nil, "", fmt.Errorf("archive: not a signer key (want PRIVATE+KEY+<name>+<hash>+<base64 Ed25519 seed>): %w", err)
	}
	// NewSigner accepted it: five '+'-separated fields, the last the
	// base64 of the algorithm byte (1: Ed25519) and the 32-byte seed.
	fields := strings.SplitN(skey, "+", 5)
	raw, err := base64.StdEncoding.DecodeString(fields[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize {
		return nil, nil, "", fmt.Errorf("archive: not an Ed25519 signer key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey := fmt.Sprintf("%s+%08x+%s", signer.Name(), signer.KeyHash(),
		base64.StdEncoding.EncodeToString(append([]byte{raw[0]}, pub...)))
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, nil, "", fmt.Errorf("archive: the signer key's verifier key: %w", err)
	}
	return signer, verifier, vkey, nil
}

// ValidOrigin checks that origin can be a checkpoint's origin line: a
// non-empty line of UTF-8 text without control characters and without
// leading or trailing white space. Errors wrap ErrMalformed.
func ValidOrigin(origin string) error {
	if err := validText(origin); err != nil {
		return fmt.Errorf("archive: origin %q: want a line of UTF-8 text without control characters or leading and trailing spaces: %w", origin, err)
	}
	return nil
}
