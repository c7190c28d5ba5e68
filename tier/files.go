package tier

import (
	"os"
	"sync"
)

// A Reader of a directory store keeps the segment files it reads open,
// instead of an open, fcntl and close around every read (a target's
// reads of keys it has not pulled in yet are one record each).
//
// Invariant: a file is closed only once it has left entries and no read
// holds it (refs 0), so no read ever uses a closed descriptor, or one
// reused for another file. At most maxOpen files stay open between reads;
// reads in progress may hold more (the least recently used one left
// entries while a read held it).
//
// A kept file outlives the deletion of its segment (the space comes back
// when the Reader closes it): the tables a Reader serves pin the segments
// they read, and Close closes every file.

// fileStore is a Store whose objects are files a Reader can keep open.
type fileStore interface {
	open(name string) (*os.File, error)
}

// maxOpen is how many segment files a Reader keeps open.
const maxOpen = 16

type openFiles struct {
	open    func(seg uint64) (*os.File, error)
	mu      sync.Mutex
	max     int
	tick    uint64
	entries map[uint64]*openFile
}

type openFile struct {
	f     *os.File
	refs  int    // reads using f (under openFiles.mu)
	used  uint64 // the tick of its last use
	evict bool   // left entries: closed when refs falls to 0
}

func newOpenFiles(max int, open func(seg uint64) (*os.File, error)) *openFiles {
	return &openFiles{open: open, max: max, entries: map[uint64]*openFile{}}
}

// acquire returns segment seg's open file, opening it when none is kept;
// the caller releases it when its read is done.
func (c *openFiles) acquire(seg uint64) (*openFile, error) {
	c.mu.Lock()
	if e := c.use(seg); e != nil {
		c.mu.Unlock()
		return e, nil
	}
	c.mu.Unlock()
	f, err := c.open(seg) // outside mu: other segments' reads go on
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.use(seg); e != nil { // another read opened it meanwhile
		f.Close()
		return e, nil
	}
	e := &openFile{f: f}
	c.entries[seg] = e
	c.use(seg)
	c.trim()
	return e, nil
}

// use marks seg's kept file as used by one more read; nil when none is
// kept. The caller holds mu.
func (c *openFiles) use(seg uint64) *openFile {
	e := c.entries[seg]
	if e != nil {
		c.tick++
		e.refs, e.used = e.refs+1, c.tick
	}
	return e
}

// release ends a read's use of e.
func (c *openFiles) release(e *openFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	if e.evict && e.refs == 0 {
		e.f.Close()
	}
}

// trim lets the least recently used files go above max. The caller
// holds mu.
func (c *openFiles) trim() {
	for len(c.entries) > c.max {
		oldest := leastUsed(c.entries, func(e *openFile) uint64 { return e.used })
		e := c.entries[oldest]
		delete(c.entries, oldest)
		e.evict = true
		if e.refs == 0 {
			e.f.Close()
		}
	}
}

// close closes every kept file; no read may be in progress.
func (c *openFiles) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for seg, e := range c.entries {
		e.f.Close()
		delete(c.entries, seg)
	}
}
