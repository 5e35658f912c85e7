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
// the ring (checkRing, ring.go) keeps each one as about 20 bytes for a
// healthy check of three probes, in one buffer per plugin:
//
//   - its sequence number and time as the difference from the check before
//     it in the ring (zigzag varints; the time to the microsecond), so a
//     check a second after the last takes three bytes, not nine;
//   - durations quantized to 16 bits (quantize): exact under 2048 ns,
//     within 1/2048 of their value above, up to 73 minutes;
//   - the few strings that repeat (states, error classes, the list of a
//     check's probe names) as one byte each through a symbol table;
//   - a probe that passed with one attempt as its flags and its duration,
//     three bytes; the check's latency not at all when it is its slowest
//     probe's duration, as it is unless a synthetic inference ran; error
//     texts and reasons in full.
//
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

// quantize maps d to 16 bits: a 5-bit exponent and an 11-bit mantissa,
// rounded to nearest. Durations under 2048 ns are exact; above, the error
// is at most 1/2048 of the value. Negative durations are 0; durations past
// maxQuantized (about 73 minutes) are maxQuantized.
func quantize(d time.Duration) uint16 {
	if d <= 0 {
		return 0
	}
	if d >= maxQuantized {
		return math.MaxUint16
	}
	v := uint64(d)
	if v < 1<<11 {
		return uint16(v)
	}
	e := bits.Len64(v) - 11 // v>>e has 11 significant bits
	m := (v + 1<<(e-1)) >> e
	if m == 1<<11 { // rounded up past the mantissa
		m, e = 1<<10, e+1
	}
	return uint16(e)<<11 | uint16(m)
}

// dequantize is the inverse of quantize, to its precision.
func dequantize(q uint16) time.Duration {
	e, m := uint(q>>11), uint64(q&(1<<11-1))
	return time.Duration(m << e)
}

// maxQuantized is the largest duration quantize keeps.
const maxQuantized = time.Duration(uint64(1<<11-1) << 31)

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

// point is a check's sequence number and time in Unix microseconds: the
// ring keeps each check's as the difference from the check before it.
type point struct{ seq, us int64 }

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

func appendQuantized(b []byte, d time.Duration) []byte {
	return binary.LittleEndian.AppendUint16(b, quantize(d))
}

// encodeCheck appends c to b as the check after prev; it returns c's
// point. c.Plugin is the ring's key and is not kept.
func (s *symbols) encodeCheck(b []byte, c CheckRecord, prev point) ([]byte, point) {
	at := point{seq: c.Seq, us: c.Time.UnixMicro()}
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
	b = append(b, flags)
	b = binary.AppendVarint(b, at.seq-prev.seq)
	b = binary.AppendVarint(b, at.us-prev.us)
	b = s.append(b, string(c.State))
	if flags&recSlowest == 0 {
		b = appendQuantized(b, c.Latency)
	}
	if flags&recFailed != 0 {
		b = s.append(s.append(b, c.Probe), string(c.Class))
	}
	if flags&recTTFT != 0 {
		b = appendQuantized(b, c.TTFT)
	}
	if flags&recTPS != 0 {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(c.TPS)))
	}
	if flags&recTimed != 0 {
		// The start as the time before the decision, and the duration
		// when it is not that.
		b = appendQuantized(b, span)
		if flags&recSpan == 0 {
			b = appendQuantized(b, c.Duration)
		}
	}
	b = s.appendNames(b, c.Probes)
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
		b = append(b, f)
		b = appendQuantized(b, p.Duration)
		if x == 0 {
			continue
		}
		b = append(b, x)
		if x&extClass != 0 {
			b = s.append(b, string(p.Class))
		}
		if x&extCounts != 0 {
			b = binary.AppendUvarint(b, uint64(max(p.Attempts, 0)))
			b = binary.AppendUvarint(b, uint64(max(p.Failures, 0)))
		}
		if x&extError != 0 {
			b = appendString(b, p.Error)
		}
		if x&extReason != 0 {
			b = appendString(b, p.Reason)
		}
	}
	return b, at
}

// advance returns the point of the check encoded in v, the one after
// prev, reading only its first bytes.
func advance(v []byte, prev point) point {
	d := decoder{b: v}
	d.byte()
	prev.seq += d.varint()
	prev.us += d.varint()
	return prev
}

// decodeCheck is the inverse of encodeCheck, to the precision it keeps: v
// is the check after prev. The input is always one of encodeCheck's: a
// short or malformed one is a bug and panics.
func (s *symbols) decodeCheck(plugin string, v []byte, prev point) CheckRecord {
	d := decoder{s: s, b: v}
	c := CheckRecord{Plugin: plugin}
	flags := d.byte()
	c.OK = flags&recOK != 0
	c.Seq = prev.seq + d.varint()
	c.Time = time.UnixMicro(prev.us + d.varint())
	c.State = State(d.sym())
	if flags&recSlowest == 0 {
		c.Latency = d.quantized()
	}
	if flags&recFailed != 0 {
		c.Probe, c.Class = d.sym(), probes.ErrorClass(d.sym())
	}
	if flags&recTTFT != 0 {
		c.TTFT = d.quantized()
	}
	if flags&recTPS != 0 {
		c.TPS = float64(math.Float32frombits(binary.LittleEndian.Uint32(d.take(4))))
	}
	if flags&recTimed != 0 {
		span := d.quantized()
		c.Started, c.Duration = c.Time.Add(-span), span
		if flags&recSpan == 0 {
			c.Duration = d.quantized()
		}
	}
	sym := d.byte()
	var key string
	if sym == symInline {
		key = string(d.take(int(d.uvarint())))
	} else {
		key = s.str[sym]
	}
	if names := s.namesOf(sym, key); len(names) > 0 {
		c.Probes = make([]ProbeOutcome, len(names))
		for i := range c.Probes {
			p := &c.Probes[i]
			p.Probe = names[i]
			f := d.byte()
			p.OK, p.Informational, p.Loading = f&outOK != 0, f&outInformational != 0, f&outLoading != 0
			p.Passive, p.Skipped = f&outPassive != 0, f&outSkipped != 0
			p.Duration = d.quantized()
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
	if len(d.b) != 0 {
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

func (d *decoder) quantized() time.Duration {
	return dequantize(binary.LittleEndian.Uint16(d.take(2)))
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
