package hlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/fleetkv/fleetkv/ssd"
)

// What compaction needs from the log: move its begin past records that were
// copied to the tail or are dead, and read single records off the device.

// ShiftBegin moves the log's begin to address to, once every worker
// protected now has refreshed, and returns then (or when ctx ends,
// without moving it).
// Records below to are no longer part of the log: a chain that reaches
// below begin ends there. The wait is what makes the shift safe: an
// operation that loaded an index entry before the caller re-linked the
// live records it is dropping finishes, with the old begin, before the new
// one shows. to must be a page boundary at or below head. The caller holds
// no protected guard.
func (l *Log) ShiftBegin(ctx context.Context, to uint64) error {
	switch {
	case to <= l.begin.Load():
		return nil
	case to&l.pageMask != 0 || to > l.head.Load():
		return fmt.Errorf("hlog: begin %d is not a page boundary at or below head %d", to, l.head.Load())
	}
	if err := l.epochs.Barrier(ctx); err != nil {
		return err
	}
	maxStore(&l.begin, to)
	l.checkMarkers()
	return nil
}

// ReadRecord reads the record at addr from dev and checks it: a sealed,
// complete record whose checksum matches. It returns the record's prefix,
// key and used value, in buf when buf is large enough (and aligned for the
// device), else in a new buffer, which it also returns for reuse.
func ReadRecord(dev ssd.Device, addr uint64, buf []byte) (rec, newBuf []byte, err error) {
	r := RecordRead{Buf: buf}
	done := make(scanWait, 1)
	r.Start(dev, addr, done)
	for {
		res := <-done
		rec, again, err := r.Finish(res.n, res.err, done)
		if !again {
			return rec, r.Buf, err
		}
	}
}

// RecordRead is ReadRecord in steps, for a caller that keeps several
// reads in flight: Start issues the read, and once its callback has run,
// Finish checks what came back. A record longer than the first read
// fetched takes a second, longer read, which Finish issues (again: the
// callback runs once more). Buf is the read's buffer (reused when it is
// large enough and aligned for the device); it must stay untouched while
// a read is in flight.
type RecordRead struct {
	Buf   []byte
	dev   ssd.Device
	addr  uint64
	start uint64 // where the read began: addr rounded down to the alignment
	size  uint64 // how many bytes from addr the read covers, at least
	read  uint64 // bytes read at start
	tries int
}

// Start issues the read of the record at addr from dev; cb is told when
// it is done.
func (r *RecordRead) Start(dev ssd.Device, addr uint64, cb ssd.Callback) {
	al := uint64(max(dev.Alignment(), 1))
	*r = RecordRead{Buf: r.Buf, dev: dev, addr: addr, start: addr / al * al, size: PrefixSize + 1<<10}
	r.issue(cb)
}

// issue reads the aligned span that covers size bytes from addr.
func (r *RecordRead) issue(cb ssd.Callback) {
	al := uint64(max(r.dev.Alignment(), 1))
	end := (r.addr + r.size + al - 1) / al * al
	if uint64(cap(r.Buf)) < end-r.start {
		r.Buf = ssd.AlignedBuffer(int(max(end-r.start, 4<<10)))
	}
	r.read, r.tries = end-r.start, r.tries+1
	r.dev.ReadAsync(r.Buf[:r.read], r.start, cb)
}

// Finish checks the read whose callback reported n bytes and err. It
// returns the record (as ReadRecord), or again when it issued a longer
// read with cb, whose outcome goes to Finish in turn.
func (r *RecordRead) Finish(n int, err error, cb ssd.Callback) (rec []byte, again bool, _ error) {
	switch {
	case err != nil:
		return nil, false, err
	case uint64(n) != r.read:
		return nil, false, fmt.Errorf("hlog: %d of %d bytes transferred at %d", n, r.read, r.start)
	}
	rec, need, err := ParseRecord(r.Buf[r.addr-r.start:r.read], r.addr)
	switch {
	case err != nil || rec != nil:
		return rec, false, err
	case r.tries >= 2:
		return nil, false, fmt.Errorf("%w: record at %d grew between two reads", ErrCorrupt, r.addr)
	}
	r.size = uint64(need)
	r.issue(cb)
	return nil, true, nil
}

// ParseRecord checks b, bytes of a log from addr on, as the record there:
// it returns the record (as ReadRecord) when b holds all of it, or else
// how many bytes from addr it needs (need > len(b), rec nil), or
// ErrCorrupt.
func ParseRecord(b []byte, addr uint64) (rec []byte, need int, err error) {
	if len(b) < PrefixSize {
		return nil, PrefixSize, nil
	}
	h, kl, vc, vl, _ := DecodePrefix(b)
	if !h.Final() || h.Filler() || h.Invalid() || h.Prev() >= addr || vl > vc || kl == 0 {
		return nil, 0, fmt.Errorf("%w: record header %#x at %d (key %d, value %d of %d)", ErrCorrupt, uint64(h), addr, kl, vl, vc)
	}
	need = PrefixSize + kl + vl
	if need > len(b) {
		return nil, need, nil
	}
	if !VerifyRecord(b[:need]) {
		return nil, 0, fmt.Errorf("%w: record at %d: checksum %#x does not match", ErrCorrupt, addr, StoredChecksum(b))
	}
	return b[:need], need, nil
}

// FindKey follows a hash chain on dev from addr down to floor and returns
// the first record of key in it (its prefix, key and used value, as
// ReadRecord), or nil when the chain leaves [floor, addr] without one: the
// key's newest record below addr, when addr is where its chain went on.
// buf is reused as by ReadRecord.
func FindKey(dev ssd.Device, key []byte, addr, floor uint64, buf []byte) (rec, newBuf []byte, err error) {
	for floor = max(floor, FirstAddress); addr >= floor; {
		if rec, buf, err = ReadRecord(dev, addr, buf); err != nil {
			return nil, buf, err
		}
		h, kl, _, _, _ := DecodePrefix(rec)
		if bytes.Equal(rec[PrefixSize:PrefixSize+kl], key) {
			return rec, buf, nil
		}
		addr = h.Prev()
	}
	return nil, buf, nil
}

// SampleRecords reads len(buf) bytes of the log at base, a page start, and
// calls fn with every sealed record that lies whole inside them (from
// FirstAddress on the first page), as
// ScanDevice does. It stops without an error at the first record that runs
// past buf or does not hold together: it is a sample, not a scan.
func SampleRecords(dev ssd.Device, base uint64, buf []byte, fn func(addr uint64, rec []byte) error) error {
	if err := ReadPage(dev, buf, base); err != nil {
		return err
	}
	_, err := scanPage(buf, base, max(base, FirstAddress), base+uint64(len(buf)), fn)
	if errors.Is(err, ErrTorn) {
		return nil
	}
	return err
}
