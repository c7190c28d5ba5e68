package hlog

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/fleetkv/fleetkv/ssd"
)

// ErrTorn reports where a device scan found bytes that are not a sealed
// record: the end of what was written, a page that was torn by a power
// loss, or garbled bytes. Everything before the scan's end address is valid.
var ErrTorn = errors.New("hlog: log ends in bytes that are not a sealed record")

// ScanDevice reads the pages holding [from, to) from dev, in address order,
// and calls fn with every sealed record's address and bytes (prefix, key
// and used value; valid only during the call), skipping fillers and
// abandoned records. from must be a record boundary. It stops at the first
// record that does not hold together or whose checksum fails, and returns
// the address where the valid log ends: to when everything held, with a
// nil error; otherwise that record's address and an error wrapping ErrTorn
// that says what was found. An error from fn or the device stops the scan
// and is returned as it is.
//
// The next page is read while the current one is scanned (two page
// buffers), so the device and fn overlap.
func ScanDevice(dev ssd.Device, pageBits uint, from, to uint64, fn func(addr uint64, rec []byte) error) (uint64, error) {
	if from >= to {
		return from, nil
	}
	pageSize := uint64(1) << pageBits
	cur, ahead := ssd.AlignedBuffer(int(pageSize)), ssd.AlignedBuffer(int(pageSize))
	last := (to - 1) >> pageBits
	pending := startRead(dev, cur, from>>pageBits<<pageBits)
	addr := from
	for page := from >> pageBits; ; page++ {
		if err := pending.wait(len(cur), page<<pageBits); err != nil {
			return addr, fmt.Errorf("hlog: reading page %d: %w", page, err)
		}
		if page < last {
			pending = startRead(dev, ahead, (page+1)<<pageBits)
		}
		next, err := scanPage(cur, page<<pageBits, addr, min(to, (page+1)<<pageBits), fn)
		if err != nil || page == last {
			if page < last {
				pending.wait(len(ahead), 0) // the buffer must not be reused under the device
			}
			return next, err
		}
		addr = next
		cur, ahead = ahead, cur
	}
}

// startRead issues a read of len(p) bytes at off and returns what to wait on.
func startRead(dev ssd.Device, p []byte, off uint64) scanWait {
	done := make(scanWait, 1)
	dev.ReadAsync(p, off, done)
	return done
}

// wait returns the outcome of the read started by startRead of n bytes.
func (w scanWait) wait(n int, off uint64) error {
	r := <-w
	if r.err == nil && r.n != n {
		return fmt.Errorf("hlog: %d of %d bytes transferred at %d", r.n, n, off)
	}
	return r.err
}

// scanPage walks the records of one page image (base is its first address)
// from addr to end.
//
// Invariant (kept here, relied on by the flusher and by recovery): a
// filler is skipped by its length, never read past its header. A page
// that ends in a filler is written only through that header (flushState),
// and a recovery writes the filler that closes the page where the log
// ends as one sector (store's closeDevicePage), so the bytes after it on
// the device are a hole, an older write, or what a fold-over's last
// sector carried past its end (writeRecordsOf).
func scanPage(buf []byte, base, addr, end uint64, fn func(uint64, []byte) error) (uint64, error) {
	torn := func(format string, a ...any) (uint64, error) {
		return addr, fmt.Errorf("%w: at %d: %s", ErrTorn, addr, fmt.Sprintf(format, a...))
	}
	for addr < end {
		off := addr - base
		if off+8 > uint64(len(buf)) {
			return torn("a record cannot start %d bytes before the page's end", uint64(len(buf))-off)
		}
		h := Header(binary.LittleEndian.Uint64(buf[off:]))
		if h.Filler() {
			if h.Prev() == 0 || off+h.Prev() > uint64(len(buf)) {
				return torn("filler of %d bytes", h.Prev())
			}
			addr += h.Prev()
			continue
		}
		if !h.Final() || off+PrefixSize > uint64(len(buf)) {
			return torn("header %#x", uint64(h))
		}
		_, kl, vc, vl, _ := DecodePrefix(buf[off:])
		size := RecordSize(kl, vc)
		if vl > vc || off+size > uint64(len(buf)) || h.Prev() >= addr {
			return torn("record header %#x (key %d, value %d of %d)", uint64(h), kl, vl, vc)
		}
		rec := buf[off : off+PrefixSize+uint64(kl+vl)]
		if !VerifyRecord(rec) {
			return torn("checksum %#x does not match the record", StoredChecksum(rec))
		}
		if !h.Invalid() {
			if err := fn(addr, rec); err != nil {
				return addr, err
			}
		}
		addr += size
	}
	return addr, nil
}

// ReadPage reads len(p) bytes at off (aligned for the device) and waits
// for them. Bytes the device never had (the missing end of a truncated
// segment file) read as zeros, as the Device contract says.
func ReadPage(dev ssd.Device, p []byte, off uint64) error {
	return syncIO(p, off, dev.ReadAsync)
}

// WritePage writes p at off (aligned for the device) and waits for it; it
// does not sync.
func WritePage(dev ssd.Device, p []byte, off uint64) error {
	return syncIO(p, off, dev.WriteAsync)
}

func syncIO(p []byte, off uint64, op func([]byte, uint64, ssd.Callback)) error {
	done := make(scanWait, 1)
	op(p, off, done)
	return done.wait(len(p), off)
}

// PutFiller writes the header of a filler of size bytes at the start of b.
func PutFiller(b []byte, size uint64) {
	binary.LittleEndian.PutUint64(b, uint64(fillerHeader(size)))
}

type scanResult struct {
	n   int
	err error
}

type scanWait chan scanResult

func (w scanWait) IODone(n int, err error) { w <- scanResult{n, err} }
