package assemble

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cnstream/cnstream/pipeline"
	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
	"github.com/cnstream/cnstream/transform"
	"github.com/cnstream/cnstream/transform/enrich"
	"github.com/cnstream/cnstream/transform/redact"
)

// Config describes the reader half. Its zero value subscribes to every
// process event, enriched, with the default buffers.
type Config struct {
	Source    Source
	Transform Transform

	// Host is the machine's identity. Default: read from /proc
	// (enrich.ReadHost) after the subscription.
	Host schema.Host
	// SubscribeTimeout bounds the process-events handshake. Default 10 s.
	SubscribeTimeout time.Duration
	// OnLack is told each missing capability and its cost as soon as it
	// is known. Default: none (they are in Input.Lacks either way).
	OnLack func(Lack)
}

// Source describes the connector socket.
type Source struct {
	// NoProcessEvents leaves out the process-events subscription (group 1
	// and LISTEN). Default false: subscribe.
	NoProcessEvents bool
	// Groups are other connector multicast groups (1..26) to join.
	// Default none.
	Groups []uint32
	// UserspaceGroups are groups whose userspace senders may use
	// kernel-owned connector ids. Default none.
	UserspaceGroups []uint32
	// ReadBuffer is the receive buffer in bytes. Default (0)
	// source.DefaultReadBuffer, forced with CAP_NET_ADMIN; negative: the
	// kernel's default.
	ReadBuffer int
	// NoENOBUFS sets NETLINK_NO_ENOBUFS. Default false.
	NoENOBUFS bool
	// Batch is datagrams per recvmmsg call. Default 64.
	Batch int
	// DatagramBytes is the buffer per datagram. Default 512 (a process
	// event is 76 bytes), source.DefaultDatagramBytes with Groups.
	DatagramBytes int
	// KernelFilter is the kinds the kernel is asked to send (Linux 6.6+).
	// Default 0: everything, which keeps ACKs and exact gaps.
	KernelFilter schema.What
}

// Transform describes the transform.
type Transform struct {
	// NoEnrich leaves out the process table (exe, cmdline, cwd, names,
	// container, ancestors). Default false: enrich.
	NoEnrich bool
	// Ancestors is the parent chain depth added to each event. Default 4;
	// negative: none.
	Ancestors int
	// MaxProcesses bounds the process table. Default 65536.
	MaxProcesses int
	// Filter selects the events kept. Default: all.
	Filter transform.Filter
	// Redact replaces secrets in command lines (enrich.Config.Redact).
	// Default nil: the built-in rules (redact.Default()), unless NoRedact.
	Redact *redact.Redactor
	// NoRedact leaves command lines as read. Default false: redact.
	NoRedact bool
	// Records numbers the records of the run (transform.Config.Records):
	// give the one the disk spool was opened with, so that the spool, the
	// transform and the delivery number one sequence. Its host should be
	// Config.Host. Default: a new one for the host.
	Records *schema.Records
	// Resume continues the streams a previous run handed to the disk
	// spool (spool.Spool.Resume; transform.Config.Resume). Default: none.
	Resume []schema.Stream
}

// Capability names, as Lack.Capability spells them.
const (
	CapNetAdmin  = "CAP_NET_ADMIN"
	CapSysPtrace = "CAP_SYS_PTRACE"
)

// A Lack is a capability the process runs without, and what it costs.
type Lack struct {
	// Capability is CapNetAdmin or CapSysPtrace.
	Capability string
	// CapNetAdmin: the receive buffer the kernel granted and the one
	// asked (SO_RCVBUFFORCE was refused; the size is capped by
	// net.core.rmem_max), and why the capability is missing
	// (source.Privileges.NetAdminHint).
	ReadBuffer, ReadBufferRequested int
	Hint                            string
}

// Input is the assembled reader half.
type Input struct {
	Conn        *source.Conn
	Transformer *transform.Transformer
	Table       *enrich.Table // nil without enrichment
	Host        schema.Host
	Subscribed  bool // process events were subscribed to

	Privileges source.Privileges
	Lacks      []Lack

	BatchLen, DgramBytes int // resolved
}

// Open builds the reader half of cfg. See the package doc for the order of
// its steps.
func Open(ctx context.Context, cfg Config) (*Input, error) {
	in := &Input{Privileges: source.ReadPrivileges(), BatchLen: cfg.Source.batch(), DgramBytes: cfg.Source.datagramBytes()}
	lack := func(l Lack) {
		in.Lacks = append(in.Lacks, l)
		if cfg.OnLack != nil {
			cfg.OnLack(l)
		}
	}
	if !cfg.Transform.NoEnrich && in.Privileges.Lacks(source.CapSysPtrace) {
		lack(Lack{Capability: CapSysPtrace})
	}
	conn, err := source.Dial(source.Config{Groups: cfg.Source.Groups, UserspaceGroups: cfg.Source.UserspaceGroups,
		ReadBuffer: cfg.Source.ReadBuffer, NoENOBUFS: cfg.Source.NoENOBUFS})
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Input, error) {
		conn.Close() // err says what failed
		return nil, err
	}
	if st := conn.Stats(); cfg.Source.ReadBuffer >= 0 && !st.ReadBufferForced {
		lack(Lack{Capability: CapNetAdmin, ReadBuffer: st.ReadBuffer, ReadBufferRequested: st.ReadBufferRequested,
			Hint: in.Privileges.NetAdminHint()})
	}
	if !cfg.Source.NoProcessEvents {
		sctx, cancel := context.WithTimeout(ctx, cfg.subscribeTimeout())
		err := conn.Subscribe(sctx, source.SubscribeConfig{Events: cfg.Source.KernelFilter})
		cancel()
		if err != nil {
			return fail(err)
		}
		in.Subscribed = true
	}
	// Subscribed first, seeded second: events of processes started while
	// the table is seeded wait in the socket's queue and are applied after.
	in.Host = cfg.Host
	if in.Host == (schema.Host{}) {
		if in.Host, err = enrich.ReadHost("/proc"); err != nil {
			return fail(err)
		}
	}
	tcfg := transform.Config{Host: in.Host, Filter: cfg.Transform.Filter, Records: cfg.Transform.Records, Resume: cfg.Transform.Resume}
	if tcfg.Clock, err = NewClock(); err != nil {
		return fail(err)
	}
	if !cfg.Transform.NoEnrich {
		rd := cfg.Transform.Redact
		if rd == nil && !cfg.Transform.NoRedact {
			rd = redact.Default()
		} else if cfg.Transform.NoRedact {
			rd = nil
		}
		in.Table, err = enrich.New(enrich.Config{MaxEntries: cfg.Transform.MaxProcesses, AncestorDepth: cfg.Transform.Ancestors, Redact: rd,
			BootID: in.Host.BootID, Clock: tcfg.Clock})
		if err != nil {
			return fail(err)
		}
		if err := in.Table.Seed("/proc"); err != nil {
			return fail(fmt.Errorf("seed the process table from /proc: %w", err))
		}
		tcfg.Enricher = in.Table
	}
	if in.Transformer, err = transform.New(tcfg); err != nil {
		return fail(err)
	}
	in.Conn = conn
	return in, nil
}

// NewClock returns the wall clock for kernel timestamps, refreshed every
// 10 s.
func NewClock() (transform.WallClock, error) {
	c, err := enrich.NewClock(enrich.ClockConfig{})
	if err != nil {
		return nil, fmt.Errorf("read clocks: %w", err)
	}
	return c, nil
}

// ReaderConfig is the reader half's pipeline configuration: Source,
// Transform, BatchLen and DgramBytes; the caller sets the rest.
func (in *Input) ReaderConfig() pipeline.ReaderConfig {
	return pipeline.ReaderConfig{Source: in.Conn, Transform: in.Transformer, BatchLen: in.BatchLen, DgramBytes: in.DgramBytes}
}

// PipelineConfig returns cfg with the reader half's fields set: Source,
// Transform, BatchLen, DgramBytes, and Enrich when there is a process
// table.
func (in *Input) PipelineConfig(cfg pipeline.Config) pipeline.Config {
	cfg.Source, cfg.Transform, cfg.BatchLen, cfg.DgramBytes = in.Conn, in.Transformer, in.BatchLen, in.DgramBytes
	if in.Table != nil {
		cfg.Enrich = in.Table
	}
	return cfg
}

// Ready reports whether the reader hears what it asked for: with process
// events, whether the subscription is acknowledged. For readiness checks.
func (in *Input) Ready(context.Context) error {
	if in.Subscribed && !in.Conn.Stats().Subscription.Active {
		return errors.New("the process-events subscription is not acknowledged")
	}
	return nil
}

// Close closes the socket (sending IGNORE when subscribed).
func (in *Input) Close() error { return in.Conn.Close() }

// ParseKernelFilter returns the kernel event mask of kind names
// (fork,exec,exit,uid,gid,sid,ptrace,comm,coredump,nonzero_exit; case and
// spaces ignored).
func ParseKernelFilter(names []string) (schema.What, error) {
	var mask schema.What
	for _, k := range names {
		k = strings.TrimSpace(strings.ToLower(k))
		w, ok := schema.ParseWhat(k)
		if k == "nonzero_exit" {
			w, ok = schema.ProcEventNonzeroExit, true
		}
		if !ok || w == schema.ProcEventNone {
			return 0, fmt.Errorf("unknown kind %q (known: fork,exec,exit,uid,gid,sid,ptrace,comm,coredump,nonzero_exit)", k)
		}
		mask |= w
	}
	return mask, nil
}

func (s Source) batch() int {
	if s.Batch == 0 {
		return 64
	}
	return s.Batch
}

func (s Source) datagramBytes() int {
	switch {
	case s.DatagramBytes != 0:
		return s.DatagramBytes
	case len(s.Groups) > 0:
		return source.DefaultDatagramBytes
	}
	return 512
}

func (c Config) subscribeTimeout() time.Duration {
	if c.SubscribeTimeout == 0 {
		return 10 * time.Second
	}
	return c.SubscribeTimeout
}
