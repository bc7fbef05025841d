package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/cnstream/cnstream/archive"
)

const keygenSynopsis = `Writes a new Ed25519 key for signing the checkpoints of a tamper-evident archive
(a file sink with archive: true): the signer key to FILE with mode 0600 (name it
in the sink's archive_key), and its public key to FILE.pub, which an auditor
gives to "cnstream verify --key". An existing FILE is never overwritten.
Keys are golang.org/x/mod/sumdb/note keys (C2SP signed-note, Ed25519).`

// keygenCmd writes a signer key and its verifier key.
func keygenCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen --out FILE [--name NAME]", keygenSynopsis, stderr)
	out := fs.String("out", "", "`FILE` of the signer key (required); the public key goes to FILE.pub")
	name := fs.String("name", "", "key `NAME`, shown in every signature (default cnstream-<hostname>)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usageErr("--out FILE is required")
	}
	if *name == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("no --name and the host name is unknown: %w", err)
		}
		*name = "cnstream-" + h
	}
	// note key names: no '+', no white space, not empty.
	if strings.ContainsAny(*name, "+ \t\n\r") || strings.ContainsFunc(*name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return usageErr("--name %q: a key name holds no '+', white space or control characters", *name)
	}
	skey, vkey, err := archive.GenerateKey(*name)
	if err != nil {
		return err
	}
	pub := *out + ".pub"
	if err := writeNew(*out, skey+"\n", 0o600); err != nil {
		return err
	}
	if err := writeNew(pub, vkey+"\n", 0o644); err != nil {
		os.Remove(*out) // made just now: no key without its public half
		return err
	}
	fmt.Fprintf(stdout, "signer key:  %s (mode 0600: keep it on the host, name it in the file sink's archive_key)\npublic key:  %s\n  %s\n", *out, pub, vkey)
	return nil
}

// writeNew creates path (never an existing file or a link), writes text
// with exactly mode (whatever the umask) and fsyncs it.
func writeNew(path, text string, mode fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists: remove it first or choose another --out (a key is never overwritten)", path)
		}
		return err
	}
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.WriteString(text)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
