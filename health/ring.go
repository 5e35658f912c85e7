package health

import (
	"encoding/binary"
)

// ringBuf keeps the last n values. It grows as values come, up to n, so
// a plugin with few of them (transitions) costs little.
type ringBuf[T any] struct {
	buf  []T
	n    int
	next int // where the next value goes once the buffer is full
}

func newRing[T any](n int) *ringBuf[T] { return &ringBuf[T]{n: max(n, 1)} }

func (r *ringBuf[T]) add(v T) {
	if len(r.buf) < r.n {
		r.buf = append(r.buf, v)
		return
	}
	r.buf[r.next] = v
	r.next = (r.next + 1) % r.n
}

// items returns the values oldest first.
func (r *ringBuf[T]) items() []T {
	return append(append([]T(nil), r.buf[r.next:]...), r.buf[:r.next]...)
}

// checkRing keeps a plugin's last n encoded checks back to back in one
// circular buffer, each after its length as a uvarint. A string per check
// cost its 16-byte header and its allocation's rounding up besides its
// bytes: 64 bytes for a check of 44, 16 KiB a plugin for the default ring.
// The buffer grows as checks come, to what n of them take, and never
// shrinks.
//
// Each check's sequence number and time are kept as the difference from
// the check before it (record.go): base is the point of the check before
// the oldest one kept, last that of the newest.
type checkRing struct {
	buf   []byte // circular; len(buf) is the capacity
	head  int    // offset of the oldest check's length
	used  int    // bytes held
	count int
	n     int

	base, last point
}

func newCheckRing(n int) *checkRing { return &checkRing{n: max(n, 1)} }

// add keeps rec, the check at point at encoded after r.last, dropping the
// oldest check when n are kept.
func (r *checkRing) add(rec []byte, at point) {
	var hdr [binary.MaxVarintLen64]byte
	h := binary.PutUvarint(hdr[:], uint64(len(rec)))
	need := h + len(rec)
	if r.count == r.n {
		r.drop()
	}
	if r.used+need > len(r.buf) {
		// Twice the room, up to what n checks of the size of those so far
		// take and a sixteenth more, so that a ring that fills slowly holds
		// little and checks a little larger than those they replace do
		// not copy the buffer each time.
		want := r.used + need
		full := want
		if r.count+1 < r.n {
			full = want / (r.count + 1) * r.n
		}
		r.resize(max(want, min(2*len(r.buf), full+full/16)))
	}
	tail := (r.head + r.used) % len(r.buf)
	r.put(tail, hdr[:h])
	r.put((tail+h)%len(r.buf), rec)
	r.used += need
	r.count++
	r.last = at
}

// put writes p at off, wrapping around the end of the buffer.
func (r *checkRing) put(off int, p []byte) {
	n := copy(r.buf[off:], p)
	copy(r.buf, p[n:])
}

// get reads len(p) bytes at off, wrapping around.
func (r *checkRing) get(off int, p []byte) {
	n := copy(p, r.buf[off:])
	copy(p[n:], r.buf)
}

func (r *checkRing) resize(size int) {
	nb := make([]byte, size)
	if r.used > 0 {
		r.get(r.head, nb[:r.used])
	}
	r.buf, r.head = nb, 0
}

// next returns the length of the check at off and the bytes its length
// takes.
func (r *checkRing) next(off int) (int, int) {
	var b [binary.MaxVarintLen64]byte
	r.get(off, b[:min(len(b), len(r.buf))])
	v, k := binary.Uvarint(b[:])
	if k <= 0 {
		panic("health: bad length in the check ring")
	}
	return int(v), k
}

// prefix is the most bytes advance reads of a check: its flags and two
// varints.
const prefix = 1 + 2*binary.MaxVarintLen64

// drop forgets the oldest check; its point becomes the base.
func (r *checkRing) drop() {
	l, k := r.next(r.head)
	var b [prefix]byte
	r.get((r.head+k)%len(r.buf), b[:min(l, prefix)])
	r.base = advance(b[:min(l, prefix)], r.base)
	r.head = (r.head + k + l) % len(r.buf)
	r.used -= k + l
	r.count--
}

// each calls fn with the checks from the (count-n)th on, oldest first, and
// the point of the check before each. rec is only valid during the call.
func (r *checkRing) each(n int, fn func(rec []byte, prev point)) {
	var scratch []byte
	off, at := r.head, r.base
	for i := range r.count {
		l, k := r.next(off)
		if cap(scratch) < l {
			scratch = make([]byte, l, max(l, 64))
		}
		rec := scratch[:l]
		skip := i < r.count-n
		if skip {
			rec = rec[:min(l, prefix)]
		}
		r.get((off+k)%len(r.buf), rec)
		if !skip {
			fn(rec, at)
		}
		at = advance(rec, at)
		off = (off + k + l) % len(r.buf)
	}
}
