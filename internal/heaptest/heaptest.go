// Package heaptest measures what code allocates and leaves on the heap,
// for the tests that hold a structure's size or a reader's garbage to a
// bound.
package heaptest

import (
	"runtime"
	"testing"
)

// Growth returns how many bytes the live heap grew while f ran. The
// collector runs before and after, so what counts is what f left
// reachable: the caller keeps it so (in a variable it reads afterwards,
// or with runtime.KeepAlive).
func Growth(f func()) int64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return int64(after.HeapAlloc) - int64(before.HeapAlloc)
}

// Allocated returns how many bytes f allocated, whether or not they are
// still reachable: what a reader allocates for its input, say.
func Allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// PerItem holds the heap that n items of f cost to limit bytes an item:
// it logs the bytes of heap an item (what names it: "a target") and
// fails t above limit. It returns the figure.
func PerItem(t testing.TB, what string, n int, limit int64, f func()) int64 {
	t.Helper()
	per := Growth(f) / int64(n)
	t.Logf("%d bytes of heap %s", per, what)
	if per > limit {
		t.Errorf("%d bytes of heap %s, want at most %d", per, what, limit)
	}
	return per
}
