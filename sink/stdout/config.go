package stdout

import (
	"fmt"

	"github.com/cnstream/cnstream/sink"
)

// Validate checks c as New does: cnstream validate uses it. Errors are
// permanent and wrap a *sink.ConfigError naming the field as cnstream's
// YAML would spell it ("stdout.buffer_size").
func (c Config) Validate() error {
	if c.BufferSize < 0 {
		return sink.Permanent(&sink.ConfigError{Field: "stdout.buffer_size", Msg: fmt.Sprintf("%d: must not be negative", c.BufferSize)})
	}
	return nil
}
