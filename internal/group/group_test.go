package group

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestLoneCallIsWrittenAtOnce: with no group being written a call is its
// own group, whatever the window.
func TestLoneCallIsWrittenAtOnce(t *testing.T) {
	var sizes []int
	g := New(Config{Window: time.Hour, MaxBatch: 8}, func(_ context.Context, items []int) []int {
		sizes = append(sizes, len(items))
		out := make([]int, len(items))
		for i, v := range items {
			out[i] = v * 10
		}
		return out
	})
	for i := range 3 {
		r, ok := g.Do(context.Background(), i)
		if !ok || r != i*10 {
			t.Fatalf("Do(%d) = %d, %v", i, r, ok)
		}
	}
	if len(sizes) != 3 || sizes[0] != 1 {
		t.Fatalf("group sizes %v, want three groups of one", sizes)
	}
}

// TestGroupFormsWhileOneIsWritten: calls made while a write is under way
// go out together, each with its own result, and no group exceeds
// MaxBatch.
func TestGroupFormsWhileOneIsWritten(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	g := New(Config{Window: time.Second, MaxBatch: 4}, func(_ context.Context, items []int) []int {
		mu.Lock()
		first := len(sizes) == 0
		sizes = append(sizes, len(items))
		mu.Unlock()
		if first {
			<-release // hold the first write while the others queue
		}
		out := make([]int, len(items))
		for i, v := range items {
			out[i] = -v
		}
		return out
	})
	var wg sync.WaitGroup
	results := make([]int, 10)
	wg.Add(1)
	go func() { defer wg.Done(); results[0], _ = g.Do(context.Background(), 0) }()
	for {
		mu.Lock()
		n := len(sizes)
		mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	for i := 1; i < 10; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); results[i], _ = g.Do(context.Background(), i) }()
	}
	time.Sleep(50 * time.Millisecond) // let the nine queue behind the held write
	close(release)
	wg.Wait()
	for i, r := range results {
		if r != -i {
			t.Fatalf("call %d got %d", i, r)
		}
	}
	total := 0
	for _, s := range sizes {
		if s > 4 {
			t.Fatalf("group of %d, MaxBatch 4", s)
		}
		total += s
	}
	if total != 10 || len(sizes) > 5 {
		t.Fatalf("group sizes %v: want 10 calls in at most 5 groups (1 + full groups of 4)", sizes)
	}
}

// TestMemberContextEnds: a member whose context ends while its group is
// being written gets ok false; the group still writes it.
func TestMemberContextEnds(t *testing.T) {
	hold := map[int]chan struct{}{0: make(chan struct{}), 1: make(chan struct{})}
	written := make(chan []int, 4)
	g := New(Config{Window: time.Hour, MaxBatch: 2}, func(_ context.Context, items []int) []int {
		written <- append([]int(nil), items...)
		<-hold[items[0]]
		return make([]int, len(items))
	})
	go g.Do(context.Background(), 0) // a group of one, held while written
	<-written
	go g.Do(context.Background(), 1) // leads the next group, waits for it to fill
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan bool)
	go func() { _, ok := g.Do(ctx, 2); done <- ok }() // fills it: [1 2] is written, and held
	if got := <-written; len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("second group %v, want [1 2]", got)
	}
	if ok := <-done; ok {
		t.Fatal("a member whose context ended got a result before its group was written")
	}
	close(hold[1])
	close(hold[0])
}
