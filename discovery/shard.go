package discovery

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// MaxShards bounds shard.count.
const MaxShards = 1024

// ShardConfig splits the targets of N agents that share one config, so
// that each target is checked by exactly one of them:
//
//	shard: {count: 3, index: 0}   # this agent is shard 0 of 3
//	shard: {count: 3}             # the index is the StatefulSet pod ordinal,
//	                              # the hostname's -<n> suffix
//
// or VITALS_SHARD=0/3. Count 0 (the default) or 1 is no sharding.
type ShardConfig struct {
	Count int  `yaml:"count"`
	Index *int `yaml:"index"`
}

// EnvDecode reads VITALS_SHARD: "i/N".
func (c *ShardConfig) EnvDecode(s string) error {
	is, ns, ok := strings.Cut(strings.TrimSpace(s), "/")
	i, err1 := strconv.Atoi(is)
	n, err2 := strconv.Atoi(ns)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("%q: want index/count, e.g. 0/3", s)
	}
	*c = ShardConfig{Count: n, Index: &i}
	return nil
}

// Shard is this agent's part of the targets: index i of count. The zero
// Shard owns every target.
type Shard struct {
	Index, Count int
}

// Resolve checks the config and returns the shard, taking the index from
// hostname (a StatefulSet pod's name ends in -<ordinal>) when only the
// count is given. Its errors name the key below shard ("index: ...").
func (c ShardConfig) Resolve(hostname string) (Shard, error) {
	switch {
	case c.Count < 0 || c.Count > MaxShards:
		return Shard{}, fmt.Errorf("count: must be 0 to %d, got %d", MaxShards, c.Count)
	case c.Count <= 1 && c.Index != nil && *c.Index != 0:
		return Shard{}, fmt.Errorf("index: set without a count above 1")
	case c.Count <= 1:
		return Shard{}, nil
	case c.Index != nil:
		if *c.Index < 0 || *c.Index >= c.Count {
			return Shard{}, fmt.Errorf("index: must be 0 to %d (count-1), got %d", c.Count-1, *c.Index)
		}
		return Shard{Index: *c.Index, Count: c.Count}, nil
	}
	i, ok := ordinal(hostname)
	if !ok {
		return Shard{}, fmt.Errorf("index: not set, and the hostname %q ends in no -<ordinal> to take it from", hostname)
	}
	if i >= c.Count {
		return Shard{}, fmt.Errorf("index: the hostname %q gives ordinal %d, past count %d", hostname, i, c.Count)
	}
	return Shard{Index: i, Count: c.Count}, nil
}

// ordinal reads the -<n> suffix of a StatefulSet pod's hostname.
func ordinal(hostname string) (int, bool) {
	h, _, _ := strings.Cut(hostname, ".")
	k := strings.LastIndexByte(h, '-')
	if k < 0 || k == len(h)-1 {
		return 0, false
	}
	n, err := strconv.Atoi(h[k+1:])
	if err != nil || n < 0 || strconv.Itoa(n) != h[k+1:] {
		return 0, false
	}
	return n, true
}

// Enabled reports whether the shard owns only part of the targets.
func (s Shard) Enabled() bool { return s.Count > 1 }

// String is "i/N", or "" without sharding.
func (s Shard) String() string {
	if !s.Enabled() {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.Index, s.Count)
}

// Owns reports whether this shard checks the target with this id. It is
// rendezvous (highest random weight) hashing: every shard scores the id
// with each shard's number and the highest score wins, so all agents
// agree without talking, and going from N to N+1 shards moves only the
// targets the new shard wins, about 1/(N+1) of them.
func (s Shard) Owns(id string) bool {
	return !s.Enabled() || Owner(id, s.Count) == s.Index
}

// Owner returns the shard of count that owns id.
func Owner(id string, count int) int {
	best, owner := uint64(0), 0
	for i := range count {
		if w := weight(id, i); i == 0 || w > best {
			best, owner = w, i
		}
	}
	return owner
}

// weight is the score of id on shard i: FNV-1a of both, then a 64-bit
// finalizer so that nearby inputs spread over the whole range.
func weight(id string, i int) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	h.Write([]byte{0, byte(i), byte(i >> 8), byte(i >> 16), byte(i >> 24)})
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
