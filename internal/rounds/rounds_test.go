package rounds

import (
	"context"
	"testing"
	"time"
)

// TestRun: full rounds follow each other at once, a partial round waits
// the interval (here far longer than the test), and cancelling ends Run.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan int, 10)
	n := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, 0, time.Hour, func(context.Context) bool {
			n++
			calls <- n
			return n < 3 // three full rounds, then a partial one
		})
	}()
	for want := 1; want <= 3; want++ {
		select {
		case got := <-calls:
			if got != want {
				t.Fatalf("round %d, want %d", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d did not follow a full round at once", want)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if len(calls) != 0 {
		t.Fatalf("a round ran after the partial one, within its hour: %d", <-calls)
	}
}
