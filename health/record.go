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
// about 13 bytes, in one buffer per plugin. A check is encoded in two
// parts:
//
//   - its key: its flags, its state, its failed probe, the list of its
//     probe names, and each probe's flags, error class, attempts, error
//     text and reason. The few strings that repeat (states, error classes,
//     the list of names) are one byte each through a symbol table; a probe
//     that passed with one attempt is its flags byte alone. The ring keeps
//     a key once for a run of checks that have the same one, as a server's
//     checks do while nothing changes.
//   - what varies from check to check: its durations quantized to 16 bits
//     (quantize: exact under 2048 ns, within 1/2048 of their value above,
//     up to 73 minutes), its start as the time before its decision, the
//     time to first token and tokens per second when a synthetic
//     inference ran. The check's latency is not kept when it is its
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
	if flags&recSlowest == 0 {
		vary = appendQuantized(vary, c.Latency)
	}
	if flags&recFailed != 0 {
		key = s.append(s.append(key, c.Probe), string(c.Class))
	}
	if flags&recTTFT != 0 {
		vary = appendQuantized(vary, c.TTFT)
	}
	if flags&recTPS != 0 {
		vary = binary.LittleEndian.AppendUint32(vary, math.Float32bits(float32(c.TPS)))
	}
	if flags&recTimed != 0 {
		// The start as the time before the decision, and the duration
		// when it is not that.
		vary = appendQuantized(vary, span)
		if flags&recSpan == 0 {
			vary = appendQuantized(vary, c.Duration)
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
		vary = appendQuantized(vary, p.Duration)
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
	return key, vary
}

// decodeCheck is the inverse of encodeCheck, to the precision it keeps,
// for the check of plugin numbered seq, decided at us (Unix
// microseconds). The input is always one of encodeCheck's: a short or
// malformed one is a bug and panics.
func (s *symbols) decodeCheck(plugin string, key, vary []byte, seq, us int64) CheckRecord {
	d, v := decoder{s: s, b: key}, decoder{b: vary}
	c := CheckRecord{Plugin: plugin, Seq: seq, Time: time.UnixMicro(us)}
	flags := d.byte()
	c.OK = flags&recOK != 0
	c.State = State(d.sym())
	if flags&recSlowest == 0 {
		c.Latency = v.quantized()
	}
	if flags&recFailed != 0 {
		c.Probe, c.Class = d.sym(), probes.ErrorClass(d.sym())
	}
	if flags&recTTFT != 0 {
		c.TTFT = v.quantized()
	}
	if flags&recTPS != 0 {
		c.TPS = float64(math.Float32frombits(binary.LittleEndian.Uint32(v.take(4))))
	}
	if flags&recTimed != 0 {
		span := v.quantized()
		c.Started, c.Duration = c.Time.Add(-span), span
		if flags&recSpan == 0 {
			c.Duration = v.quantized()
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
			p.Duration = v.quantized()
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
	if len(d.b) != 0 || len(v.b) != 0 {
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
