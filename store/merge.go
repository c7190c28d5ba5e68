package store

import "encoding/binary"

// Merger defines a read-modify-write. The store calls it with log memory: it
// must not keep references to any slice after it returns, and must not
// allocate if RMW is to stay allocation-free. A method that returns an error
// must leave the value it was given as it found it (InPlace) or may leave
// dst half written (Initial, Merge): the store then keeps the key's old
// value, or its absence.
type Merger interface {
	// InitialSize is the size of the value RMW creates for an absent key.
	InitialSize(input []byte) int
	// Initial writes that value into dst, len(dst) == InitialSize(input).
	Initial(dst, input []byte) error
	// MergedSize is the size of the value that merging input into old gives.
	MergedSize(old, input []byte) (int, error)
	// Merge writes that value into dst; dst never overlaps old.
	Merge(dst, old, input []byte) error
	// InPlace merges input into v, whose capacity the record reserves,
	// when the result fits in cap(v), and returns its length; ok is false,
	// with v untouched, when it does not fit.
	InPlace(v, input []byte) (n int, ok bool, err error)
}

// Reserver is an optional Merger extension: Reserve returns the capacity to
// reserve in a new record for a merged value of n bytes, so that the next
// merges can happen in place instead of copying the record again.
type Reserver interface {
	Reserve(n int) int
}

// Int64Add adds a little-endian int64 input to a little-endian int64 value
// (YCSB-F's read-modify-write); an absent key starts at the input.
type Int64Add struct{}

// InitialSize implements Merger.
func (Int64Add) InitialSize([]byte) int { return 8 }

// Initial implements Merger.
func (Int64Add) Initial(dst, input []byte) error {
	binary.LittleEndian.PutUint64(dst, uint64(int64Input(input)))
	return nil
}

// MergedSize implements Merger.
func (Int64Add) MergedSize(old, _ []byte) (int, error) {
	if len(old) != 8 {
		return 0, ErrNotInt64
	}
	return 8, nil
}

// Merge implements Merger.
func (Int64Add) Merge(dst, old, input []byte) error {
	if len(old) != 8 {
		return ErrNotInt64
	}
	binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(old)+uint64(int64Input(input)))
	return nil
}

// InPlace implements Merger.
func (Int64Add) InPlace(v, input []byte) (int, bool, error) {
	if len(v) != 8 {
		return 0, false, ErrNotInt64
	}
	binary.LittleEndian.PutUint64(v, binary.LittleEndian.Uint64(v)+uint64(int64Input(input)))
	return 8, true, nil
}

// int64Input reads the delta; a short input counts as its zero-extended
// little-endian bytes so that no input can make the merge fail.
func int64Input(in []byte) int64 {
	if len(in) >= 8 {
		return int64(binary.LittleEndian.Uint64(in))
	}
	var b [8]byte
	copy(b[:], in)
	return int64(binary.LittleEndian.Uint64(b[:]))
}

// Append appends the input to the value; an absent key starts as the input.
type Append struct{}

// InitialSize implements Merger.
func (Append) InitialSize(input []byte) int { return len(input) }

// Initial implements Merger.
func (Append) Initial(dst, input []byte) error { copy(dst, input); return nil }

// MergedSize implements Merger.
func (Append) MergedSize(old, input []byte) (int, error) { return len(old) + len(input), nil }

// Merge implements Merger.
func (Append) Merge(dst, old, input []byte) error {
	copy(dst[copy(dst, old):], input)
	return nil
}

// Reserve implements Reserver: half as much again, so that a value that
// keeps growing is copied O(log n) times rather than on every append.
func (Append) Reserve(n int) int { return n + n/2 }

// InPlace implements Merger.
func (Append) InPlace(v, input []byte) (int, bool, error) {
	n := len(v) + len(input)
	if n > cap(v) {
		return 0, false, nil
	}
	copy(v[len(v):n], input)
	return n, true, nil
}
