package natssink

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/sinktest"
)

// TestCorePermissionViolation: a real nats-server whose user may not
// publish exec events (subject perm.exec). Under core NATS the server
// refuses those messages asynchronously (-ERR) and the flush still
// succeeds; the sink must fail the batch, permanently, so that the
// pipeline states it as lost (sink_failed) instead of acknowledging it.
// Batches on allowed subjects are acknowledged before and after, and an
// old violation is not blamed on them.
func TestCorePermissionViolation(t *testing.T) {
	srv := startTestServerConf(t, `
authorization {
  users = [
    {user: "cnstream", password: "s3cret-perm", permissions: {publish: {allow: [">"], deny: ["perm.exec"]}, subscribe: ">"}}
  ]
}
no_auth_user: cnstream
`)
	r := newCoreReader(t, srv.url, "perm")
	s := mustNew(t, Config{URL: srv.url, Subject: "perm.{kind}"})
	ctx := t.Context()
	g := sinktest.NewGenerator(19)
	split := func(n int) (allowed, mixed []schema.Event, execs int) {
		for len(mixed) < n {
			e := g.Next()
			if e.Kind < schema.KindFork || e.Kind > schema.KindCoredump {
				continue // process events only: the subjects are their kinds
			}
			mixed = append(mixed, e)
			if e.Kind == schema.KindExec {
				execs++
			} else {
				allowed = append(allowed, e)
			}
		}
		return allowed, mixed, execs
	}

	before, _, _ := split(20)
	if err := s.WriteBatch(ctx, before); err != nil {
		t.Fatalf("a batch on allowed subjects: %v", err)
	}
	inMixed, mixed, execs := split(200)
	if execs == 0 {
		t.Fatal("the generator made no exec event in 200")
	}
	err := s.WriteBatch(ctx, mixed)
	if err == nil {
		t.Fatalf("a batch whose %d exec events the server refused was acknowledged", execs)
	}
	if !sink.IsPermanent(err) || !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), `"perm.exec"`) {
		t.Errorf("error %v: want a permanent permissions violation naming the subject", err)
	}
	if want := `(` + strconv.Itoa(execs) + ` of the batch's 200 messages went to "perm.exec")`; !strings.Contains(err.Error(), want) {
		t.Errorf("error %v: want it to say %s", err, want)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error shows the password: %v", err)
	}
	after, _, _ := split(20)
	if err := s.WriteBatch(ctx, after); err != nil {
		t.Errorf("a batch on allowed subjects after the violation: %v", err)
	}
	st := s.Stats()
	if st.Rejected != 1 || st.Acked != uint64(len(before)+len(after)) {
		t.Errorf("stats %+v: want Rejected 1, Acked %d", st, len(before)+len(after))
	}

	// What the server did: the allowed messages of every batch, those of
	// the failed one included, and no exec event.
	got, err := r.read()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range got {
		if e.Kind == schema.KindExec {
			t.Fatalf("the subscriber got an exec event on a denied subject: %v", e.ID)
		}
	}
	if want := len(before) + len(inMixed) + len(after); len(got) != want {
		t.Errorf("subscriber got %d messages, want %d", len(got), want)
	}
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	// nats.go's handler goroutine counts the asynchronous errors: one per
	// refused message, by the time Close has returned.
	if c := s.Counters(); c.Errors == 0 || !strings.Contains(strings.ToLower(c.LastError), "permissions violation") {
		t.Errorf("counters %+v: want the asynchronous permissions violations", c)
	}
}
