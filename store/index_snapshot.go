package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/fleetkv/fleetkv/index"
)

// An index snapshot lets recovery load the index and replay only the log
// written since the snapshot began, instead of the whole log from begin.
//
// Invariant: a snapshot's start (Checkpoint.IndexStart) is the log's tail
// read before an epoch barrier, and the export runs after the barrier:
// every record below the start had been linked into its chain (or
// abandoned) before the export read its bucket, so an entry the export
// missed or read stale points below a record at or above the start, which
// the replay links again. Every address the export read is below the
// fold-over's end, which comes after it.
//
// The file: magic (8 bytes), table bits (u32), 4 zero bytes; then per
// entry its main bucket (u64) and the entry word (u64); then the entry
// count (u64) and a CRC-32C of everything before it (u32), 4 zero bytes.

const indexMagic = "FKVINDX1"

var errBadIndex = errors.New("store: index snapshot damaged")

// writeIndex exports the index to w.
func (st *Store) writeIndex(w io.Writer) (entries uint64, err error) {
	crc := crc32.New(crcTable)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 1<<20)
	var word [16]byte
	// The table's bits are known only once the export holds growth off:
	// the header goes out with the first entry, or after an empty export.
	wroteHeader := false
	header := func(bits uint) {
		binary.LittleEndian.PutUint32(word[:4], uint32(bits))
		bw.WriteString(indexMagic)
		bw.Write(word[:8])
		wroteHeader = true
	}
	bits, err := st.index.Export(func(bits uint, bucket uint64, e index.Entry) error {
		if !wroteHeader {
			header(bits)
		}
		binary.LittleEndian.PutUint64(word[:8], bucket)
		binary.LittleEndian.PutUint64(word[8:], uint64(e))
		entries++
		_, err := bw.Write(word[:])
		return err
	})
	if err != nil {
		return 0, err
	}
	if !wroteHeader {
		header(bits)
	}
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	binary.LittleEndian.PutUint64(word[:8], entries)
	binary.LittleEndian.PutUint32(word[8:12], crc.Sum32())
	binary.LittleEndian.PutUint32(word[12:], 0)
	_, err = w.Write(word[:])
	return entries, err
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// readIndex loads a snapshot into the (new, unused) index: a first pass
// checks the whole file (length, count, checksum), a second imports it, so
// a damaged snapshot changes nothing.
func (st *Store) readIndex(open func() (io.ReadCloser, error)) (uint64, error) {
	if _, err := scanIndex(open, nil); err != nil {
		return 0, err
	}
	return scanIndex(open, st.index.Import)
}

// scanIndex reads a snapshot, passing each entry to fn when fn is not nil,
// and checks its trailer.
func scanIndex(open func() (io.ReadCloser, error), fn func(bits uint, bucket uint64, e index.Entry) error) (uint64, error) {
	f, err := open()
	if err != nil {
		return 0, err
	}
	defer f.Close()
	crc := crc32.New(crcTable)
	r := bufio.NewReaderSize(f, 1<<20)
	var head [16]byte
	if _, err := io.ReadFull(r, head[:]); err != nil || string(head[:8]) != indexMagic {
		return 0, fmt.Errorf("%w: no header (%v)", errBadIndex, err)
	}
	crc.Write(head[:])
	bits := uint(binary.LittleEndian.Uint32(head[8:]))
	var word, next [16]byte
	if _, err := io.ReadFull(r, word[:]); err != nil {
		return 0, fmt.Errorf("%w: %v", errBadIndex, err)
	}
	n := uint64(0)
	for { // word is an entry while another 16 bytes follow it; the last is the trailer
		_, err := io.ReadFull(r, next[:])
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("%w: %v", errBadIndex, err)
		}
		crc.Write(word[:])
		if fn != nil {
			if err := fn(bits, binary.LittleEndian.Uint64(word[:8]), index.Entry(binary.LittleEndian.Uint64(word[8:]))); err != nil {
				return 0, fmt.Errorf("%w: %v", errBadIndex, err)
			}
		}
		n++
		word = next
	}
	if binary.LittleEndian.Uint64(word[:8]) != n || binary.LittleEndian.Uint32(word[8:12]) != crc.Sum32() {
		return 0, fmt.Errorf("%w: %d entries, trailer says %d; checksum %#x, trailer says %#x",
			errBadIndex, n, binary.LittleEndian.Uint64(word[:8]), crc.Sum32(), binary.LittleEndian.Uint32(word[8:12]))
	}
	return n, nil
}
