package hub_test

import (
	"slices"
	"sync"
	"testing"

	"github.com/vitals-dev/vitals/internal/hub"
)

func TestHubOrderAndUnsubscribe(t *testing.T) {
	var h hub.Hub[int]
	var got []string
	unA := h.Subscribe(func(v int) { got = append(got, "a", string(rune('0'+v))) })
	unB := h.Subscribe(func(v int) { got = append(got, "b", string(rune('0'+v))) })
	h.Emit(1, 2)
	if want := []string{"a", "1", "b", "1", "a", "2", "b", "2"}; !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	unA()
	unA() // harmless
	got = nil
	h.Emit(3)
	h.Emit()
	if want := []string{"b", "3"}; !slices.Equal(got, want) {
		t.Fatalf("after unsubscribing a: %v, want %v", got, want)
	}
	unB()
	got = nil
	h.Emit(4)
	if len(got) != 0 {
		t.Fatalf("no subscriber, yet %v", got)
	}
}

// Concurrent Emits are delivered one at a time: a handler never runs
// twice at once, and every subscriber sees the same order.
func TestHubSerializesEmits(t *testing.T) {
	var h hub.Hub[int]
	var running, overlaps int
	var a, b []int
	h.Subscribe(func(v int) {
		running++
		if running > 1 {
			overlaps++
		}
		a = append(a, v)
		running--
	})
	h.Subscribe(func(v int) { b = append(b, v) })
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				h.Emit(i)
			}
		})
	}
	wg.Wait()
	if overlaps != 0 || len(a) != 800 || !slices.Equal(a, b) {
		t.Fatalf("overlaps %d, %d and %d delivered, same order %v", overlaps, len(a), len(b), slices.Equal(a, b))
	}
}
