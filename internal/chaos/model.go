package chaos

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/anishathalye/porcupine"
)

// The model the clients' history is checked against: a map of keys, each
// linearizable on its own, on servers that commit by checkpoints (CPR). A
// server killed with -9 comes back at its last checkpoint, so what was
// acknowledged but not yet durable may be undone: a crash may roll a key
// back to any value it held since its last durability mark, never before.
// A mark is a client's WaitDurable that covered a write: from then on no
// crash may undo that write.
//
// Operations whose outcome is unknown (the connection was lost, the call
// timed out) are in the history with an unknown output and no end: they
// may have taken effect at any time after their call, or never.

// Kind is an operation of the history.
type Kind uint8

const (
	Get     Kind = iota // a read: found, value
	Set                 // write a register's value
	Del                 // delete: found says whether it existed
	Incr                // add Delta to a counter (8-byte little-endian): N is the result
	Durable             // the write with id Ref is durable (a client's WaitDurable covered it)
	Crash               // a server was killed: any key may roll back to a value since its last mark
)

var kindNames = [...]string{"get", "set", "del", "incr", "durable", "crash"}

func (k Kind) String() string { return kindNames[k] }

// Input is one operation. Every write (Set, Del, Incr) has an id unique in
// the history, which Durable marks name.
type Input struct {
	Kind  Kind
	Key   string // "" for Crash: every key
	Val   string // Set's value
	Delta int64  // Incr's
	ID    int    // a write's id
	Ref   int    // Durable's write
}

// Output is what an operation answered.
type Output struct {
	Unknown bool // no answer: it may or may not have taken effect
	Found   bool
	Val     string
	N       int64
}

// entry is one value a key held: the write that made it (0: the start)
// and the value.
type entry struct {
	id      int
	present bool
	val     string
}

// state is one key's: the values since its last durability mark, oldest
// first, the last the current one; and the writes a crash undid (a mark
// for one of them is a durable write lost).
type state struct {
	hist    []entry
	dropped []int
}

func (s state) cur() entry { return s.hist[len(s.hist)-1] }

// with returns s with e as its current value (s is never changed: the
// checker keeps states).
func (s state) with(e entry) state {
	return state{hist: append(slices.Clip(s.hist), e), dropped: s.dropped}
}

// Model returns the porcupine model of the history: partitioned by key,
// every Crash in every partition.
func Model() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: partition,
		Init:      func() []any { return []any{state{hist: []entry{{}}}} },
		Step:      step,
		Equal: func(a, b any) bool {
			x, y := a.(state), b.(state)
			return slices.Equal(x.hist, y.hist) && slices.Equal(x.dropped, y.dropped)
		},
		DescribeOperation: func(in, out any) string {
			i, o := in.(Input), out.(Output)
			return fmt.Sprintf("%s(%s %q %+d #%d ref %d) -> %+v", i.Kind, i.Key, i.Val, i.Delta, i.ID, i.Ref, o)
		},
		DescribeState: func(s any) string { return fmt.Sprintf("%+v", s.(state)) },
	}
	return nm.ToModel()
}

// partition splits the history by key, each crash in every part.
func partition(h []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	var crashes []porcupine.Operation
	for _, o := range h {
		if in := o.Input.(Input); in.Kind == Crash {
			crashes = append(crashes, o)
		} else {
			byKey[in.Key] = append(byKey[in.Key], o)
		}
	}
	var out [][]porcupine.Operation
	for _, ops := range byKey {
		out = append(out, append(ops, crashes...))
	}
	return out
}

// step returns the states an operation may lead to from s (none: it
// cannot have answered out there).
func step(st, input, output any) []any {
	s, in, out := st.(state), input.(Input), output.(Output)
	cur := s.cur()
	switch in.Kind {
	case Get:
		if out.Found == cur.present && (!cur.present || out.Val == cur.val) {
			return []any{s}
		}
	case Set:
		return []any{s.with(entry{in.ID, true, in.Val})}
	case Del:
		if out.Unknown || out.Found == cur.present {
			return []any{s.with(entry{in.ID, false, ""})}
		}
	case Incr:
		n, ok := counter(cur)
		if ok && (out.Unknown || out.N == n+in.Delta) {
			return []any{s.with(entry{in.ID, true, string(binary.LittleEndian.AppendUint64(nil, uint64(n+in.Delta)))})}
		}
	case Durable:
		return durable(s, in.Ref)
	case Crash:
		return crash(s)
	}
	return nil
}

// counter reads a counter's value (absent: 0).
func counter(e entry) (int64, bool) {
	switch {
	case !e.present:
		return 0, true
	case len(e.val) == 8:
		return int64(binary.LittleEndian.Uint64([]byte(e.val))), true
	}
	return 0, false
}

// durable marks write ref durable: no crash goes back before it. A write a
// crash undid cannot be durable; one no longer in the history was passed
// by a later mark.
func durable(s state, ref int) []any {
	if slices.Contains(s.dropped, ref) {
		return nil
	}
	for i, e := range s.hist {
		if e.id == ref {
			return []any{state{hist: s.hist[i:], dropped: s.dropped}}
		}
	}
	return []any{s}
}

// crash returns a state for every value the key may come back with.
func crash(s state) []any {
	out := make([]any, 0, len(s.hist))
	for j := range s.hist {
		dropped := slices.Clip(s.dropped)
		for _, e := range s.hist[j+1:] {
			dropped = append(dropped, e.id)
		}
		out = append(out, state{hist: slices.Clip(s.hist[:j+1]), dropped: dropped})
	}
	return out
}
