package sink

import (
	"context"
	"errors"
	"testing"
)

func TestTurn(t *testing.T) {
	tn := NewTurn()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tn.Acquire(ended); err != nil {
		t.Fatalf("Acquire of a free turn with an ended ctx = %v, want nil", err)
	}
	if err := tn.Acquire(ended); !errors.Is(err, context.Canceled) {
		t.Errorf("Acquire of a held turn with an ended ctx = %v, want context.Canceled", err)
	}
	done := make(chan error)
	go func() { done <- tn.Acquire(context.Background()) }()
	tn.Release()
	if err := <-done; err != nil {
		t.Errorf("Acquire after Release = %v", err)
	}
	tn.Release()
}
