package stdout

import (
	"errors"
	"io"
	"testing"

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
		{"set", Config{Writer: io.Discard, BufferSize: 1}, nil},
		{"negative buffer", Config{BufferSize: -1}, &sink.ConfigError{Field: "stdout.buffer_size", Msg: "-1: must not be negative"}},
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
