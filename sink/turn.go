package sink

import "context"

// Turn is a mutex that a ctx can give up waiting for: a sink's WriteBatch,
// Sync and Close take turns with it, and a caller whose ctx ends stops
// waiting. Make one with NewTurn.
type Turn struct{ c chan struct{} }

// NewTurn returns a free Turn.
func NewTurn() Turn { return Turn{c: make(chan struct{}, 1)} }

// Acquire takes the turn, waiting until it is free or ctx ends (then it
// returns ctx's error). A free turn is taken even when ctx has ended, so
// that a Close with an expired ctx still closes an idle sink.
func (t Turn) Acquire(ctx context.Context) error {
	select {
	case t.c <- struct{}{}:
		return nil
	default:
	}
	select {
	case t.c <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Release gives the turn back.
func (t Turn) Release() { <-t.c }
