package tier

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/ssd"
)

// Segments is one log's sealed segments in a Store.
type Segments struct {
	store Store
	logID string
	size  uint64
}

// MinSegmentSize is the smallest segment; sizes are powers of two, so a
// segment holds whole log pages (a page is at most this big) and no record
// crosses a segment's end.
const MinSegmentSize = 1 << 20

// NewSegments returns the segments of the log logID, size bytes each.
func NewSegments(s Store, logID string, size uint64) (*Segments, error) {
	switch {
	case size < MinSegmentSize || size&(size-1) != 0:
		return nil, fmt.Errorf("tier: segment size %d is not a power of two of at least %d", size, MinSegmentSize)
	case logID == "" || strings.ContainsAny(logID, "/."):
		return nil, fmt.Errorf("tier: bad log id %q", logID)
	}
	return &Segments{store: s, logID: logID, size: size}, nil
}

// LogID returns the log the segments belong to.
func (g *Segments) LogID() string { return g.logID }

// Size returns the bytes per segment.
func (g *Segments) Size() uint64 { return g.size }

// Store returns the store the segments live in.
func (g *Segments) Store() Store { return g.store }

func (g *Segments) dir() string { return "logs/" + g.logID + "/" }

// Name returns segment n's object name.
func (g *Segments) Name(n uint64) string { return fmt.Sprintf("%s%012d", g.dir(), n) }

// List returns the numbers of the segments present, ascending.
func (g *Segments) List(ctx context.Context) ([]uint64, error) {
	names, err := g.store.List(ctx, g.dir())
	if err != nil {
		return nil, err
	}
	var ns []uint64
	for _, name := range names {
		n, err := strconv.ParseUint(strings.TrimPrefix(name, g.dir()), 10, 64)
		if err != nil {
			continue // not a segment (another tool's file)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

// Delete removes segment n.
func (g *Segments) Delete(ctx context.Context, n uint64) error { return g.store.Delete(ctx, g.Name(n)) }

// uploadChunk is how much of a segment one device read brings in.
const uploadChunk = 1 << 20

// Upload copies segment n from dev, the log's device, to the store; the
// bytes below from (the log's begin, where the device may have released
// them; a multiple of ssd.SectorSize) go up as zeros. The caller keeps the
// package invariant: every byte of the segment is final.
func (g *Segments) Upload(ctx context.Context, dev ssd.Device, n, from uint64) error {
	if from%ssd.SectorSize != 0 {
		return fmt.Errorf("tier: upload from %d: not a multiple of %d", from, ssd.SectorSize)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(g.readSegment(ctx, dev, n, from, pw)) }()
	err := g.store.Put(ctx, g.Name(n), pr, int64(g.size))
	pr.CloseWithError(err) // ends readSegment if Put stopped early
	if err != nil {
		return fmt.Errorf("tier: upload segment %d of log %s: %w", n, g.logID, err)
	}
	return nil
}

// readSegment writes segment n of dev to w, one aligned chunk at a time,
// zeros below from.
func (g *Segments) readSegment(ctx context.Context, dev ssd.Device, n, from uint64, w io.Writer) error {
	buf := ssd.AlignedBuffer(uploadChunk)
	for off := n * g.size; off < (n+1)*g.size; off += uploadChunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		skip := min(uploadChunk, max(from, off)-off) // bytes of the chunk below from
		clear(buf[:skip])
		if skip < uploadChunk {
			if err := hlog.ReadPage(dev, buf[skip:], off+skip); err != nil {
				return fmt.Errorf("reading the device at %d: %w", off+skip, err)
			}
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}
