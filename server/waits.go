package server

import (
	"sync/atomic"
	"time"
)

// waitBounds are the upper bounds of waitCounts' buckets.
var waitBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// waitCounts is a histogram of waits that its loop adds to and the admin
// page reads: a count per bucket (the last one past every bound) and the
// sum.
type waitCounts struct {
	buckets [len(waitBounds) + 1]atomic.Uint64
	nanos   atomic.Uint64
}

// observe counts a wait of d.
func (w *waitCounts) observe(d time.Duration) {
	i := 0
	for i < len(waitBounds) && d > waitBounds[i] {
		i++
	}
	w.buckets[i].Add(1)
	w.nanos.Add(uint64(max(d, 0)))
}

// WaitHistogram is a histogram of waits: Counts[i] waited at most
// Bounds[i] and more than the bound before it; the last count waited
// longer than every bound.
type WaitHistogram struct {
	Bounds []float64 `json:"bounds_seconds"`
	Counts []uint64  `json:"counts"`
	Sum    float64   `json:"sum_seconds"`
}

// add adds w's counts to h.
func (h *WaitHistogram) add(w *waitCounts) {
	if h.Bounds == nil {
		for _, b := range waitBounds {
			h.Bounds = append(h.Bounds, b.Seconds())
		}
		h.Counts = make([]uint64, len(w.buckets))
	}
	for i := range w.buckets {
		h.Counts[i] += w.buckets[i].Load()
	}
	h.Sum += float64(w.nanos.Load()) / 1e9
}

// Count returns how many waits h counts.
func (h *WaitHistogram) Count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// cumulative returns h's counts as Prometheus wants them: by upper bound,
// each with every wait at most that long.
func (h *WaitHistogram) cumulative() map[float64]uint64 {
	m := make(map[float64]uint64, len(h.Bounds))
	var n uint64
	for i, b := range h.Bounds {
		n += h.Counts[i]
		m[b] = n
	}
	return m
}
