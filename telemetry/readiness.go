package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/cnstream/cnstream/sink"
)

// Readiness is /readyz's answer.
type Readiness struct {
	Ready  bool          `json:"ready"`
	Checks []CheckResult `json:"checks"`
}

// CheckResult is the outcome of one Check.
type CheckResult struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// A Check is one readiness condition: Check returns nil when it holds. A
// nil Check always holds.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// PingTimeout bounds each Check.
const PingTimeout = 2 * time.Second

// SinkCheck is the readiness of a sink: its Ping when it can tell
// (sink.Pinger), always ready otherwise. It is named "sink NAME".
func SinkCheck(name string, s sink.Sink) Check {
	c := Check{Name: "sink " + name}
	if p, ok := s.(sink.Pinger); ok {
		c.Check = p.Ping
	}
	return c
}

// Checks returns a readiness function for SetReady: the checks run in
// parallel, each within PingTimeout, and an answer is reused for a second
// so that a scraper cannot flood the brokers.
func Checks(checks ...Check) func(ctx context.Context) Readiness {
	var (
		mu   sync.Mutex
		last Readiness
		at   time.Time
	)
	return func(ctx context.Context) Readiness {
		mu.Lock()
		defer mu.Unlock()
		if !at.IsZero() && time.Since(at) < time.Second {
			return last
		}
		rs := make([]CheckResult, len(checks))
		var wg sync.WaitGroup
		for i, c := range checks {
			rs[i] = CheckResult{Name: c.Name, OK: true}
			if c.Check == nil {
				continue
			}
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, PingTimeout)
				defer cancel()
				if err := c.Check(cctx); err != nil {
					rs[i] = CheckResult{Name: c.Name, Error: err.Error()}
				}
			})
		}
		wg.Wait()
		last, at = Readiness{Checks: rs}, time.Now()
		return last
	}
}

// GetReadiness asks an endpoint's /readyz (url) with c. An answer that is
// not /readyz's JSON is an error naming the HTTP status; a not-ready
// answer is not an error.
func GetReadiness(ctx context.Context, c *http.Client, url string) (*Readiness, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var rd Readiness
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&rd); err != nil {
		return nil, fmt.Errorf("/readyz: %s", resp.Status)
	}
	return &rd, nil
}
