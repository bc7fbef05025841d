package file

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/sink"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want *sink.ConfigError // nil: valid
	}{
		{"zero", Config{}, nil},
		{"json", Config{Format: "json"}, nil},
		{"jsonl", Config{Format: JSONL}, nil},
		{"msgpack", Config{Format: Msgpack, Compression: None, Sync: SyncInterval, SyncInterval: time.Minute}, nil},
		{"unbounded", Config{MaxSize: -1, MaxAge: -1}, nil},
		{"encoding", Config{Format: "xml"}, &sink.ConfigError{Field: "file.encoding", Msg: `"xml": want json (JSON lines) or msgpack`}},
		{"prefix slash", Config{Prefix: "a/b"}, &sink.ConfigError{Field: "file.prefix", Msg: `"a/b" is not a file name (no '/', '\', NUL, and not . or ..)`}},
		{"prefix backslash", Config{Prefix: `a\b`}, &sink.ConfigError{Field: "file.prefix", Msg: `"a\\b" is not a file name (no '/', '\', NUL, and not . or ..)`}},
		{"prefix dot", Config{Prefix: "."}, &sink.ConfigError{Field: "file.prefix", Msg: `"." is not a file name (no '/', '\', NUL, and not . or ..)`}},
		{"prefix dotdot", Config{Prefix: ".."}, &sink.ConfigError{Field: "file.prefix", Msg: `".." is not a file name (no '/', '\', NUL, and not . or ..)`}},
		{"prefix nul", Config{Prefix: "a\x00"}, &sink.ConfigError{Field: "file.prefix", Msg: `"a\x00" is not a file name (no '/', '\', NUL, and not . or ..)`}},
		{"dir nul", Config{Dir: "a\x00"}, &sink.ConfigError{Field: "file.dir", Msg: `"a\x00" holds a NUL byte`}},
		{"compression", Config{Compression: "gzip"}, &sink.ConfigError{Field: "file.compression", Msg: `"gzip": want zstd or none`}},
		{"sync", Config{Sync: "sometimes"}, &sink.ConfigError{Field: "file.sync", Msg: `"sometimes": want always, interval or never`}},
		{"sync interval", Config{SyncInterval: -time.Second}, &sink.ConfigError{Field: "file.sync_interval", Msg: "-1s: must not be negative"}},
		{"file mode", Config{FileMode: os.ModeDir | 0o640}, &sink.ConfigError{Field: "file.file_mode", Msg: "drw-r----- has bits other than permissions"}},
		{"dir mode", Config{DirMode: os.ModeSetuid | 0o750}, &sink.ConfigError{Field: "file.dir_mode", Msg: "urwxr-x--- has bits other than permissions"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			var got *sink.ConfigError
			if err != nil && (!errors.As(err, &got) || !sink.IsPermanent(err)) {
				t.Fatalf("Validate() = %v (%T), want a permanent *sink.ConfigError", err, err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Validate() (-want +got):\n%s", d)
			}
		})
	}
}
