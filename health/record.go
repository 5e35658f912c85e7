package health

import (
	"encoding/binary"
	"math"
	"math/bits"
	"time"

	"github.com/vitals-dev/vitals/probes"
)

// The in-memory history keeps every plugin's last checks (256 by default,
// 256 000 for 1000 plugins). A CheckRecord as the engine builds it, with
// its probe outcomes and their probe results, is about 1 KiB on the heap;
// the ring (checkRing, ring.go) keeps a healthy check of three probes in
// about 10 bytes, in one buffer per plugin. A check is encoded in two
// parts:
//
//   - its key: its flags, its state, its failed probe, the list of its
//     probe names, and each probe's flags, error class, attempts, error
//     text and reason. The few strings that repeat (states, error classes,
//     the list of names) are one byte each through a symbol table; a probe
//     that passed with one attempt is its flags byte alone. The ring keeps
//     a key once for a run of checks that have the same one, as a server's
//     checks do while nothing changes.
//   - what varies from check to check: the tokens per second when a
//     synthetic inference ran, then its durations, each quantized to 12
//     bits (quantize: exact under 64 ns, within 1/128 of their value
//     above) and two packed in three bytes: its start as the time before
//     its decision, the time to first token when a synthetic inference
//     ran, each probe's. The check's latency is not kept when it is its
//     slowest probe's duration, as it is unless a synthetic inference ran.
//
// The ring keeps the sequence number and the time (to the microsecond).
// The probe results are dropped: neither the API nor the store shows them.

// Flags of an encoded check.
const (
	recOK = 1 << iota
	recFailed
	recTTFT
	recTPS
	recTimed
	// recSpan: the duration is the time from Started to Time, kept once.
	recSpan
	// recSlowest: the latency is the slowest deciding probe's duration
	// (the engine's latency when no synthetic inference ran), not kept.
	recSlowest
)

// Flags of an encoded probe outcome.
const (
	outOK = 1 << iota
	outInformational
	outLoading
	outPassive
	outSkipped
	// outExtra: a second flags byte follows (ext*).
	outExtra
)

// Second flags of a probe outcome that has more than a verdict and a
// duration.
const (
	extError = 1 << iota
	extReason
	extClass
	// extCounts: attempts and failures follow; without it the probe made
	// one attempt, which failed when the probe did not pass.
	extCounts
)

// quantize maps d to 12 bits, a float of 6 bits of exponent and 7 of
// significand whose leading one is not kept, rounded to nearest:
// durations under 64 ns are exact, longer ones within 1/128 of their
// value (a check's durations vary between checks by far more), in order.
// Negative durations are 0; past maxQuantized (290 years) they are
// maxQuantized.
func quantize(d time.Duration) uint16 {
	if d <= 0 {
		return 0
	}
	v := uint64(d)
	if v < 1<<6 {
		return uint16(v)
	}
	shift := bits.Len64(v) - 7 // v>>shift has 7 significant bits
	m := v
	if shift > 0 {
		m = (v + 1<<(shift-1)) >> shift
	}
	if m == 1<<7 { // rounded up past the significand
		m, shift = 1<<6, shift+1
	}
	e := uint64(shift + 1)
	if e > maxExponent {
		return maxCode
	}
	return uint16(e<<6 | (m - 1<<6))
}

// dequantize is the inverse of quantize, to its precision.
func dequantize(q uint16) time.Duration {
	e, m := uint(q>>6), uint64(q&(1<<6-1))
	if e == 0 {
		return time.Duration(m)
	}
	return time.Duration((1<<6 | m) << (e - 1))
}

// The largest exponent whose durations fit in an int64, its largest code
// and the duration that is.
const (
	maxExponent  = 57
	maxCode      = maxExponent<<6 | (1<<6 - 1)
	maxQuantized = time.Duration((1<<7 - 1) << (maxExponent - 1))
)

// packCodes appends the 12-bit codes qs to b, two in three bytes and the
// last in two when there is an odd number of them.
func packCodes(b []byte, qs []uint16) []byte {
	for i := 0; i+1 < len(qs); i += 2 {
		x, y := qs[i], qs[i+1]
		b = append(b, byte(x), byte(x>>8)|byte(y<<4), byte(y>>4))
	}
	if len(qs)%2 == 1 {
		x := qs[len(qs)-1]
		b = append(b, byte(x), byte(x>>8))
	}
	return b
}

// packedLen is the length of n packed codes.
func packedLen(n int) int { return 3*(n/2) + 2*(n%2) }

// packedCodes reads packCodes' codes, one at a time.
type packedCodes struct {
	b []byte
	i int
}

func (c *packedCodes) next() time.Duration {
	off := 3 * (c.i / 2)
	var q uint16
	if c.i%2 == 0 {
		q = uint16(c.b[off]) | uint16(c.b[off+1]&0x0f)<<8
	} else {
		q = uint16(c.b[off+1])>>4 | uint16(c.b[off+2])<<4
	}
	c.i++
	return dequantize(q)
}

// keptTransition is t as the ring keeps it: its times and duration to the
// precision of the checks' (the microsecond, durations quantized), so a
// transition's times stay those of the check that made it.
func keptTransition(t Transition) Transition {
	at := time.UnixMicro(t.Time.UnixMicro())
	if !t.Started.IsZero() {
		span := t.Time.Sub(t.Started)
		if span == t.Duration {
			t.Duration = dequantize(quantize(span))
		} else {
			t.Duration = dequantize(quantize(t.Duration))
		}
		t.Started = at.Add(-dequantize(quantize(span)))
	}
	t.Time = at
	return t
}

// symbols interns the strings check records repeat. It holds at most 255;
// past that a string is written in full after the byte 255. Not safe for
// concurrent use: History calls it under its mutex.
type symbols struct {
	idx map[string]byte
	str []string
	// names is a check's list of probe names, by the symbol of their
	// encoding (appendNames).
	names map[byte][]string
}

const symInline = 255

func (s *symbols) append(b []byte, v string) []byte {
	i, ok := s.intern(v)
	if ok {
		return append(b, i)
	}
	return appendString(append(b, symInline), v)
}

func (s *symbols) intern(v string) (byte, bool) {
	i, ok := s.idx[v]
	if !ok && len(s.str) < symInline {
		if s.idx == nil {
			s.idx = map[string]byte{}
		}
		i, ok = byte(len(s.str)), true
		s.idx[v] = i
		s.str = append(s.str, v)
	}
	return i, ok
}

// appendNames appends the probe names of ps as one symbol: the names
// each after its length, interned as one string.
func (s *symbols) appendNames(b []byte, ps []ProbeOutcome) []byte {
	var key []byte
	for _, p := range ps {
		key = appendString(key, p.Probe)
	}
	return s.append(b, string(key))
}

// namesOf returns the names of the symbol v, decoded once and kept.
func (s *symbols) namesOf(sym byte, v string) []string {
	if n, ok := s.names[sym]; ok && sym != symInline {
		return n
	}
	var out []string
	for d := (decoder{b: []byte(v)}); len(d.b) > 0; {
		out = append(out, d.string())
	}
	if sym != symInline {
		if s.names == nil {
			s.names = map[byte][]string{}
		}
		s.names[sym] = out
	}
	return out
}

func appendString(b []byte, v string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}

// encodeCheck appends c to key and vary, split for the ring's runs
// (ring.go): vary is what changes from one check to the next when nothing
// else does, the durations, latencies and tokens per second, of a length
// key decides; key is all the rest: flags, state, the failed probe, the
// probe names and each probe's flags, error and reason. c.Plugin is the
// ring's key, and c.Seq and c.Time the ring's own: neither is in them.
func (s *symbols) encodeCheck(key, vary []byte, c CheckRecord) ([]byte, []byte) {
	var flags byte
	if c.OK {
		flags |= recOK
	}
	if c.Probe != "" || c.Class != "" {
		flags |= recFailed
	}
	if c.TTFT != 0 {
		flags |= recTTFT
	}
	if c.TPS != 0 {
		flags |= recTPS
	}
	span := c.Time.Sub(c.Started)
	if !c.Started.IsZero() {
		flags |= recTimed
		if span == c.Duration {
			flags |= recSpan
		}
	}
	if len(c.Probes) > 0 && c.Latency == slowest(c.Probes) {
		flags |= recSlowest
	}
	key = append(key, flags)
	key = s.append(key, string(c.State))
	if flags&recTPS != 0 {
		vary = binary.LittleEndian.AppendUint32(vary, math.Float32bits(float32(c.TPS)))
	}
	var room [12]uint16
	qs := room[:0]
	if flags&recSlowest == 0 {
		qs = append(qs, quantize(c.Latency))
	}
	if flags&recFailed != 0 {
		key = s.append(s.append(key, c.Probe), string(c.Class))
	}
	if flags&recTTFT != 0 {
		qs = append(qs, quantize(c.TTFT))
	}
	if flags&recTimed != 0 {
		// The start as the time before the decision, and the duration
		// when it is not that.
		qs = append(qs, quantize(span))
		if flags&recSpan == 0 {
			qs = append(qs, quantize(c.Duration))
		}
	}
	key = s.appendNames(key, c.Probes)
	for _, p := range c.Probes {
		var f, x byte
		if p.OK {
			f |= outOK
		}
		if p.Informational {
			f |= outInformational
		}
		if p.Loading {
			f |= outLoading
		}
		if p.Passive {
			f |= outPassive
		}
		if p.Skipped {
			f |= outSkipped
		}
		if p.Error != "" {
			x |= extError
		}
		if p.Reason != "" {
			x |= extReason
		}
		if p.Class != "" {
			x |= extClass
		}
		if p.Attempts != 1 || (p.Failures == 0) != p.OK || p.Failures > 1 {
			x |= extCounts
		}
		if x != 0 {
			f |= outExtra
		}
		key = append(key, f)
		qs = append(qs, quantize(p.Duration))
		if x == 0 {
			continue
		}
		key = append(key, x)
		if x&extClass != 0 {
			key = s.append(key, string(p.Class))
		}
		if x&extCounts != 0 {
			key = binary.AppendUvarint(key, uint64(max(p.Attempts, 0)))
			key = binary.AppendUvarint(key, uint64(max(p.Failures, 0)))
		}
		if x&extError != 0 {
			key = appendString(key, p.Error)
		}
		if x&extReason != 0 {
			key = appendString(key, p.Reason)
		}
	}
	return key, packCodes(vary, qs)
}

// decodeCheck is the inverse of encodeCheck, to the precision it keeps,
// for the check of plugin numbered seq, decided at us (Unix
// microseconds). The input is always one of encodeCheck's: a short or
// malformed one is a bug and panics.
func (s *symbols) decodeCheck(plugin string, key, vary []byte, seq, us int64) CheckRecord {
	d := decoder{s: s, b: key}
	c := CheckRecord{Plugin: plugin, Seq: seq, Time: time.UnixMicro(us)}
	flags := d.byte()
	c.OK = flags&recOK != 0
	c.State = State(d.sym())
	if flags&recTPS != 0 {
		c.TPS = float64(math.Float32frombits(binary.LittleEndian.Uint32(vary)))
		vary = vary[4:]
	}
	v := packedCodes{b: vary}
	if flags&recSlowest == 0 {
		c.Latency = v.next()
	}
	if flags&recFailed != 0 {
		c.Probe, c.Class = d.sym(), probes.ErrorClass(d.sym())
	}
	if flags&recTTFT != 0 {
		c.TTFT = v.next()
	}
	if flags&recTimed != 0 {
		span := v.next()
		c.Started, c.Duration = c.Time.Add(-span), span
		if flags&recSpan == 0 {
			c.Duration = v.next()
		}
	}
	sym := d.byte()
	var names string
	if sym == symInline {
		names = string(d.take(int(d.uvarint())))
	} else {
		names = s.str[sym]
	}
	if names := s.namesOf(sym, names); len(names) > 0 {
		c.Probes = make([]ProbeOutcome, len(names))
		for i := range c.Probes {
			p := &c.Probes[i]
			p.Probe = names[i]
			f := d.byte()
			p.OK, p.Informational, p.Loading = f&outOK != 0, f&outInformational != 0, f&outLoading != 0
			p.Passive, p.Skipped = f&outPassive != 0, f&outSkipped != 0
			p.Duration = v.next()
			p.Attempts = 1
			if !p.OK {
				p.Failures = 1
			}
			if f&outExtra == 0 {
				continue
			}
			x := d.byte()
			if x&extClass != 0 {
				p.Class = probes.ErrorClass(d.sym())
			}
			if x&extCounts != 0 {
				p.Attempts, p.Failures = int(d.uvarint()), int(d.uvarint())
			}
			if x&extError != 0 {
				p.Error = d.string()
			}
			if x&extReason != 0 {
				p.Reason = d.string()
			}
		}
	}
	if flags&recSlowest != 0 {
		// The slowest of the kept durations is the kept slowest one:
		// quantize keeps their order.
		c.Latency = slowest(c.Probes)
	}
	if len(d.b) != 0 || packedLen(v.i) != len(v.b) {
		panic("health: trailing bytes in an encoded check")
	}
	return c
}

// slowest is the longest duration of the probes that decide the state, 0
// when none does.
func slowest(ps []ProbeOutcome) time.Duration {
	var d time.Duration
	for _, p := range ps {
		if !p.Informational {
			d = max(d, p.Duration)
		}
	}
	return d
}

type decoder struct {
	s *symbols
	b []byte
}

func (d *decoder) byte() byte {
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) take(n int) []byte {
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		panic("health: bad varint in an encoded check")
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		panic("health: bad varint in an encoded check")
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.take(int(d.uvarint()))) }

func (d *decoder) sym() string {
	if i := d.byte(); i != symInline {
		return d.s.str[i]
	}
	return d.string()
}
