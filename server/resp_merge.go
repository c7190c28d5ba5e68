package server

import (
	"encoding/binary"
	"errors"
	"strconv"

	"github.com/fleetkv/fleetkv/resp"
	"github.com/fleetkv/fleetkv/store"
)

// The merges behind RESP commands that the store's built-in ones do not
// cover. Conditions (NX, XX), what the key held (GETDEL, SET GET, DEL's
// count) and the new value (INCR) come from the store's Update, which
// decides and reports in the same operation that writes; a merger records
// only what Update does not return (APPEND's new length, without copying
// the value).

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

// cond is the store condition of a SET mode.
func (m setMode) cond() store.Cond {
	switch m {
	case setNX:
		return store.IfAbsent
	case setXX:
		return store.IfPresent
	}
	return store.Always
}

// written reports whether SET with mode m wrote, given whether the key
// existed.
func (m setMode) written(existed bool) bool {
	return m == setAlways || (m == setNX) != existed
}

// setOptions are SET's parsed options.
type setOptions struct {
	mode setMode
	get  bool
}

// decimalAdd adds the little-endian int64 input to a counter kept as a
// decimal string, as Redis does; an absent key counts as 0. It keeps no
// state: the new value comes back through Update's WantNew.
type decimalAdd struct{}

var _ store.Merger = decimalAdd{}

func (decimalAdd) InitialSize(input []byte) int { return decimalLen(deltaOf(input)) }

func (decimalAdd) Initial(dst, input []byte) error {
	strconv.AppendInt(dst[:0], deltaOf(input), 10)
	return nil
}

func (decimalAdd) MergedSize(old, input []byte) (int, error) {
	n, err := addDecimal(old, input)
	if err != nil {
		return 0, err
	}
	return decimalLen(n), nil
}

func (decimalAdd) Merge(dst, old, input []byte) error {
	n, err := addDecimal(old, input)
	if err != nil {
		return err
	}
	strconv.AppendInt(dst[:0], n, 10)
	return nil
}

func (decimalAdd) InPlace(v, input []byte) (int, bool, error) {
	n, err := addDecimal(v, input)
	if err != nil {
		return 0, false, err
	}
	size := decimalLen(n)
	if size > cap(v) {
		return 0, false, nil
	}
	strconv.AppendInt(v[:0], n, 10)
	return size, true, nil
}

// Reserve implements store.Reserver: room for any int64, so that a counter
// is updated in place once its record is in the mutable region.
func (decimalAdd) Reserve(n int) int { return max(n, counterCap) }

// deltaOf reads a decimalAdd input.
func deltaOf(input []byte) int64 { return int64(binary.LittleEndian.Uint64(input)) }

func addDecimal(old, input []byte) (int64, error) {
	v, ok := resp.ParseInt(old)
	if !ok {
		return 0, errNotInteger
	}
	d := deltaOf(input)
	n := v + d
	if (d > 0 && n < v) || (d < 0 && n > v) {
		return 0, errOverflow
	}
	return n, nil
}

// counterCap is what a counter's record reserves: the longest int64.
const counterCap = 20

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
