package chaos

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/anishathalye/porcupine"
)

// A scripted history: each operation at [t, t+1) in the order written,
// unless it is unknown (no end).
type script []porcupine.Operation

func (s *script) add(in Input, out Output) {
	t := int64(2 * len(*s))
	ret := t + 1
	if out.Unknown {
		ret = math.MaxInt64
	}
	*s = append(*s, porcupine.Operation{ClientId: 0, Input: in, Call: t, Output: out, Return: ret})
}

func (s *script) set(id int, v string) { s.add(Input{Kind: Set, Key: "k", Val: v, ID: id}, Output{}) }
func (s *script) get(found bool, v string) {
	s.add(Input{Kind: Get, Key: "k"}, Output{Found: found, Val: v})
}
func (s *script) mark(ref int) { s.add(Input{Kind: Durable, Key: "k", Ref: ref}, Output{}) }
func (s *script) crash()       { s.add(Input{Kind: Crash}, Output{}) }

func TestModel(t *testing.T) {
	le := func(n int64) string { return string(binary.LittleEndian.AppendUint64(nil, uint64(n))) }
	cases := []struct {
		name string
		ok   bool
		ops  func(s *script)
	}{
		{"read your write", true, func(s *script) { s.get(false, ""); s.set(1, "a"); s.get(true, "a") }},
		{"stale read", false, func(s *script) { s.set(1, "a"); s.set(2, "b"); s.get(true, "a") }},
		{"a crash undoes what no mark covers", true, func(s *script) {
			s.set(1, "a")
			s.mark(1)
			s.set(2, "b")
			s.get(true, "b")
			s.crash()
			s.get(true, "a")
			s.set(3, "c")
			s.get(true, "c")
		}},
		{"a crash may undo nothing", true, func(s *script) { s.set(1, "a"); s.crash(); s.get(true, "a") }},
		{"a crash never undoes a mark's write", false, func(s *script) {
			s.set(1, "a")
			s.set(2, "b")
			s.mark(2)
			s.crash()
			s.get(true, "a")
		}},
		{"a crash never goes before the mark", false, func(s *script) { s.set(1, "a"); s.mark(1); s.crash(); s.get(false, "") }},
		{"a mark of an undone write is a lost write", false, func(s *script) {
			s.set(1, "a")
			s.set(2, "b")
			s.crash()
			s.get(true, "a")
			s.mark(2)
		}},
		{"no value comes back from the dead", false, func(s *script) {
			s.set(1, "a")
			s.crash()
			s.get(false, "")
			s.get(true, "a")
		}},
		{"an unknown write may land", true, func(s *script) {
			s.add(Input{Kind: Set, Key: "k", Val: "a", ID: 1}, Output{Unknown: true})
			s.get(false, "")
			s.get(true, "a")
		}},
		{"an unknown write lands once", false, func(s *script) {
			s.add(Input{Kind: Set, Key: "k", Val: "a", ID: 1}, Output{Unknown: true})
			s.get(true, "a")
			s.set(2, "b")
			s.get(true, "b")
			s.get(true, "a")
		}},
		{"counters", true, func(s *script) {
			s.add(Input{Kind: Incr, Key: "k", Delta: 2, ID: 1}, Output{N: 2})
			s.add(Input{Kind: Incr, Key: "k", Delta: 3, ID: 2}, Output{Unknown: true})
			s.add(Input{Kind: Incr, Key: "k", Delta: 1, ID: 3}, Output{N: 6})
			s.get(true, le(6))
			s.add(Input{Kind: Del, Key: "k", ID: 4}, Output{Found: true})
			s.add(Input{Kind: Del, Key: "k", ID: 5}, Output{Found: false})
			s.add(Input{Kind: Incr, Key: "k", Delta: 1, ID: 6}, Output{N: 1})
		}},
		{"a counter's sum is checked", false, func(s *script) {
			s.add(Input{Kind: Incr, Key: "k", Delta: 2, ID: 1}, Output{N: 2})
			s.add(Input{Kind: Incr, Key: "k", Delta: 1, ID: 2}, Output{N: 2})
		}},
		{"delete says whether it existed", false, func(s *script) { s.set(1, "a"); s.add(Input{Kind: Del, Key: "k", ID: 2}, Output{Found: false}) }},
	}
	for _, c := range cases {
		var s script
		c.ops(&s)
		if got := porcupine.CheckOperations(Model(), s); got != c.ok {
			t.Errorf("%s: linearizable = %v, want %v", c.name, got, c.ok)
		}
	}
}

// TestModelPartitions: keys are checked apart, and a crash reaches every
// key.
func TestModelPartitions(t *testing.T) {
	h := []porcupine.Operation{
		{Input: Input{Kind: Set, Key: "a", Val: "1", ID: 1}, Output: Output{}, Call: 0, Return: 1},
		{Input: Input{Kind: Set, Key: "b", Val: "2", ID: 2}, Output: Output{}, Call: 0, Return: 1},
		{Input: Input{Kind: Crash}, Output: Output{}, Call: 2, Return: 3},
		{Input: Input{Kind: Get, Key: "a"}, Output: Output{Found: false}, Call: 4, Return: 5},
		{Input: Input{Kind: Get, Key: "b"}, Output: Output{Found: true, Val: "2"}, Call: 4, Return: 5},
	}
	if parts := partition(h); len(parts) != 2 || len(parts[0]) != 3 || len(parts[1]) != 3 {
		t.Fatalf("partitions %v", parts)
	}
	if !porcupine.CheckOperations(Model(), h) {
		t.Fatal("a crash that undoes one key's write and not another's is allowed")
	}
}
