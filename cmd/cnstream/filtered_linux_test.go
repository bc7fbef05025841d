//go:build linux

package main

import (
	"bufio"
	"bytes"
	"os/exec"
	"testing"

	"github.com/cnstream/cnstream/schema"
)

// TestTailSummaryFiltered: with a kinds filter, tail prints filtered
// records, and --summary shows the filtered count per stream: the streams'
// counts add up to the total, and the printed records never exceed them.
func TestTailSummaryFiltered(t *testing.T) {
	tail := exec.Command(cnstreamBin, "tail", "--json", "--summary", "--kinds", "exec", "--count", "20")
	var stderr bytes.Buffer
	tail.Stderr = &stderr
	out, err := tail.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	generated := make(chan struct{})
	go func() {
		defer close(generated)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = exec.Command("/bin/true").Run()
		}
	}()
	printed := map[uint32]uint64{} // filtered counts printed, by cpu
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		e, err := schema.DecodeJSON(sc.Bytes())
		if err != nil {
			t.Fatalf("%v: %s", err, sc.Bytes())
		}
		switch {
		case e.Kind == schema.KindFiltered:
			if e.Filtered.Kinds["exec"] != 0 || e.Filtered.Count == 0 {
				t.Errorf("filtered record %+v", e.Filtered)
			}
			printed[e.Stream.CPU] += e.Filtered.Count
		case !e.Kind.IsLoss() && e.Kind != schema.KindExec:
			t.Errorf("a %s event passed --kinds exec", e.Kind)
		}
	}
	err = tail.Wait()
	close(stop)
	<-generated
	if err != nil {
		t.Fatalf("tail: %v; stderr: %s", err, stderr.String())
	}
	sum := parseSummary(t, stderr.Bytes())
	var total uint64
	for _, s := range sum.Streams {
		total += s.Filtered
		if s.Sender == 0 && s.Filtered < printed[s.CPU] {
			t.Errorf("stream cpu %d: summary %d filtered, records printed say %d", s.CPU, s.Filtered, printed[s.CPU])
		}
		if s.Filtered > s.Seen {
			t.Errorf("stream %+v: more filtered than seen", s)
		}
	}
	if total != sum.Filtered || total == 0 {
		t.Errorf("streams' filtered counts add up to %d, summary filtered %d (want equal, not 0)", total, sum.Filtered)
	}
}
