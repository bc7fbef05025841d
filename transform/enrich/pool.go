package enrich

import (
	"sync"
	"sync/atomic"
	"time"
)

// readPool runs /proc reads off the enrichment goroutine, which waits for
// each at most a deadline. A read of /proc/PID/cmdline takes the target's
// mmap lock and can wait for it without bound (a process stuck in a page
// fault on a hung FUSE or NFS file, with another of its threads queued for
// the lock); such a read cannot be cancelled, so its worker is written off:
// the caller goes on with what the read got before cmdline, and the worker
// comes back to the pool if the read ever returns. The pool has a fixed
// number of workers: when all are written off, reads are skipped at once.
//
// Workers are goroutines started per read (no goroutine outlives its
// read); a slot holds a worker's reader and buffer and is reused. The pool
// itself is used by one goroutine (the table's); its counters by any.
type readPool struct {
	free    chan *slot
	timeout time.Duration
	timer   *time.Timer

	stuck             atomic.Int64  // slots whose read was given up and has not returned
	timeouts, skipped atomic.Uint64 // reads that hit the deadline; reads not started (every slot stuck)
	late              atomic.Uint64 // given-up reads that returned later

	readFn       func(s *slot) // the read itself
	readStatusFn func(s *slot)
}

// slot is one worker's state.
type slot struct {
	rd procReader

	// The job: written by the caller before the worker starts.
	pid, tgid uint32
	check     startCheck
	path      string // for a status-only read
	statusOp  bool

	// The worker's result, handed over through done or, after the
	// deadline, only partial under mu.
	res         procRead
	st          status
	stOK        bool
	mu          sync.Mutex
	partial     procRead
	havePartial bool
	state       atomic.Uint32 // slotRunning, slotDone, slotAbandoned
	done        chan struct{} // cap 1
	pool        *readPool
}

const (
	slotRunning = iota
	slotDone
	slotAbandoned
)

func newReadPool(workers int, timeout time.Duration, newReader func() procReader) *readPool {
	p := &readPool{free: make(chan *slot, workers), timeout: timeout}
	for i := 0; i < workers; i++ {
		p.free <- &slot{rd: newReader(), done: make(chan struct{}, 1), pool: p}
	}
	p.readFn = func(s *slot) {
		s.res = s.rd.read(s.pid, s.tgid, s.check, s.setPartial)
	}
	p.readStatusFn = func(s *slot) {
		s.st, s.stOK = s.rd.readStatus(s.path)
	}
	return p
}

func (s *slot) setPartial(r *procRead) {
	s.mu.Lock()
	s.partial, s.havePartial = *r, true
	s.mu.Unlock()
}

// run is the worker: it reads, then hands the result over, or, when the
// caller gave up on it, puts its slot back in the pool itself.
func (s *slot) run() {
	if s.statusOp {
		s.pool.readStatusFn(s)
	} else {
		s.pool.readFn(s)
	}
	if s.state.CompareAndSwap(slotRunning, slotDone) {
		s.done <- struct{}{}
		return
	}
	// Abandoned: the caller is gone (it read partial under mu); this slot
	// is free again.
	s.mu.Lock()
	s.res, s.partial, s.havePartial, s.st, s.stOK = procRead{}, procRead{}, false, status{}, false
	s.mu.Unlock()
	s.pool.stuck.Add(-1)
	s.pool.late.Add(1)
	s.pool.free <- s
}

// get takes a free slot, or nil when every one is stuck.
func (p *readPool) get() *slot {
	select {
	case s := <-p.free:
		return s
	default:
		p.skipped.Add(1)
		return nil
	}
}

// wait starts s's worker and waits for it at most the deadline. It reports
// false when the deadline passed: s is written off (the worker returns it
// to the pool if its read ever ends) and must not be touched but through
// its partial result, which wait returns under the lock.
func (p *readPool) wait(s *slot) (partial procRead, ok bool) {
	s.state.Store(slotRunning)
	go s.run()
	if p.timer == nil {
		p.timer = time.NewTimer(p.timeout)
	} else {
		p.timer.Reset(p.timeout)
	}
	select {
	case <-s.done:
		p.timer.Stop()
		return procRead{}, true
	case <-p.timer.C:
	}
	if !s.state.CompareAndSwap(slotRunning, slotAbandoned) {
		<-s.done // it finished just now
		return procRead{}, true
	}
	p.timeouts.Add(1)
	p.stuck.Add(1)
	s.mu.Lock()
	if s.havePartial {
		partial = s.partial
	}
	s.mu.Unlock()
	return partial, false
}

// read reads pid as procReader.read does, within the deadline. A read that
// times out, or that could not start, returns what was read before cmdline
// with timedOut set.
func (p *readPool) read(root string, pid, tgid uint32, check startCheck) procRead {
	s := p.get()
	if s == nil {
		return procRead{timedOut: true}
	}
	s.rd.root, s.pid, s.tgid, s.check, s.statusOp = root, pid, tgid, check, false
	if partial, ok := p.wait(s); !ok {
		partial.timedOut = true
		return partial
	}
	r := s.res
	s.res, s.partial, s.havePartial = procRead{}, procRead{}, false
	p.free <- s
	return r
}

// readStatus reads one status file (a thread's, for Seed) within the
// deadline.
func (p *readPool) readStatus(path string) (status, bool) {
	s := p.get()
	if s == nil {
		return status{}, false
	}
	s.path, s.statusOp = path, true
	if _, ok := p.wait(s); !ok {
		return status{}, false
	}
	st, ok := s.st, s.stOK
	s.st, s.stOK = status{}, false
	p.free <- s
	return st, ok
}
