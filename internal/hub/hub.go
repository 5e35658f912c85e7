package hub

import "sync"

// Hub delivers events to its subscribers, synchronously, in the order they
// subscribed, one Emit at a time: every subscriber sees the events of all
// Emits in the same order. The zero value is ready to use.
//
// Handlers run on the goroutine that calls Emit, so they must be quick and
// must neither Emit on the same hub nor unsubscribe; hand slow work to a
// goroutine of your own.
type Hub[T any] struct {
	mu   sync.Mutex
	next int
	subs []sub[T]
}

type sub[T any] struct {
	id int
	fn func(T)
}

// Subscribe registers fn for every later event and returns a function that
// unsubscribes it. Unsubscribing twice is harmless.
func (h *Hub[T]) Subscribe(fn func(T)) (unsubscribe func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	id := h.next
	h.next++
	h.subs = append(h.subs, sub[T]{id: id, fn: fn})
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for i, s := range h.subs {
			if s.id == id {
				h.subs = append(h.subs[:i:i], h.subs[i+1:]...)
				return
			}
		}
	}
}

// Emit delivers evs, in order, to every subscriber.
func (h *Hub[T]) Emit(evs ...T) {
	if len(evs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ev := range evs {
		for _, s := range h.subs {
			s.fn(ev)
		}
	}
}
