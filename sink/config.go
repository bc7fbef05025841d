package sink

// ConfigError is an invalid field of a sink's Config, as each backend's
// Validate (and New) reports it. Field is spelled as cnstream's YAML
// configuration spells it, starting with the sink type: "file.prefix",
// "kafka.tls.ca_file", "nats.timeout", so that a program that reads a
// configuration file can point at the key (cnstream prefixes it with
// "sinks[i]." and finds its line). Msg says why, and never holds a secret.
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Msg }
