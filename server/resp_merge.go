package server

import (
	"errors"
	"strconv"

	"github.com/fleetkv/fleetkv/resp"
	"github.com/fleetkv/fleetkv/store"
)

// The read-modify-writes behind RESP commands. Each is a field of the
// connection's respOp and records what the command's reply needs (the new
// counter, the old value, whether the key existed) while the store runs it,
// at once or when a pending read completes. The store may call a merger
// more than once for one operation (a lost race retries); the last call is
// the one that took effect, and each call overwrites what the previous one
// recorded.

// errSkip aborts a conditional SET: the store keeps the key as it was.
var errSkip = errors.New("condition not met")

var (
	errNotInteger = errors.New("ERR value is not an integer or out of range")
	errOverflow   = errors.New("ERR increment or decrement would overflow")
)

// setMode is SET's condition.
type setMode uint8

const (
	setAlways setMode = iota
	setNX             // only if absent
	setXX             // only if present
)

// setMerger is SET with NX, XX or GET: it replaces the value, or leaves it
// when the condition fails, and keeps a copy of the old value for GET.
type setMerger struct {
	mode    setMode
	get     bool
	existed bool
	old     []byte // the old value when get; reused across commands
}

var _ store.Merger = (*setMerger)(nil)

func (m *setMerger) InitialSize(input []byte) int { return len(input) }

func (m *setMerger) Initial(dst, input []byte) error {
	m.existed = false
	if m.mode == setXX {
		return errSkip
	}
	copy(dst, input)
	return nil
}

func (m *setMerger) MergedSize(old, input []byte) (int, error) { return len(input), nil }

func (m *setMerger) Merge(dst, old, input []byte) error {
	m.seen(old)
	if m.mode == setNX {
		return errSkip
	}
	copy(dst, input)
	return nil
}

func (m *setMerger) InPlace(v, input []byte) (int, bool, error) {
	m.seen(v)
	if m.mode == setNX {
		return 0, false, errSkip
	}
	if len(input) > cap(v) {
		return 0, false, nil
	}
	copy(v[:len(input)], input)
	return len(input), true, nil
}

func (m *setMerger) seen(old []byte) {
	m.existed = true
	if m.get {
		m.old = append(m.old[:0], old...)
	}
}

// incrMerger adds delta to a counter kept as a decimal string, as Redis
// does; an absent key counts as 0.
type incrMerger struct {
	delta  int64
	result int64
}

var _ store.Merger = (*incrMerger)(nil)

// counterCap is what a counter's record reserves: the longest int64.
const counterCap = 20

func (m *incrMerger) InitialSize([]byte) int { return decimalLen(m.delta) }

func (m *incrMerger) Initial(dst, _ []byte) error {
	m.result = m.delta
	strconv.AppendInt(dst[:0], m.delta, 10)
	return nil
}

func (m *incrMerger) MergedSize(old, _ []byte) (int, error) {
	n, err := m.add(old)
	if err != nil {
		return 0, err
	}
	return decimalLen(n), nil
}

func (m *incrMerger) Merge(dst, old, _ []byte) error {
	n, err := m.add(old)
	if err != nil {
		return err
	}
	m.result = n
	strconv.AppendInt(dst[:0], n, 10)
	return nil
}

func (m *incrMerger) InPlace(v, _ []byte) (int, bool, error) {
	n, err := m.add(v)
	if err != nil {
		return 0, false, err
	}
	size := decimalLen(n)
	if size > cap(v) {
		return 0, false, nil
	}
	m.result = n
	strconv.AppendInt(v[:0], n, 10)
	return size, true, nil
}

// Reserve implements store.Reserver: room for any int64, so that a counter
// is updated in place once its record is in the mutable region.
func (m *incrMerger) Reserve(n int) int { return max(n, counterCap) }

func (m *incrMerger) add(old []byte) (int64, error) {
	v, ok := resp.ParseInt(old)
	if !ok {
		return 0, errNotInteger
	}
	n := v + m.delta
	if (m.delta > 0 && n < v) || (m.delta < 0 && n > v) {
		return 0, errOverflow
	}
	return n, nil
}

func decimalLen(n int64) int {
	var b [counterCap]byte
	return len(strconv.AppendInt(b[:0], n, 10))
}

// appendMerger is store.Append that records the new length for APPEND's
// reply.
type appendMerger struct {
	store.Append
	length int
}

var _ store.Merger = (*appendMerger)(nil)

func (m *appendMerger) Initial(dst, input []byte) error {
	m.length = len(input)
	return m.Append.Initial(dst, input)
}

func (m *appendMerger) Merge(dst, old, input []byte) error {
	m.length = len(old) + len(input)
	return m.Append.Merge(dst, old, input)
}

func (m *appendMerger) InPlace(v, input []byte) (int, bool, error) {
	n, ok, err := m.Append.InPlace(v, input)
	if ok {
		m.length = n
	}
	return n, ok, err
}
