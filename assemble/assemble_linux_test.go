package assemble

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cnstream/cnstream/pipeline"
	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
	"github.com/cnstream/cnstream/testenv/need"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestOpenProcessEvents: the zero Config subscribes to process events,
// reads the host, seeds the process table, and resolves the defaults;
// Ready holds once the kernel acknowledged; Close sends IGNORE.
func TestOpenProcessEvents(t *testing.T) {
	need.Root(t, "it subscribes to the kernel's process events (CAP_NET_ADMIN)")
	in, err := Open(t.Context(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !in.Subscribed || in.Table == nil || in.Transformer == nil || in.Host.BootID == "" {
		t.Errorf("Open(zero Config): subscribed %v, table %v, transformer %v, host %+v: want all", in.Subscribed, in.Table != nil, in.Transformer != nil, in.Host)
	}
	if in.BatchLen != 64 || in.DgramBytes != 512 {
		t.Errorf("BatchLen %d, DgramBytes %d: want the defaults 64, 512", in.BatchLen, in.DgramBytes)
	}
	if err := in.Ready(t.Context()); err != nil {
		t.Errorf("Ready after Open: %v", err)
	}
	if len(in.Lacks) != 0 {
		t.Errorf("lacks as root: %+v", in.Lacks)
	}
	pc := in.PipelineConfig(pipeline.Config{})
	if pc.Source == nil || pc.Transform != in.Transformer || pc.Enrich == nil || pc.DgramBytes != 512 {
		t.Errorf("PipelineConfig does not carry the reader half: %+v", pc)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	if sub := in.Conn.Stats().Subscription; !sub.IgnoreSent {
		t.Errorf("Close sent no IGNORE: %+v", sub)
	}
}

// TestOpenGroup: without process events and enrichment, Open joins the
// groups, does not subscribe, makes no process table, takes the host it is
// given, and sizes datagrams for any connector message.
func TestOpenGroup(t *testing.T) {
	need.Root(t, "it joins a connector multicast group (CAP_NET_ADMIN)")
	host := schema.Host{Hostname: "h", MachineID: "m", BootID: "b"}
	var told []Lack
	in, err := Open(t.Context(), Config{Host: host, OnLack: func(l Lack) { told = append(told, l) },
		Source:    Source{NoProcessEvents: true, Groups: []uint32{23}, ReadBuffer: -1},
		Transform: Transform{NoEnrich: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if in.Subscribed || in.Table != nil || in.Host != host || in.DgramBytes != source.DefaultDatagramBytes {
		t.Errorf("subscribed %v, table %v, host %+v, datagram %d", in.Subscribed, in.Table != nil, in.Host, in.DgramBytes)
	}
	if len(told) != len(in.Lacks) {
		t.Errorf("OnLack told %d lacks, Lacks has %d", len(told), len(in.Lacks))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := in.Ready(ctx); err != nil {
		t.Errorf("Ready without a subscription: %v", err)
	}
}

func TestParseKernelFilter(t *testing.T) {
	m, err := ParseKernelFilter([]string{"exec", " EXIT ", "nonzero_exit"})
	if want := schema.ProcEventExec | schema.ProcEventExit | schema.ProcEventNonzeroExit; err != nil || m != want {
		t.Errorf("ParseKernelFilter = %#x, %v; want %#x", m, err, want)
	}
	if _, err := ParseKernelFilter([]string{"ack"}); err == nil || err.Error() != `unknown kind "ack" (known: fork,exec,exit,uid,gid,sid,ptrace,comm,coredump,nonzero_exit)` {
		t.Errorf("ParseKernelFilter(ack): %v", err)
	}
}
