//go:build linux

package source

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/cnstream/cnstream/schema"
)

// Subscribe sends PROC_CN_MCAST_LISTEN to the process-events connector and
// waits for its ACK (a NONE event whose ack is the request's ack + 1). It
// joins group 1 first, so that the ACK and the events are heard.
//
// The 8-byte proc_input form (Linux 6.6+) is tried first; kernels before 6.6
// ignore it silently, so after cfg.Attempts unanswered requests Subscribe
// falls back to the legacy 4-byte op. The ACK's errno and the silent cases
// become errors that say what is wrong. Outside the initial user or pid
// namespace the join of group 1 or the LISTEN itself fails (ErrNotHeard),
// and the error explains the namespace whichever step it was.
//
// Every datagram read while waiting, the ACK included (it consumes a
// sequence number on its CPU), is kept and returned by the next ReadBatch
// calls: nothing is lost to the handshake. Call Subscribe from the reader
// goroutine, before the read loop.
//
// With a kernel-side mask (cfg.Events other than 0 or PROC_EVENT_ALL) the
// kernel filters the ACK out too, so Subscribe sends LISTEN once and returns
// without confirmation; sequence gaps then no longer mean loss either.
func (c *Conn) Subscribe(ctx context.Context, cfg SubscribeConfig) error {
	if err := c.JoinGroup(schema.ProcID.Idx); err != nil {
		return err
	}
	mask := cfg.mask()
	if mask != schema.ProcEventAll {
		req := c.listenMsg(schema.ProcMcastListen, mask, false)
		if err := c.send(req, 0); err != nil {
			return err
		}
		c.setSub(SubscriptionState{Active: true, Mask: uint32(mask), Attempts: 1})
		return nil
	}

	attempts := 0
	start := time.Now()
	try := func(legacy bool) error {
		b := backoff.WithContext(backoff.WithMaxRetries(cfg.backoff(), uint64(cfg.attempts()-1)), ctx)
		return backoff.Retry(func() error {
			attempts++
			req := c.listenMsg(schema.ProcMcastListen, mask, legacy)
			if err := c.send(req, 0); err != nil {
				return backoff.Permanent(err)
			}
			errno, err := c.awaitAck(ctx, req, cfg.timeout())
			switch {
			case err != nil:
				return err // ErrNoAck is retried; others are permanent
			case errno != 0:
				return backoff.Permanent(ackError(errno))
			}
			c.setSub(SubscriptionState{Active: true, Legacy: legacy, Mask: uint32(mask), Attempts: attempts, Ack: req.Ack + 1, RTT: time.Since(start)})
			return nil
		}, b)
	}
	err := ErrNoAck
	if !cfg.Legacy {
		err = try(false)
	}
	if errors.Is(err, ErrNoAck) && ctx.Err() == nil {
		err = try(true)
	}
	if errors.Is(err, ErrNoAck) {
		return fmt.Errorf("%w after %d LISTEN requests in %v (8-byte and legacy 4-byte forms): %s",
			ErrNoAck, attempts, time.Since(start).Round(time.Millisecond), silentCause())
	}
	return err
}

func (c *Conn) listenMsg(op schema.ProcMcastOp, mask schema.What, legacy bool) schema.CnMsg {
	return schema.CnMsg{
		ID:   schema.ProcID,
		Seq:  c.seq.Add(1),
		Ack:  randUint32(),
		Data: schema.AppendProcInput(nil, op, mask, legacy),
	}
}

func (c *Conn) setSub(s SubscriptionState) {
	c.subMu.Lock()
	c.sub = s
	c.subMu.Unlock()
}

// awaitAck reads until the reply to req arrives or timeout passes. Every
// datagram read is queued for ReadBatch.
func (c *Conn) awaitAck(ctx context.Context, req schema.CnMsg, timeout time.Duration) (uint32, error) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	b := NewBatch(16, DefaultDatagramBytes)
	var msgs []schema.NetlinkMessage
	for {
		n, err := c.read(actx, b)
		c.carry.enobufs += b.ENOBUFS
		c.carry.dropped += b.Dropped
		c.carry.forged += b.Forged
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				return 0, ErrNoAck
			}
			return 0, backoff.Permanent(err)
		}
		found, errno := false, uint32(0)
		for _, d := range b.Datagrams[:n] {
			c.pending = append(c.pending, pendingDatagram{data: append([]byte(nil), d.Data...), addr: d.Addr, truncated: d.Truncated})
			if found || d.Addr.PortID != 0 {
				continue
			}
			msgs, _ = schema.ParseNetlink(d.Data, msgs[:0])
			for _, m := range msgs {
				cn, err := schema.DecodeCnMsg(m.Data)
				if err != nil || !schema.IsReply(req, cn) {
					continue
				}
				if ev, err := schema.DecodeProcEvent(cn.Data); err == nil && ev.What == schema.ProcEventNone {
					found, errno = true, ev.Ack.Err
				}
			}
		}
		if found {
			return errno, nil
		}
	}
}

// unsubscribe sends IGNORE when a subscription is active, and the IGNORE
// requests that balance the LISTENs sent through Send.
func (c *Conn) unsubscribe() error {
	c.subMu.Lock()
	s := c.sub
	c.sub.Active = false
	owed := c.listens
	c.listens = sentListens{}
	c.subMu.Unlock()
	var reqs []schema.CnMsg
	if s.Active {
		reqs = append(reqs, c.listenMsg(schema.ProcMcastIgnore, schema.What(s.Mask), s.Legacy))
	}
	reqs = owed.ignores(reqs, c.listenMsg)
	var errs []error
	for _, req := range reqs {
		if err := c.send(req, 0); err != nil {
			errs = append(errs, fmt.Errorf("source: send IGNORE: %w", err))
			continue
		}
		c.subMu.Lock()
		c.sub.IgnoreAck, c.sub.IgnoreSent = req.Ack, true
		c.subMu.Unlock()
	}
	return errors.Join(errs...)
}

// noteRequest records a LISTEN or IGNORE request that Send sent to the
// process-events connector, so that unsubscribe balances it.
func (c *Conn) noteRequest(m schema.CnMsg, group uint32) {
	op, mask, legacy, ok := procRequest(m, group)
	if !ok {
		return
	}
	c.subMu.Lock()
	c.listens.note(op, mask, legacy)
	c.subMu.Unlock()
}

func ackError(errno uint32) error {
	e := syscall.Errno(errno)
	var hint string
	switch e {
	case syscall.EPERM, syscall.EACCES:
		hint = "LISTEN needs CAP_NET_ADMIN on this kernel (before Linux 6.6, or a build that keeps it): " + ReadPrivileges().NetAdminHint()
	case syscall.EINVAL:
		hint = "the kernel did not understand the request"
	}
	return &OpError{Op: "process-events connector refused LISTEN", Err: e, Hint: hint}
}

// silentCause explains why the kernel may have ignored LISTEN without an
// answer: it only hears processes in the initial user and pid namespaces.
func silentCause() string {
	if d := ReadPrivileges().Diagnosis(); d != "" {
		return d
	}
	return "the kernel may lack CONFIG_PROC_EVENTS, or the ACK was lost to a receive-queue overflow"
}
