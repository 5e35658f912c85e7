package health

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/vitals-dev/vitals/probes"
)

// The in-memory history keeps every plugin's last checks (256 by default,
// 25 600 for 100 plugins). A CheckRecord as the engine builds it, with its
// probe outcomes and their probe results, is about 1 KiB on the heap; the
// ring (checkRing, ring.go) keeps each one as 30 to 50 bytes in one
// buffer per plugin instead: integers as varints, the few strings that repeat (probe names, states, error
// classes) as one byte each through a symbol table, error texts in full.
// The probe results are dropped: neither the API nor the store shows them.

// Flags of an encoded check.
const (
	recOK = 1 << iota
	recFailed
	recTTFT
	recTPS
	recTimed
)

// Flags of an encoded probe outcome.
const (
	outOK = 1 << iota
	outInformational
	outError
	outLoading
	outPassive
	outSkipped
	outReason
)

// symbols interns the strings check records repeat. It holds at most 255;
// past that a string is written in full after the byte 255. Not safe for
// concurrent use: History calls it under its mutex.
type symbols struct {
	idx map[string]byte
	str []string
}

const symInline = 255

func (s *symbols) append(b []byte, v string) []byte {
	i, ok := s.idx[v]
	if !ok && len(s.str) < symInline {
		if s.idx == nil {
			s.idx = map[string]byte{}
		}
		i, ok = byte(len(s.str)), true
		s.idx[v] = i
		s.str = append(s.str, v)
	}
	if ok {
		return append(b, i)
	}
	return appendString(append(b, symInline), v)
}

func appendString(b []byte, v string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}

// encodeCheck appends c to b; c.Plugin is the ring's key and is not kept.
func (s *symbols) encodeCheck(b []byte, c CheckRecord) []byte {
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
	if !c.Started.IsZero() {
		flags |= recTimed
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, c.Seq)
	b = binary.AppendVarint(b, c.Time.UnixNano())
	b = s.append(b, string(c.State))
	b = binary.AppendVarint(b, int64(c.Latency))
	if flags&recFailed != 0 {
		b = s.append(s.append(b, c.Probe), string(c.Class))
	}
	if flags&recTTFT != 0 {
		b = binary.AppendVarint(b, int64(c.TTFT))
	}
	if flags&recTPS != 0 {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(c.TPS))
	}
	if flags&recTimed != 0 {
		// The start as the time before the decision, and the duration.
		b = binary.AppendVarint(b, c.Time.UnixNano()-c.Started.UnixNano())
		b = binary.AppendVarint(b, int64(c.Duration))
	}
	b = binary.AppendUvarint(b, uint64(len(c.Probes)))
	for _, p := range c.Probes {
		var f byte
		if p.OK {
			f |= outOK
		}
		if p.Informational {
			f |= outInformational
		}
		if p.Error != "" {
			f |= outError
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
		if p.Reason != "" {
			f |= outReason
		}
		b = append(b, f)
		b = s.append(b, p.Probe)
		b = s.append(b, string(p.Class))
		b = binary.AppendVarint(b, int64(p.Duration))
		b = binary.AppendUvarint(b, uint64(p.Attempts))
		b = binary.AppendUvarint(b, uint64(p.Failures))
		if f&outError != 0 {
			b = appendString(b, p.Error)
		}
		if f&outReason != 0 {
			b = appendString(b, p.Reason)
		}
	}
	return b
}

// decodeCheck is the inverse of encodeCheck. The input is always one of
// encodeCheck's: a short or malformed one is a bug and panics.
func (s *symbols) decodeCheck(plugin, v string) CheckRecord {
	d := decoder{s: s, b: v}
	c := CheckRecord{Plugin: plugin}
	flags := d.byte()
	c.OK = flags&recOK != 0
	c.Seq = d.varint()
	c.Time = time.Unix(0, d.varint())
	c.State = State(d.sym())
	c.Latency = time.Duration(d.varint())
	if flags&recFailed != 0 {
		c.Probe, c.Class = d.sym(), probes.ErrorClass(d.sym())
	}
	if flags&recTTFT != 0 {
		c.TTFT = time.Duration(d.varint())
	}
	if flags&recTPS != 0 {
		c.TPS = math.Float64frombits(binary.LittleEndian.Uint64([]byte(d.take(8))))
	}
	if flags&recTimed != 0 {
		c.Started = c.Time.Add(-time.Duration(d.varint()))
		c.Duration = time.Duration(d.varint())
	}
	if n := d.uvarint(); n > 0 {
		c.Probes = make([]ProbeOutcome, n)
		for i := range c.Probes {
			p := &c.Probes[i]
			f := d.byte()
			p.OK, p.Informational, p.Loading = f&outOK != 0, f&outInformational != 0, f&outLoading != 0
			p.Passive, p.Skipped = f&outPassive != 0, f&outSkipped != 0
			p.Probe, p.Class = d.sym(), probes.ErrorClass(d.sym())
			p.Duration = time.Duration(d.varint())
			p.Attempts, p.Failures = int(d.uvarint()), int(d.uvarint())
			if f&outError != 0 {
				p.Error = d.string()
			}
			if f&outReason != 0 {
				p.Reason = d.string()
			}
		}
	}
	if d.b != "" {
		panic("health: trailing bytes in an encoded check")
	}
	return c
}

type decoder struct {
	s *symbols
	b string
}

func (d *decoder) byte() byte {
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) take(n int) string {
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// next returns the bytes a varint can take at most.
func (d *decoder) next() []byte { return []byte(d.b[:min(len(d.b), binary.MaxVarintLen64)]) }

func (d *decoder) advance(n int) {
	if n <= 0 {
		panic("health: bad varint in an encoded check")
	}
	d.b = d.b[n:]
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.next())
	d.advance(n)
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.next())
	d.advance(n)
	return v
}

func (d *decoder) string() string { return d.take(int(d.uvarint())) }

func (d *decoder) sym() string {
	if i := d.byte(); i != symInline {
		return d.s.str[i]
	}
	return d.string()
}
