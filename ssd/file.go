package ssd

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// FileDevice keeps the log in segment files under a directory: segment i
// holds offsets [i*SegmentSize, (i+1)*SegmentSize) in the file
// "log.<i>" (decimal, zero-padded). Segments are preallocated with fallocate
// and opened with O_DIRECT, so every I/O must be sector-aligned (Alignment):
// offsets, lengths and buffer addresses (use AlignedBuffer). I/O goes
// through an engine: io_uring where the kernel allows it, else a pool of
// pread/pwrite workers.
//
// Invariant: a segment leaves segs only in Release, under gate held
// exclusively; its file stays open while an I/O holds a reference to it
// (taken under gate held shared, dropped when the I/O completes), so a
// descriptor is never closed, and its number reused, under an I/O.
// Invariant: a segment is in segs only once its file is fully preallocated.
// Invariant: the engine receives I/O only under gate held shared with closed
// false, so Close (gate held exclusively) never races a submission.
type FileDevice struct {
	cfg      FileConfig
	eng      engine
	segs     atomic.Pointer[[]*segment] // by segment index, nil where none
	released atomic.Uint64              // reads below fail with ErrReleased
	gate     sync.RWMutex               // submitters hold it shared; Close and Release exclusively
	closed   bool                       // under gate
	mu       struct {
		sync.Mutex
		creating map[uint64]*segWait // segments being created
	}

	log *slog.Logger
}

// FileConfig configures a FileDevice.
type FileConfig struct {
	Dir         string
	SegmentSize uint64 // bytes per segment file; a power of two, at least 1 MiB; default 1 GiB
	IO          string // IOAuto (default), IOUring or IOPread
	Workers     int    // pread/pwrite workers (the pread engine's queue depth); default 32
	RingEntries uint32 // io_uring entries, the most I/Os in the kernel at once; default 1024
	Buffered    bool   // open without O_DIRECT (for file systems that refuse it, such as tmpfs)
	Log         *slog.Logger
}

// I/O engines for FileConfig.IO.
const (
	IOAuto  = ""      // io_uring, or pread with one log line when io_uring is unavailable
	IOUring = "uring" // io_uring or fail
	IOPread = "pread" // the pread/pwrite worker pool
)

// SectorSize is the alignment of a FileDevice's I/O.
const SectorSize = 4096

// engine moves bytes between buffers and file descriptors asynchronously.
type engine interface {
	read(fd int, p []byte, off int64, cb Callback)
	write(fd int, p []byte, off int64, cb Callback)
	name() string
	inFlight() int // requests submitted and not completed
	close() error
}

func (c *FileConfig) fill() error {
	if c.SegmentSize == 0 {
		c.SegmentSize = 1 << 30
	}
	if c.Workers == 0 {
		c.Workers = 32
	}
	if c.RingEntries == 0 {
		c.RingEntries = 1024
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Dir == "":
		return errors.New("ssd: no directory")
	case c.SegmentSize < 1<<20 || c.SegmentSize&(c.SegmentSize-1) != 0:
		return fmt.Errorf("ssd: segment size %d is not a power of two of at least 1 MiB", c.SegmentSize)
	case c.IO != IOAuto && c.IO != IOUring && c.IO != IOPread:
		return fmt.Errorf("ssd: unknown I/O engine %q (want %s or %s)", c.IO, IOUring, IOPread)
	case c.Workers < 1:
		return fmt.Errorf("ssd: %d workers", c.Workers)
	}
	return nil
}

// OpenFile opens (creating if needed) the segment files under cfg.Dir.
func OpenFile(cfg FileConfig) (*FileDevice, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("ssd: %w", err)
	}
	d := &FileDevice{cfg: cfg, log: cfg.Log}
	d.mu.creating = map[uint64]*segWait{}
	segs, err := d.openExisting()
	if err != nil {
		return nil, err
	}
	d.segs.Store(&segs)
	if d.eng, err = newEngine(cfg); err != nil {
		closeSegments(segs)
		return nil, err
	}
	return d, nil
}

// newEngine picks the I/O engine: io_uring unless told otherwise or
// unavailable.
func newEngine(cfg FileConfig) (engine, error) {
	if cfg.IO == IOPread {
		return newPreadEngine(cfg.Workers), nil
	}
	e, err := newUringEngine(cfg.RingEntries)
	if err == nil {
		return e, nil
	}
	if cfg.IO == IOUring {
		return nil, fmt.Errorf("ssd: --io=uring: %w", err)
	}
	cfg.Log.Warn("io_uring unavailable, using the pread/pwrite worker pool", "err", err)
	return newPreadEngine(cfg.Workers), nil
}

// Engine names the I/O engine in use: "uring" or "pread".
func (d *FileDevice) Engine() string { return d.eng.name() }

// InFlight returns how many reads and writes are submitted and not yet
// completed: the device's queue depth as the process sees it.
func (d *FileDevice) InFlight() int { return d.eng.inFlight() }

// Threads returns the IDs of the threads that submit and complete the
// device's I/O where its engine has threads of its own (io_uring's
// submitter and reaper); nil for pread, whose workers are goroutines.
func (d *FileDevice) Threads() []int {
	if u, ok := d.eng.(*uringEngine); ok {
		return u.r.Threads()
	}
	return nil
}

// Dir returns the directory of the segment files.
func (d *FileDevice) Dir() string { return d.cfg.Dir }

// Alignment implements Device.
func (d *FileDevice) Alignment() int { return SectorSize }

func segmentName(i uint64) string { return fmt.Sprintf("log.%08d", i) }

// openExisting opens the segment files already in the directory.
func (d *FileDevice) openExisting() ([]*segment, error) {
	ents, err := os.ReadDir(d.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("ssd: %w", err)
	}
	var idx []uint64
	for _, e := range ents {
		if n, ok := strings.CutPrefix(e.Name(), "log."); ok {
			if i, err := strconv.ParseUint(n, 10, 32); err == nil {
				idx = append(idx, i)
			}
		}
	}
	sort.Slice(idx, func(a, b int) bool { return idx[a] < idx[b] })
	var segs []*segment
	for _, i := range idx {
		fd, err := d.openSegment(i, false)
		if err != nil {
			closeSegments(segs)
			return nil, err
		}
		for uint64(len(segs)) < i {
			segs = append(segs, nil)
		}
		segs = append(segs, &segment{fd: fd})
	}
	return segs, nil
}

// openSegment opens segment i; with create it makes and preallocates it.
func (d *FileDevice) openSegment(i uint64, create bool) (int, error) {
	path := filepath.Join(d.cfg.Dir, segmentName(i))
	flags := unix.O_RDWR | unix.O_CLOEXEC
	if !d.cfg.Buffered {
		flags |= unix.O_DIRECT
	}
	if create {
		flags |= unix.O_CREAT
	}
	fd, err := unix.Open(path, flags, 0o644)
	if err != nil {
		if errors.Is(err, unix.EINVAL) && !d.cfg.Buffered {
			return -1, fmt.Errorf("ssd: open %s with O_DIRECT: %w (this file system refuses direct I/O)", path, err)
		}
		return -1, fmt.Errorf("ssd: open %s: %w", path, err)
	}
	if create {
		if err := unix.Fallocate(fd, 0, 0, int64(d.cfg.SegmentSize)); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("ssd: preallocate %s (%d bytes): %w", path, d.cfg.SegmentSize, err)
		}
		return fd, nil
	}
	// An existing segment written with another segment size would map
	// addresses to the wrong files. A shorter one is a truncated tail: its
	// missing end reads as zeros, which recovery treats as the log's end.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("ssd: stat %s: %w", path, err)
	}
	if uint64(st.Size) > d.cfg.SegmentSize {
		unix.Close(fd)
		return -1, fmt.Errorf("ssd: %s is %d bytes, more than the segment size %d: open the log with the segment size it was written with",
			path, st.Size, d.cfg.SegmentSize)
	}
	return fd, nil
}

func closeSegments(segs []*segment) {
	for _, sg := range segs {
		if sg != nil {
			sg.close()
		}
	}
}

// segment is one open segment file and the I/Os that use it.
type segment struct {
	fd      int
	refs    atomic.Int64 // I/Os issued on fd and not completed
	retired atomic.Bool  // released: close fd once refs is 0
	closed  atomic.Bool
}

func (sg *segment) close() {
	if sg.closed.CompareAndSwap(false, true) {
		unix.Close(sg.fd)
	}
}

// retire closes the file once no I/O uses it. Whichever of retire and the
// last unref sees both conditions closes it (both check after their store).
func (sg *segment) retire() {
	sg.retired.Store(true)
	if sg.refs.Load() == 0 {
		sg.close()
	}
}

func (sg *segment) unref() {
	if sg.refs.Add(-1) == 0 && sg.retired.Load() {
		sg.close()
	}
}

// segmentIO is an I/O's reference to its segment, dropped when it completes.
type segmentIO struct {
	sg *segment
	cb Callback
}

var segmentIOs = sync.Pool{New: func() any { return new(segmentIO) }}

// IODone implements Callback.
func (w *segmentIO) IODone(n int, err error) {
	sg, cb := w.sg, w.cb
	*w = segmentIO{}
	segmentIOs.Put(w)
	cb.IODone(n, err)
	sg.unref()
}

// segment returns segment i, or nil when it does not exist (yet, or any
// more).
func (d *FileDevice) segment(i uint64) *segment {
	segs := *d.segs.Load()
	if i < uint64(len(segs)) {
		return segs[i]
	}
	return nil
}

// WriteAsync implements Device. A write to a segment that does not exist
// yet waits for its creation on another goroutine, so the caller never
// blocks on fallocate.
func (d *FileDevice) WriteAsync(p []byte, off uint64, cb Callback) {
	d.split(p, off, cb, true)
}

// ReadAsync implements Device. Bytes of segments never written read as
// zeros.
func (d *FileDevice) ReadAsync(p []byte, off uint64, cb Callback) {
	d.split(p, off, cb, false)
}

// split checks an I/O and cuts it at segment boundaries (log pages never
// cross one, but a speculative record read may).
func (d *FileDevice) split(p []byte, off uint64, cb Callback, write bool) {
	switch {
	case !aligned(p, off):
		cb.IODone(0, ErrMisaligned)
		return
	case !write && off < d.released.Load():
		cb.IODone(0, ErrReleased)
		return
	}
	seg, in := off/d.cfg.SegmentSize, off%d.cfg.SegmentSize
	if in+uint64(len(p)) <= d.cfg.SegmentSize {
		d.issue(seg, p, int64(in), cb, write)
		return
	}
	j := newJoin(cb)
	for len(p) > 0 {
		n := min(uint64(len(p)), d.cfg.SegmentSize-in)
		j.add()
		d.issue(seg, p[:n], int64(in), j, write)
		p, seg, in = p[n:], seg+1, 0
	}
	j.done()
}

func aligned(p []byte, off uint64) bool {
	if len(p) == 0 {
		return off%SectorSize == 0
	}
	return off%SectorSize == 0 && len(p)%SectorSize == 0 && addrOf(p)%SectorSize == 0
}

// issue starts one I/O inside segment seg.
func (d *FileDevice) issue(seg uint64, p []byte, off int64, cb Callback, write bool) {
	d.gate.RLock()
	if d.closed {
		d.gate.RUnlock()
		cb.IODone(0, ErrClosed)
		return
	}
	sg := d.segment(seg)
	if sg != nil {
		sg.refs.Add(1)
		w := segmentIOs.Get().(*segmentIO)
		w.sg, w.cb = sg, cb
		if write {
			d.eng.write(sg.fd, p, off, w)
		} else {
			d.eng.read(sg.fd, p, off, w)
		}
	}
	d.gate.RUnlock()
	switch {
	case sg != nil:
	case !write && seg*d.cfg.SegmentSize+uint64(off) < d.released.Load():
		cb.IODone(0, ErrReleased) // Release ran after split checked
	case !write:
		clear(p)
		cb.IODone(len(p), nil)
	default:
		d.createThen(seg, func(err error) {
			if err != nil {
				cb.IODone(0, err)
				return
			}
			d.issue(seg, p, off, cb, true)
		})
	}
}

// segWait is a segment being created and the writes waiting for it.
type segWait struct {
	then []func(err error)
}

// createThen creates segment seg on a new goroutine (once) and runs then
// with its descriptor.
func (d *FileDevice) createThen(seg uint64, then func(error)) {
	d.mu.Lock()
	if d.segment(seg) != nil {
		d.mu.Unlock()
		then(nil)
		return
	}
	w, busy := d.mu.creating[seg]
	if !busy {
		w = &segWait{}
		d.mu.creating[seg] = w
	}
	w.then = append(w.then, then)
	d.mu.Unlock()
	if !busy {
		go d.create(seg)
	}
}

// create makes segment seg, publishes it and releases its waiting writes.
func (d *FileDevice) create(seg uint64) {
	fd, err := d.openSegment(seg, true)
	if err != nil {
		d.log.Error("cannot create a log segment", "segment", seg, "err", err)
	} else {
		d.publish(seg, fd)
	}
	d.mu.Lock()
	w := d.mu.creating[seg]
	delete(d.mu.creating, seg)
	d.mu.Unlock()
	for _, then := range w.then {
		then(err)
	}
}

// publish adds segment seg's descriptor to segs (copy on write), or closes
// it when the device closed meanwhile.
func (d *FileDevice) publish(seg uint64, fd int) {
	d.gate.RLock()
	defer d.gate.RUnlock()
	if d.closed {
		unix.Close(fd)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := *d.segs.Load()
	segs := make([]*segment, max(uint64(len(old)), seg+1))
	copy(segs, old)
	segs[seg] = &segment{fd: fd}
	d.segs.Store(&segs)
}

// Sync implements Device: fdatasync on every segment file.
func (d *FileDevice) Sync() error {
	d.gate.RLock()
	defer d.gate.RUnlock()
	if d.closed {
		return ErrClosed
	}
	var errs []error
	for _, sg := range *d.segs.Load() {
		if sg != nil {
			if err := unix.Fdatasync(sg.fd); err != nil {
				errs = append(errs, fmt.Errorf("ssd: fdatasync: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// Close implements Device: it waits for I/O in flight, then closes the
// segment files. A write still waiting for its segment to be created fails
// with ErrClosed.
func (d *FileDevice) Close() error {
	d.gate.Lock()
	if d.closed {
		d.gate.Unlock()
		return nil
	}
	d.closed = true
	d.gate.Unlock()
	err := d.eng.close()
	closeSegments(*d.segs.Load())
	return err
}

// Release implements Device: it deletes the segment files wholly below
// off. A file's descriptor is closed when the last I/O still using it
// completes (a read issued before the release).
func (d *FileDevice) Release(off uint64) error {
	for {
		old := d.released.Load()
		if off <= old || d.released.CompareAndSwap(old, off) {
			break
		}
	}
	below := off / d.cfg.SegmentSize
	d.gate.Lock()
	if d.closed {
		d.gate.Unlock()
		return ErrClosed
	}
	d.mu.Lock()
	segs := append([]*segment(nil), *d.segs.Load()...)
	var gone []uint64
	for i := uint64(0); i < below && i < uint64(len(segs)); i++ {
		if segs[i] != nil {
			gone = append(gone, i)
		}
	}
	retired := make([]*segment, len(gone))
	for j, i := range gone {
		retired[j], segs[i] = segs[i], nil
	}
	d.segs.Store(&segs)
	d.mu.Unlock()
	d.gate.Unlock()
	var errs []error
	for j, i := range gone {
		if err := os.Remove(filepath.Join(d.cfg.Dir, segmentName(i))); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("ssd: release: %w", err))
		}
		retired[j].retire()
	}
	if len(gone) > 0 {
		d.log.Info("released log segments", "below", off, "segments", len(gone))
	}
	return errors.Join(errs...)
}

// join completes one caller's I/O that was split into several.
type join struct {
	cb   Callback
	left atomic.Int32
	n    atomic.Int64
	err  atomic.Pointer[error]
}

func newJoin(cb Callback) *join {
	j := &join{cb: cb}
	j.left.Store(1) // the splitter's own reference, dropped by done
	return j
}

func (j *join) add() { j.left.Add(1) }

// IODone implements Callback for one piece.
func (j *join) IODone(n int, err error) {
	j.n.Add(int64(n))
	if err != nil {
		j.err.CompareAndSwap(nil, &err)
	}
	j.done()
}

func (j *join) done() {
	if j.left.Add(-1) != 0 {
		return
	}
	var err error
	if e := j.err.Load(); e != nil {
		err = *e
	}
	j.cb.IODone(int(j.n.Load()), err)
}
