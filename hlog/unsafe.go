package hlog

// This file holds the log's only unsafe code: typed views of records that
// live in page frames (manual memory). A Record is valid only while the worker
// that obtained it stays inside the epoch it obtained it in.
//
// The seqlock below copies values with plain loads and stores between atomic
// accesses of the header words; its correctness relies on amd64's total store
// order (see tso.go, which stops the package from building elsewhere).

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Record is a view of one record in a page frame. It is a plain pointer: it
// keeps nothing alive and is only valid under the epoch protection that made
// its address readable (address >= head).
type Record struct{ p unsafe.Pointer }

func (r Record) word(i uintptr) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Add(r.p, i*8))
}

// Header loads the record's header word.
func (r Record) Header() Header { return Header(r.word(0).Load()) }

// KeyLen returns the key length.
func (r Record) KeyLen() int { return int(uint32(r.word(1).Load())) }

// ValueCap returns the bytes reserved for the value.
func (r Record) ValueCap() int { return int(r.word(1).Load() >> 32) }

// Size returns the bytes the record occupies in the log.
func (r Record) Size() uint64 {
	w := r.word(1).Load()
	return RecordSize(int(uint32(w)), int(w>>32))
}

// Key returns the record's key, aliasing log memory. Keys never change once a
// record is published.
func (r Record) Key() []byte {
	return unsafe.Slice((*byte)(unsafe.Add(r.p, PrefixSize)), r.KeyLen())
}

// valueArea returns the value's full capacity, aliasing log memory.
func (r Record) valueArea() []byte {
	w := r.word(1).Load()
	return unsafe.Slice((*byte)(unsafe.Add(r.p, PrefixSize+uintptr(uint32(w)))), int(w>>32))
}

// Init writes the record's size words and key and reserves valueCap bytes
// with a value of valueLen bytes. It returns the value area for the caller to
// fill, then Publish writes the header. Only for a freshly allocated record.
func (r Record) Init(key []byte, valueLen, valueCap int) []byte {
	r.word(1).Store(packSizes(len(key), valueCap))
	r.word(2).Store(packValueLen(valueLen, 0))
	copy(unsafe.Slice((*byte)(unsafe.Add(r.p, PrefixSize)), len(key)), key)
	return r.valueArea()[:valueLen]
}

// Publish stores the header of a record whose key and value are written.
func (r Record) Publish(h Header) { r.word(0).Store(uint64(h)) }

// SetInvalid marks a written and published-header record that never became
// reachable (its index CAS failed) so that scans skip it. Bytes that never
// got a header are given back with Log.Abandon instead.
func (r Record) SetInvalid() {
	for {
		h := r.word(0).Load()
		if r.word(0).CompareAndSwap(h, h|uint64(FlagInvalid)) {
			return
		}
	}
}

// ValueLen returns the current value length.
func (r Record) ValueLen() int { return int(uint32(r.word(2).Load())) }

// ReadValue appends the record's value to dst and returns it with the header
// seen while the value was unchanged. It never returns a torn value: it retries
// while an in-place writer holds the record or changed it during the copy.
func (r Record) ReadValue(dst []byte) ([]byte, Header) {
	base := len(dst)
	for spins := 0; ; spins++ {
		h := r.word(0).Load()
		if Header(h).Locked() {
			backoff(spins)
			continue
		}
		w2 := r.word(2).Load()
		dst = append(dst[:base], r.valueArea()[:uint32(w2)]...)
		// The header must be checked before word 2: Unlock stores word 2
		// first and the header last, so a writer that started during the
		// copy either still holds the lock or has already bumped word 2.
		if r.word(0).Load() == h && r.word(2).Load() == w2 {
			return dst, Header(h)
		}
	}
}

// ReadExpiry returns the record's header and its expiry (0: none), both
// as they were at one moment: the seqlock of ReadValue, over 8 bytes.
func (r Record) ReadExpiry() (Header, int64) {
	for spins := 0; ; spins++ {
		h := r.word(0).Load()
		if Header(h).Locked() {
			backoff(spins)
			continue
		}
		if h&uint64(FlagExpires) == 0 {
			return Header(h), 0 // the flag changes only under the lock
		}
		w2 := r.word(2).Load()
		var at int64
		if uint32(w2) >= ExpirySize {
			_, at = SplitValue(Header(h), r.valueArea()[:ExpirySize])
		}
		if r.word(0).Load() == h && r.word(2).Load() == w2 {
			return Header(h), at
		}
	}
}

// Value returns the value aliasing log memory (len = current length, cap =
// capacity), without the seqlock. It is for records no one can change in
// place: below safeReadOnly, or locked by the caller, who may then write up
// to its capacity and Unlock with the new length.
func (r Record) Value() []byte { return r.valueArea()[:r.ValueLen()] }

// Lock takes the record for an in-place update and returns its header as it
// was before locking. ok is false when the record must not be updated in place
// (sealed or invalid): a newer copy exists, and the caller retries its
// operation from the index.
func (r Record) Lock() (h Header, ok bool) {
	for spins := 0; ; spins++ {
		cur := r.word(0).Load()
		if Header(cur)&(FlagInvalid|FlagSealed) != 0 {
			return Header(cur), false
		}
		if Header(cur).Locked() {
			backoff(spins)
			continue
		}
		if r.word(0).CompareAndSwap(cur, cur|uint64(FlagLocked)) {
			return Header(cur), true
		}
	}
}

// Unlock ends an in-place update: the value now has n bytes and the header
// becomes h (without the locked flag; with FlagSealed when the caller copied
// the record to the tail). The sequence is bumped so that readers that
// overlapped the update retry.
func (r Record) Unlock(h Header, n int) {
	seq := uint32(r.word(2).Load()>>32) + 1
	r.word(2).Store(packValueLen(n, seq))
	r.word(0).Store(uint64(h &^ FlagLocked))
}

// backoff spins briefly, then yields: a writer holds a record only for one
// copy, so waiting is short unless that writer's thread was descheduled.
func backoff(spins int) {
	if spins > 64 {
		runtime.Gosched()
	}
}

// frameRecord returns the record view at byte offset off of the frame memory.
func frameRecord(mem []byte, off uint64) Record {
	return Record{unsafe.Pointer(unsafe.Add(unsafe.Pointer(unsafe.SliceData(mem)), off))}
}
