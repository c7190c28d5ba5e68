package cluster

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"github.com/fleetkv/fleetkv/keyhash"
)

// Slots is the number of slots (Redis Cluster's): the unit of ownership.
const Slots = keyhash.Slots

// Range is the slots First..Last, both included.
type Range struct {
	First uint16 `json:"first"`
	Last  uint16 `json:"last"`
}

// Len returns how many slots r holds.
func (r Range) Len() int { return int(r.Last) - int(r.First) + 1 }

func (r Range) String() string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

func (r Range) valid() bool { return r.First <= r.Last && r.Last < Slots }

// ParseRanges parses a list of slots and ranges, "0-99,200,300-400", as
// operators write them.
func ParseRanges(s string) ([]Range, error) {
	var out []Range
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := parseSlot(lo)
		if err != nil {
			return nil, err
		}
		last := first
		if isRange {
			if last, err = parseSlot(hi); err != nil {
				return nil, err
			}
		}
		r := Range{first, last}
		if !r.valid() {
			return nil, fmt.Errorf("cluster: slot range %q: first above last", part)
		}
		out = append(out, r)
	}
	return out, nil
}

// FormatRanges writes rs as ParseRanges reads them, "0-99,200"; "" for none.
func FormatRanges(rs []Range) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

func parseSlot(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n >= Slots {
		return 0, fmt.Errorf("cluster: slot %q: want a number in 0..%d", s, Slots-1)
	}
	return uint16(n), nil
}

// SlotSet is a set of slots: a bitmap of 16384 bits (2 KiB), so that a
// loop checks an operation's slot with one load.
type SlotSet [Slots / 64]uint64

// Has reports whether slot s is in the set.
func (t *SlotSet) Has(s uint16) bool { return t[s/64&(Slots/64-1)]&(1<<(s%64)) != 0 }

// Add adds every slot of r.
func (t *SlotSet) Add(r Range) { t.set(r, true) }

// Remove removes every slot of r.
func (t *SlotSet) Remove(r Range) { t.set(r, false) }

func (t *SlotSet) set(r Range, on bool) {
	for s := int(r.First); s <= int(r.Last); s++ {
		if on {
			t[s/64] |= 1 << (s % 64)
		} else {
			t[s/64] &^= 1 << (s % 64)
		}
	}
}

// Count returns how many slots the set holds.
func (t *SlotSet) Count() int {
	n := 0
	for _, w := range t {
		n += bits.OnesCount64(w)
	}
	return n
}

// Ranges returns the set as sorted, maximal ranges.
func (t *SlotSet) Ranges() []Range {
	var out []Range
	for s := 0; s < Slots; s++ {
		if !t.Has(uint16(s)) {
			continue
		}
		first := s
		for s+1 < Slots && t.Has(uint16(s+1)) {
			s++
		}
		out = append(out, Range{uint16(first), uint16(s)})
	}
	return out
}

// AllSlots returns the set of every slot.
func AllSlots() *SlotSet {
	var t SlotSet
	for i := range t {
		t[i] = ^uint64(0)
	}
	return &t
}

// errNoSlots is returned for an empty list of slots.
var errNoSlots = errors.New("cluster: no slots given")
