package ssd

import (
	"bytes"
	"errors"
	"testing"
)

type result struct {
	n   int
	err error
	ok  bool
}

func (r *result) IODone(n int, err error) { *r = result{n, err, true} }

func TestMemDeviceRoundTripAcrossBlocks(t *testing.T) {
	d := NewMemDevice()
	data := make([]byte, 3<<memBlockBits+123)
	for i := range data {
		data[i] = byte(i * 7)
	}
	off := uint64(1<<memBlockBits - 5)
	var w result
	d.WriteAsync(data, off, &w)
	if !w.ok || w.err != nil || w.n != len(data) {
		t.Fatalf("write: %+v", w)
	}
	got := make([]byte, len(data))
	var r result
	d.ReadAsync(got, off, &r)
	if !r.ok || r.err != nil || r.n != len(data) || !bytes.Equal(got, data) {
		t.Fatalf("read back differs: %+v", r)
	}
	hole := []byte{1, 2, 3}
	d.ReadAsync(hole, 10<<memBlockBits, &r)
	if !bytes.Equal(hole, []byte{0, 0, 0}) {
		t.Fatalf("never-written bytes read as %v", hole)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d.ReadAsync(got, 0, &r)
	if !errors.Is(r.err, ErrClosed) {
		t.Fatalf("read after close: %v", r.err)
	}
}
