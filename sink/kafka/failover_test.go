package kafka_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnstream/cnstream/testenv/need"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/kafka"
	"github.com/cnstream/cnstream/sink/sinktest"
)

// startCluster3 starts a private 3-node Kafka cluster (testenv/kafka/start
// --brokers 3: replication factor 3, min.insync.replicas 2) on free ports
// and returns its bootstrap list and state dir.
func startCluster3(t *testing.T) ([]string, string) {
	t.Helper()
	out, dir := startPrivate(t, "kafka3", 6, "--brokers", "3")
	return strings.Split(out, ","), dir
}

// startPrivate runs testenv/kafka/start with args on a range of ports free
// ones in a state dir of the test's, and returns what it prints (the
// bootstrap list) and the dir. The cluster is stopped when the test ends,
// and by itself if the test binary dies (--watch-pid).
func startPrivate(t *testing.T, name string, ports int, args ...string) (string, string) {
	t.Helper()
	need.Tool(t, "java", "the test's Kafka broker runs on it")
	need.Tool(t, "kcat", "testenv/kafka/start checks the brokers' readiness with it")
	script, err := filepath.Abs("../../testenv/kafka/start")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), name)
	port := freePortRange(t, ports)
	cmd := exec.Command(script, append(args, "--dir", dir, "--watch-pid", strconv.Itoa(os.Getpid()))...)
	cmd.Env = append(os.Environ(), "CNSTREAM_KAFKA_PORT="+strconv.Itoa(port), "CNSTREAM_KAFKA_HEAP=512m")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testenv/kafka/start %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	t.Cleanup(func() {
		stop := exec.Command(filepath.Join(filepath.Dir(script), "stop"), "--dir", dir)
		if out, err := stop.CombinedOutput(); err != nil {
			t.Logf("testenv/kafka/stop: %v\n%s", err, out)
		}
	})
	t.Logf("testenv/kafka/start %s: ready in %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	return strings.TrimSpace(string(out)), dir
}

// freePortRange returns a port p such that p..p+n-1 are free on 127.0.0.1.
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if p+n > 65530 {
			continue
		}
		free := true
		for q := p; q < p+n && free; q++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				free = false
				continue
			}
			l.Close()
		}
		if free {
			return p
		}
	}
	t.Fatal("no range of free ports")
	return 0
}

// TestFailover3Brokers: on a 3-node cluster (replication factor 3,
// min.insync.replicas 2, acks all), the leader of the topic's partition is
// killed (SIGKILL) mid-stream. WriteBatch fails while no leader answers,
// with retriable errors only; retried as the pipeline does, every event
// reaches the new leader, in the order written (duplicates of retried
// batches aside, each with the original's event id).
func TestFailover3Brokers(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a 3-node Kafka cluster")
	}
	forClients(t, testFailover3Brokers)
}

func testFailover3Brokers(t *testing.T, client string) {
	bootstrap, dir := startCluster3(t)
	topic := uniqueTopic(t)
	admin := &kafkago.Client{Addr: kafkago.TCP(bootstrap...), Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	res, err := admin.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
		{Topic: topic, NumPartitions: 1, ReplicationFactor: 3},
	}})
	if err == nil {
		err = res.Errors[topic]
	}
	if err != nil {
		t.Fatalf("CreateTopics %s: %v", topic, err)
	}
	waitTopic(t, bootstrap[0], topic, 1)

	s, err := kafka.New(kafka.Config{Brokers: bootstrap, Topic: topic, WriteTimeout: 5 * time.Second, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())

	g := sinktest.NewGenerator(11)
	var written []string // event ids in write order
	var retried int
	var longest time.Duration
	write := func() {
		batch := g.Batch(200)
		start := time.Now()
		for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
			err := s.WriteBatch(ctx, batch)
			if err == nil {
				break
			}
			if sink.IsPermanent(err) || ctx.Err() != nil {
				t.Fatalf("WriteBatch after %d events: %v", len(written), err)
			}
			retried++
			t.Logf("WriteBatch: %v (retrying, as the pipeline does)", err)
			time.Sleep(delay) // the pipeline's backoff
		}
		longest = max(longest, time.Since(start))
		for i := range batch {
			written = append(written, batch[i].EventID())
		}
	}
	for range 10 {
		write()
	}

	leader := partitionLeader(t, bootstrap, topic)
	pidFile := filepath.Join(dir, fmt.Sprintf("node-%d", leader), "kafka.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", pidFile, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill leader node %d (pid %d): %v", leader, pid, err)
	}
	killed := time.Now()
	t.Logf("killed node %d, the partition's leader", leader)
	for range 20 {
		write()
	}
	t.Logf("%d events in %d batches; %d failed attempts; longest batch %v; %v from the kill to the last write",
		len(written), len(written)/200, retried, longest.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))

	var p kafkago.Partition
	for _, addr := range bootstrap {
		conn, err := kafkago.Dial("tcp", addr)
		if err != nil {
			continue
		}
		ps, err := conn.ReadPartitions(topic)
		conn.Close()
		if err == nil && len(ps) == 1 && ps[0].Leader.ID != leader && ps[0].Leader.ID != 0 {
			p = ps[0]
			break
		}
	}
	if p.Leader.ID == 0 {
		t.Fatalf("no new leader of %s/0 in the metadata of the surviving nodes", topic)
	}
	msgs, err := readPartition(topic, p)
	if err != nil {
		t.Fatal(err)
	}
	// The first occurrences of the event ids are the ids written, in order;
	// any later occurrence is a retried batch's duplicate.
	seen := map[string]bool{}
	var first []string
	dups := 0
	for i := range msgs {
		id, n := header(&msgs[i], kafka.HeaderEventID)
		if n != 1 {
			t.Fatalf("message at offset %d has %d event id headers", msgs[i].Offset, n)
		}
		if seen[id] {
			dups++
			continue
		}
		seen[id] = true
		first = append(first, id)
	}
	t.Logf("%d messages read back: %d events, %d duplicates", len(msgs), len(first), dups)
	if len(first) != len(written) {
		t.Fatalf("%d distinct events in the topic, %d written", len(first), len(written))
	}
	for i := range written {
		if first[i] != written[i] {
			t.Fatalf("event %d in the topic is %s, written %s: order not kept", i, first[i], written[i])
		}
	}
	// kafka-go fails the WriteBatch; franz-go may ride the failover out
	// within it, retrying the requests that failed on the killed leader.
	if st := s.Stats(); retried == 0 && st.RequestErrors == 0 {
		t.Errorf("no WriteBatch failed and no request failed after the leader was killed: the failover was not exercised (Stats %+v)", st)
	} else {
		t.Logf("%d failed WriteBatch calls; Stats %+v", retried, st)
	}
}

// partitionLeader returns the node id of the leader of topic's partition 0.
func partitionLeader(t *testing.T, bootstrap []string, topic string) int {
	t.Helper()
	conn, err := kafkago.Dial("tcp", bootstrap[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ps, err := conn.ReadPartitions(topic)
	if err != nil || len(ps) != 1 {
		t.Fatalf("ReadPartitions %s: %v %v", topic, ps, err)
	}
	return ps[0].Leader.ID
}
