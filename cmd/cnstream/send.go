package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
	"github.com/cnstream/cnstream/transform"
	"github.com/cnstream/cnstream/transform/enrich"
)

const sendSynopsis = `send --id IDX:VAL [flags]

Sends cn_msg messages the way connector users do: to the kernel (default), or
as a multicast to group G with --group G (the kernel receives it too). Each
message gets the next sequence number and a random ack.

A LISTEN sent to the process-events connector (id 1:1) is followed, before
exit, by an IGNORE from the same socket, so the kernel's listener count stays
balanced.

With --wait-reply D it waits up to D for the reply to each message, by the
connector's reply rule (same id and seq, ack + 1; the process-events
connector keeps only the ack rule), and prints it. For example:

  cnstream send --id 1:1 --hex 0100000000000000 --wait-reply 1s

sends PROC_CN_MCAST_LISTEN and prints the kernel's ACK.

As a load generator: --count N --rate R --payload-size B; --skip-every K
leaves out one sequence number after every K messages, to create gaps.
Multicast needs root or CAP_NET_ADMIN.`

type sendOptions struct {
	id        schema.CbID
	group     uint32
	payload   []byte
	size      int
	count     uint64
	rate      float64
	skipEvery uint64
	seq       uint32
	ack       *uint32
	waitReply time.Duration
	json      bool
	quiet     bool
}

func parseSend(args []string, stderr io.Writer) (*sendOptions, error) {
	fs := newFlagSet("send --id IDX:VAL [flags]", sendSynopsis, stderr)
	o := &sendOptions{}
	id := fs.String("id", "", "connector id `IDX:VAL` (required)")
	group := fs.Uint("group", 0, "multicast to group `G` (1-26); 0 sends to the kernel only")
	text := fs.String("payload", "", "payload `TEXT`")
	hexs := fs.String("hex", "", "payload as `HEX` bytes")
	file := fs.String("file", "", "payload read from `FILE` (- for stdin)")
	fs.IntVar(&o.size, "payload-size", -1, "payload size in `bytes`: pads the payload with zeros, or without a payload fills it with the message number (8 bytes, host order) and a pattern")
	fs.Uint64Var(&o.count, "count", 1, "messages to send")
	fs.Float64Var(&o.rate, "rate", 0, "messages per second (0: as fast as possible)")
	fs.Uint64Var(&o.skipEvery, "skip-every", 0, "leave out one sequence number after every `K` messages (0: never)")
	seq := fs.Uint64("seq", 0, "sequence number of the first message")
	ack := fs.String("ack", "", "ack of every message (default: random per message)")
	fs.DurationVar(&o.waitReply, "wait-reply", 0, "wait up to `DURATION` for the reply to each message and print it")
	fs.BoolVar(&o.json, "json", false, "print replies as JSON lines")
	fs.BoolVar(&o.quiet, "quiet", false, "no report on stderr")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if *id == "" {
		return nil, usageErr("--id IDX:VAL is required")
	}
	var err error
	if o.id, err = parseCbID(*id); err != nil {
		return nil, usageErr("--id: %v", err)
	}
	if *group > schema.MaxGroup {
		return nil, usageErr("--group %d: connector groups are 1..%d (0: the kernel)", *group, schema.MaxGroup)
	}
	o.group = uint32(*group)
	if *seq > 1<<32-1 {
		return nil, usageErr("--seq %d: sequence numbers are 32-bit", *seq)
	}
	o.seq = uint32(*seq)
	if *ack != "" {
		v, err := strconv.ParseUint(*ack, 0, 32)
		if err != nil {
			return nil, usageErr("--ack %q: not a 32-bit number", *ack)
		}
		a := uint32(v)
		o.ack = &a
	}
	sources := 0
	for _, s := range []string{*text, *hexs, *file} {
		if s != "" {
			sources++
		}
	}
	if sources > 1 {
		return nil, usageErr("--payload, --hex and --file exclude each other")
	}
	switch {
	case *text != "":
		o.payload = []byte(*text)
	case *hexs != "":
		if o.payload, err = hex.DecodeString(strings.ReplaceAll(*hexs, " ", "")); err != nil {
			return nil, usageErr("--hex: %v", err)
		}
	case *file == "-":
		if o.payload, err = io.ReadAll(os.Stdin); err != nil {
			return nil, fmt.Errorf("read payload from stdin: %w", err)
		}
	case *file != "":
		if o.payload, err = os.ReadFile(*file); err != nil {
			return nil, fmt.Errorf("read payload: %w", err)
		}
	}
	if o.size >= 0 {
		if sources > 0 && o.size < len(o.payload) {
			return nil, usageErr("--payload-size %d is smaller than the %d-byte payload", o.size, len(o.payload))
		}
	}
	if n := max(o.size, len(o.payload)); n > schema.MaxMsgSize {
		return nil, usageErr("payload of %d bytes: the connector takes at most %d", n, schema.MaxMsgSize)
	}
	if o.rate < 0 {
		return nil, usageErr("--rate %v: must be >= 0", o.rate)
	}
	return o, nil
}

func sendCmd(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseSend(args, stderr)
	if err != nil {
		return err
	}
	cfg := source.Config{ReadBuffer: -1}
	if o.waitReply > 0 {
		cfg.ReadBuffer = 0
		// Connector users reply on the multicast group named by their index
		// (the proc connector's ACK goes to group 1), or to our port.
		if o.id.Idx >= 1 && o.id.Idx <= schema.MaxGroup {
			cfg.Groups = []uint32{o.id.Idx}
		}
	}
	conn, err := source.Dial(cfg)
	if err != nil {
		return err
	}
	defer func() {
		// Close sends the IGNORE for a LISTEN sent here: its error counts.
		err = errors.Join(err, conn.Close())
	}()

	payload := o.payload
	generated := o.size >= 0 && len(o.payload) == 0
	if o.size > len(payload) {
		payload = append(payload, make([]byte, o.size-len(payload))...)
		if generated {
			for i := range payload {
				payload[i] = byte(i)
			}
		}
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	var tr *transform.Transformer
	if o.waitReply > 0 {
		host, err := enrich.ReadHost("/proc")
		if err != nil {
			return err
		}
		if tr, err = transform.New(transform.Config{Host: host}); err != nil {
			return err
		}
	}

	start := time.Now()
	seq := o.seq
	var sent, skipped uint64
	first := seq
	for i := uint64(0); i < o.count; i++ {
		if ctx.Err() != nil {
			break
		}
		if i > 0 && o.skipEvery > 0 && i%o.skipEvery == 0 {
			seq++
			skipped++
		}
		if o.rate > 0 {
			if d := time.Until(start.Add(time.Duration(float64(i) / o.rate * float64(time.Second)))); d > time.Millisecond {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
				if ctx.Err() != nil {
					break
				}
			}
		}
		if generated && len(payload) >= 8 {
			binary.NativeEndian.PutUint64(payload, i)
		}
		m := schema.CnMsg{ID: o.id, Seq: seq, Ack: rand.Uint32(), Data: payload}
		if o.ack != nil {
			m.Ack = *o.ack
		}
		if err := conn.Send(m, o.group); err != nil {
			return fmt.Errorf("message %d (seq %d): %w", i, seq, err)
		}
		sent++
		if o.waitReply > 0 {
			if err := awaitReply(ctx, conn, tr, m, o, out); err != nil {
				return err
			}
		}
		seq++
	}
	// A LISTEN sent to the process-events connector counts this socket as
	// a listener: conn.Close sends the IGNORE that balances it.
	if !o.quiet {
		el := time.Since(start)
		last := seq - 1
		fmt.Fprintf(stderr, "cnstream send: %d messages as id %s to %s, seq %d..%d (%d numbers skipped) in %v (%.0f msg/s)\n",
			sent, o.id, target(o.group), first, last, skipped, el.Round(time.Microsecond), float64(sent)/el.Seconds())
	}
	if sent < o.count {
		return ctx.Err()
	}
	return nil
}

func target(group uint32) string {
	if group == 0 {
		return "the kernel"
	}
	return fmt.Sprintf("group %d", group)
}

// awaitReply reads until the reply to req arrives (printing it) or the wait
// ends. Other messages are new messages, not replies: they are ignored.
func awaitReply(ctx context.Context, conn *source.Conn, tr *transform.Transformer, req schema.CnMsg, o *sendOptions, out *bufio.Writer) error {
	wctx, cancel := context.WithTimeout(ctx, o.waitReply)
	defer cancel()
	b := source.NewBatch(16, 0)
	p := &printer{w: out, json: o.json}
	var events []schema.Event
	for {
		n, err := conn.ReadBatch(wctx, b)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				return fmt.Errorf("no reply to seq %d ack %d within %v", req.Seq, req.Ack, o.waitReply)
			}
			return err
		}
		events = tr.Batch(b, n, events[:0])
		for i := range events {
			e := &events[i]
			if e.Stream == nil || e.Record != nil {
				continue
			}
			got := schema.CnMsg{ID: schema.CbID{Idx: e.Stream.Idx, Val: e.Stream.Val}, Seq: e.Stream.Seq, Ack: e.Stream.Ack}
			if schema.IsReply(req, got) {
				p.print(e)
				return out.Flush()
			}
		}
	}
}

func parseCbID(s string) (schema.CbID, error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return schema.CbID{}, fmt.Errorf("%q: want IDX:VAL, for example 1:1", s)
	}
	idx, err := strconv.ParseUint(a, 0, 32)
	if err != nil {
		return schema.CbID{}, fmt.Errorf("%q: index %q is not a 32-bit number", s, a)
	}
	val, err := strconv.ParseUint(b, 0, 32)
	if err != nil {
		return schema.CbID{}, fmt.Errorf("%q: value %q is not a 32-bit number", s, b)
	}
	return schema.CbID{Idx: uint32(idx), Val: uint32(val)}, nil
}
