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

// checkRing keeps a plugin's last n checks back to back in one circular
// buffer, as record.go encodes them: a key (flags, state, probe names and
// verdicts, errors) and a vary part (durations and latencies) of a length
// the key decides. Checks in a row with the same key are a run: the key is
// kept once, at the run's first check, and each check after it is only
// its vary part and its point. A healthy server's checks are one run,
// about 10 bytes a check of three probes at 1 s, where each on its own
// took 21.
//
// A check's point is kept as the second difference of its sequence number
// and time (to the microsecond) from the checks before it: the scheduler
// runs a plugin's checks an interval apart and the engine numbers about as
// many checks between two of them each time, so both are near 0: a byte
// or two for the sequence number, two bytes for the time, three with the
// scheduler's default jitter (±5 % of the interval), where the differences
// took two and three (three and four at 10 s). base is the point of the
// check before the oldest one kept, last that of the newest.
//
// An entry is
//
//	tag   uvarint: zigzag(seq's second difference)<<1 | 1 for a run's first check
//	      (past ±2^61, tagEscape and the difference as 8 bytes)
//	time  varint: the time's second difference
//	      a run's first check only: uvarint len(key), uvarint len(vary), key
//	vary
//
// The oldest entry is always a run's first: dropping it makes the check
// after it, if that one is of the same run, the run's first, written over
// the bytes both took (it always fits: it takes the dropped one's key and
// the bytes of its own).
//
// The buffer grows as checks come, to what n of them take, and never
// shrinks.
type checkRing struct {
	buf   []byte // circular; len(buf) is the capacity
	head  int    // offset of the oldest entry
	used  int    // bytes held
	count int
	n     int

	base, last point
	// The newest run: the offset of its key, the key's length and its
	// checks' vary length.
	runKey, runKeyLen, runVary int
}

// point is where a check stands: its sequence number and time (Unix
// microseconds) and their differences from those of the check before it.
// Its arithmetic wraps, the same way each way, so every int64 comes back.
type point struct{ seq, us, dseq, dus int64 }

// then returns the point after p given the second differences.
func (p point) then(ddseq, ddus int64) point {
	p.dseq += ddseq
	p.dus += ddus
	p.seq += p.dseq
	p.us += p.dus
	return p
}

// to returns the second differences that take p to a check at seq, us.
func (p point) to(seq, us int64) (int64, int64) {
	return seq - p.seq - p.dseq, us - p.us - p.dus
}

func newCheckRing(n int) *checkRing { return &checkRing{n: max(n, 1)} }

// tagEscape marks a tag whose sequence number's second difference follows
// in 8 bytes: one that zigzagged does not leave room for the run bit.
const tagEscape = 1<<62 - 1

func appendTag(b []byte, ddseq int64, first bool) []byte {
	z := uint64(ddseq<<1) ^ uint64(ddseq>>63)
	var bit uint64
	if first {
		bit = 1
	}
	if z < tagEscape {
		return binary.AppendUvarint(b, z<<1|bit)
	}
	return binary.LittleEndian.AppendUint64(binary.AppendUvarint(b, tagEscape<<1|bit), uint64(ddseq))
}

// maxHeader is the most bytes an entry's header takes.
const maxHeader = binary.MaxVarintLen64 + 8 + 3*binary.MaxVarintLen64

// entry is what an entry's header says.
type entry struct {
	ddseq, ddus int64
	first       bool
	hdr         int // bytes before the key (a run's first) or the vary part
	key, vary   int // lengths; vary is the run's
	size        int // bytes the entry takes
}

// entry reads the header of the entry at off; vary is the vary length of
// its run, for an entry that is not the run's first.
func (r *checkRing) entry(off, vary int) entry {
	var b [maxHeader]byte
	r.get(off, b[:min(len(b), len(r.buf))])
	d := decoder{b: b[:]}
	tag := d.uvarint()
	e := entry{first: tag&1 == 1}
	if z := tag >> 1; z < tagEscape {
		e.ddseq = int64(z>>1) ^ -int64(z&1)
	} else {
		e.ddseq = int64(binary.LittleEndian.Uint64(d.take(8)))
	}
	e.ddus = d.varint()
	e.vary = vary
	if e.first {
		e.key, e.vary = int(d.uvarint()), int(d.uvarint())
	}
	e.hdr = len(b) - len(d.b)
	e.size = e.hdr + e.key + e.vary
	return e
}

// add keeps the check numbered seq at us (Unix microseconds), encoded as
// key and vary, dropping the oldest check when n are kept.
func (r *checkRing) add(key, vary []byte, seq, us int64) {
	if r.count == r.n {
		r.drop()
	}
	ddseq, ddus := r.last.to(seq, us)
	repeat := r.count > 0 && len(vary) == r.runVary && r.has(r.runKey, key)
	var hb [maxHeader]byte
	hdr := binary.AppendVarint(appendTag(hb[:0], ddseq, !repeat), ddus)
	need := len(hdr) + len(vary)
	if !repeat {
		hdr = binary.AppendUvarint(binary.AppendUvarint(hdr, uint64(len(key))), uint64(len(vary)))
		need = len(hdr) + len(key) + len(vary)
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
	off := (r.head + r.used) % len(r.buf)
	r.put(off, hdr)
	off = (off + len(hdr)) % len(r.buf)
	if !repeat {
		r.put(off, key)
		r.runKey, r.runKeyLen, r.runVary = off, len(key), len(vary)
		off = (off + len(key)) % len(r.buf)
	}
	r.put(off, vary)
	r.used += need
	r.count++
	r.last = r.last.then(ddseq, ddus)
}

// has reports whether the bytes at off are key, with the run's key length.
func (r *checkRing) has(off int, key []byte) bool {
	if len(key) != r.runKeyLen {
		return false
	}
	n := min(len(key), len(r.buf)-off)
	return string(r.buf[off:off+n]) == string(key[:n]) && string(r.buf[:len(key)-n]) == string(key[n:])
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
		r.runKey = (r.runKey - r.head + len(r.buf)) % len(r.buf)
	}
	r.buf, r.head = nb, 0
}

// drop forgets the oldest check; its point becomes the base.
func (r *checkRing) drop() {
	e := r.entry(r.head, 0)
	key := (r.head + e.hdr) % len(r.buf)
	r.base = r.base.then(e.ddseq, e.ddus)
	next := (r.head + e.size) % len(r.buf)
	r.count--
	if r.count == 0 {
		r.head, r.used = next, 0
		return
	}
	n := r.entry(next, e.vary)
	if n.first {
		r.head, r.used = next, r.used-e.size
		return
	}
	// The next check becomes its run's first: its header, the run's key,
	// its own vary part, ending where it ended.
	var fb [128]byte
	f := binary.AppendVarint(appendTag(fb[:0], n.ddseq, true), n.ddus)
	f = binary.AppendUvarint(binary.AppendUvarint(f, uint64(e.key)), uint64(e.vary))
	hdr := len(f)
	f = append(f, make([]byte, e.key+e.vary)...)
	r.get(key, f[hdr:hdr+e.key])
	r.get((next+n.hdr)%len(r.buf), f[hdr+e.key:])
	end := next + n.size
	start := (end - len(f) + 2*len(r.buf)) % len(r.buf)
	r.put(start, f)
	if r.runKey == key {
		r.runKey = (start + hdr) % len(r.buf)
	}
	r.used -= e.size + n.size - len(f)
	r.head = start
}

// each calls fn with the checks from the (count-n)th on, oldest first:
// their key and vary parts, their sequence numbers and times. key and
// vary are only valid during the call.
func (r *checkRing) each(n int, fn func(key, vary []byte, seq, us int64)) {
	var key, vary []byte
	off, at := r.head, r.base
	keyOff, keyLen, varyLen, loaded := 0, 0, 0, -1
	for i := range r.count {
		e := r.entry(off, varyLen)
		at = at.then(e.ddseq, e.ddus)
		if e.first {
			keyOff, keyLen, varyLen = (off+e.hdr)%len(r.buf), e.key, e.vary
		}
		if i >= r.count-n {
			if loaded != keyOff {
				key = append(key[:0], make([]byte, keyLen)...)
				r.get(keyOff, key)
				loaded = keyOff
			}
			vary = append(vary[:0], make([]byte, varyLen)...)
			r.get((off+e.hdr+e.key)%len(r.buf), vary)
			fn(key, vary, at.seq, at.us)
		}
		off = (off + e.size) % len(r.buf)
	}
}
