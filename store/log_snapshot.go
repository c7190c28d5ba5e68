package store

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/ssd"
)

// A log snapshot is the other way to make a checkpoint's log durable: the
// part of the log not flushed yet, from a page boundary S at or below the
// flushed end to the checkpoint's end, is written to a file of its own,
// instead of being flushed to the log's device and made read-only for good
// (a fold-over). The in-memory records stay mutable once it is written, so
// hot keys go on being updated in place; a fold-over makes every one of them
// copy itself to the tail at its next update.
//
// Invariant: while the snapshot is copied, nothing below the checkpoint's
// end changes: the fence went up to the end while every writer was paused,
// and an epoch barrier after the pause has let every allocation begun
// before it be published (or abandoned, or marked invalid). So a page still
// in memory holds below the end what it held at the pause, and a page
// evicted meanwhile was flushed with those bytes.
//
// Recovery first writes the snapshot's bytes back to the device at their
// addresses (RestoreSnapshot): pages flushed after the checkpoint may hold
// later in-place updates there.
//
// The file: magic (8 bytes), S (u64), the end (u64), the log bytes from S
// to the end, then a CRC-32C of everything before it (u32) and 4 zero
// bytes.

const snapshotMagic = "FKVSNAP1"

var errBadSnapshot = errors.New("store: log snapshot damaged")

// writeSnapshot writes the log from start (a page boundary) to end to w.
func (st *Store) writeSnapshot(ctx context.Context, w io.Writer, start, end uint64) error {
	if err := st.epochs.Barrier(ctx); err != nil {
		return err
	}
	crc := crc32.New(crcTable)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 1<<20)
	var word [16]byte
	binary.LittleEndian.PutUint64(word[:8], start)
	binary.LittleEndian.PutUint64(word[8:], end)
	bw.WriteString(snapshotMagic)
	bw.Write(word[:])
	l := st.log
	page := ssd.AlignedBuffer(int(l.PageSize()))
	for p := start; p < end; p += l.PageSize() {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(l.PageSize(), end-p)
		st.ckpt.g.Protect()
		inMemory := l.CopyMemory(page[:n], p)
		st.ckpt.g.Unprotect()
		if !inMemory {
			// Evicted since the pause, hence flushed (with the same bytes).
			if err := hlog.ReadPage(l.Device(), page, p); err != nil {
				return fmt.Errorf("reading page %d from the device: %w", p>>l.PageBits(), err)
			}
		}
		hlog.SealCopy(page[:n], p)
		if _, err := bw.Write(page[:n]); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(word[:4], crc.Sum32())
	binary.LittleEndian.PutUint32(word[4:8], 0)
	_, err := w.Write(word[:8])
	return err
}

// RestoreSnapshot writes the log snapshot of checkpoint c back to dev, the
// log's device, at its addresses, and syncs it: recovery from c needs
// that first. open returns the snapshot's bytes; it is called twice, as the
// whole file is checked before any of it is written. A damaged snapshot
// writes nothing and fails: the checkpoint cannot be recovered.
func RestoreSnapshot(dev ssd.Device, c Checkpoint, open func() (io.ReadCloser, error)) error {
	if !c.Snapshot {
		return nil
	}
	if err := scanSnapshot(open, c, nil); err != nil {
		return err
	}
	size := uint64(1) << c.PageBits
	page := ssd.AlignedBuffer(int(size))
	err := scanSnapshot(open, c, func(addr uint64, b []byte) error {
		clear(page[copy(page, b):])
		return hlog.WritePage(dev, page, addr)
	})
	if err != nil {
		return err
	}
	return dev.Sync()
}

// scanSnapshot reads checkpoint c's log snapshot, passing each page's
// bytes (up to the end) to fn when fn is not nil, and checks its header
// and trailer.
func scanSnapshot(open func() (io.ReadCloser, error), c Checkpoint, fn func(addr uint64, b []byte) error) error {
	f, err := open()
	if err != nil {
		return err
	}
	defer f.Close()
	crc := crc32.New(crcTable)
	r := bufio.NewReaderSize(f, 1<<20)
	var head [24]byte
	if _, err := io.ReadFull(r, head[:]); err != nil || string(head[:8]) != snapshotMagic {
		return fmt.Errorf("%w: no header (%v)", errBadSnapshot, err)
	}
	crc.Write(head[:])
	start, end := binary.LittleEndian.Uint64(head[8:]), binary.LittleEndian.Uint64(head[16:])
	size := uint64(1) << c.PageBits
	if start != c.SnapshotStart || end != c.End || start%size != 0 {
		return fmt.Errorf("%w: it holds [%d, %d), the checkpoint's is [%d, %d)", errBadSnapshot, start, end, c.SnapshotStart, c.End)
	}
	buf := make([]byte, size)
	for p := start; p < end; p += size {
		b := buf[:min(size, end-p)]
		if _, err := io.ReadFull(r, b); err != nil {
			return fmt.Errorf("%w: page at %d: %v", errBadSnapshot, p, err)
		}
		crc.Write(b)
		if fn != nil {
			if err := fn(p, b); err != nil {
				return fmt.Errorf("store: restoring the log snapshot: %w", err)
			}
		}
	}
	var tail [9]byte
	if n, _ := io.ReadFull(r, tail[:]); n != 8 || binary.LittleEndian.Uint32(tail[:4]) != crc.Sum32() {
		return fmt.Errorf("%w: %d trailer bytes, checksum %#x, trailer says %#x", errBadSnapshot, n, crc.Sum32(), binary.LittleEndian.Uint32(tail[:4]))
	}
	return nil
}
