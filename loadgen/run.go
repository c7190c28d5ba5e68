package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/fleetkv/fleetkv/loadgen/timeline"
)

// Report is a run's outcome; its JSON form is what --json writes.
type Report struct {
	Workload       string  `json:"workload"`
	Dist           string  `json:"dist"`
	Keys           uint64  `json:"keys"`
	ValueSize      int     `json:"value_size"`
	Threads        int     `json:"threads"`
	Sessions       int     `json:"sessions_per_thread"`
	BatchBytes     int     `json:"batch_bytes"`
	InFlight       int     `json:"in_flight"`
	Transport      string  `json:"transport"`
	ClosedLoop     bool    `json:"closed_loop"` // one operation in flight per thread
	Seconds        float64 `json:"seconds"`
	Ops            uint64  `json:"ops"`
	OpsPerSec      float64 `json:"ops_per_sec"`
	Errors         uint64  `json:"errors"`
	VerifyFailures uint64  `json:"verify_failures"`
	FirstProblem   string  `json:"first_problem,omitempty"`
	P50us          float64 `json:"p50_us"`
	P99us          float64 `json:"p99_us"`
	P999us         float64 `json:"p999_us"`
	MaxUs          float64 `json:"max_us"`
	Routed         bool    `json:"routed"`            // through Clusters (by slot), not plain sessions
	MapFetches     uint64  `json:"map_fetches"`       // slot maps the Clusters fetched
	Rerouted       uint64  `json:"rerouted_ops"`      // operations refused NOT_OWNER and re-issued
	ViewChanges    uint64  `json:"view_changed_seen"` // VIEW_CHANGED answers the Clusters saw
}

// Run executes one load run. It prints a progress line per second to
// progress (if not nil) and returns the report; operations that failed are
// counted in the report, not returned as an error.
func Run(ctx context.Context, cfg Config, progress io.Writer) (Report, error) {
	if err := cfg.fill(); err != nil {
		return Report{}, err
	}
	base := time.Now()
	intervals := make(chan *hdr.Histogram, 64)
	threads := make([]*thread, cfg.Threads)
	for i := range threads {
		t, err := newThread(i, &cfg, base, cfg.Warmup, intervals)
		if err != nil {
			for _, t := range threads[:i] {
				t.close()
			}
			return Report{}, err
		}
		threads[i] = t
	}
	stopProgress := startProgress(progress, &cfg, threads, intervals, base)
	errs := make([]error, len(threads))
	var wg sync.WaitGroup
	for i, t := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = t.run(ctx)
		}()
	}
	wg.Wait()
	stopProgress()
	rep := report(cfg, threads, time.Duration(cfg.Warmup))
	for _, t := range threads {
		t.close()
	}
	return rep, errors.Join(errs...)
}

// run is one thread's loop.
func (t *thread) run(ctx context.Context) error {
	if t.cfg.Workload == "load" {
		return t.load()
	}
	end := t.measure + int64(t.cfg.Duration)
	limit := t.cfg.Ops
	lastSwap := int64(0)
	for n := uint64(0); ; n++ {
		j := int(n % uint64(t.cfg.Sessions))
		k, kind := t.pick(j)
		if err := t.issue(k, kind, j); err != nil {
			return err
		}
		if t.cfg.ClosedLoop {
			if err := t.sessions[j].Wait(); err != nil {
				return err
			}
		}
		if n&1023 != 0 {
			continue
		}
		now := int64(time.Since(t.base))
		if now-lastSwap > int64(t.swapEvery()) {
			t.swapInterval()
			lastSwap = now
		}
		if (t.cfg.Duration > 0 && now >= end) || (limit > 0 && t.measured >= limit) || ctx.Err() != nil {
			break
		}
	}
	if err := t.waitAll(); err != nil {
		return err
	}
	if t.cfg.Verify {
		return t.verifyCounters()
	}
	return nil
}

// load inserts this thread's share of keys 0..Keys-1 once. In verify mode
// each key goes through the session that owns it.
func (t *thread) load() error {
	if t.cfg.Verify {
		g := t.globalSessions()
		for j := 0; j < t.cfg.Sessions; j++ {
			for k := uint64(t.id*t.cfg.Sessions + j); k < t.cfg.Keys; k += g {
				if err := t.issue(k, kindUpsert, j); err != nil {
					return err
				}
			}
		}
		return t.waitAll()
	}
	step := uint64(t.cfg.Threads)
	for k := uint64(t.id); k < t.cfg.Keys; k += step {
		if err := t.issue(k, kindUpsert, int(k/step)%t.cfg.Sessions); err != nil {
			return err
		}
	}
	return t.waitAll()
}

// swapEvery is how often a thread hands its interval's histogram on: a
// second, or the timeline's step.
func (t *thread) swapEvery() time.Duration {
	if t.cfg.Timeline != nil {
		return min(t.cfg.TimelineEvery, time.Second)
	}
	return time.Second
}

// swapInterval hands the last interval's histogram to the progress printer.
func (t *thread) swapInterval() {
	select {
	case t.intervals <- t.interval:
		t.interval = newHist()
	default:
	}
}

func report(cfg Config, threads []*thread, warmup time.Duration) Report {
	h := newHist()
	r := Report{Workload: cfg.Workload, Dist: cfg.Dist, Keys: cfg.Keys, ValueSize: cfg.ValueSize,
		Threads: cfg.Threads, Sessions: cfg.Sessions, BatchBytes: cfg.BatchBytes, InFlight: cfg.InFlight,
		Transport: cfg.Transport, ClosedLoop: cfg.ClosedLoop, Routed: !cfg.NoRoute}
	var last int64
	for _, t := range threads {
		rs := t.routeStats()
		r.MapFetches += rs.Fetches
		r.Rerouted += rs.Rerouted
		r.ViewChanges += rs.ViewMoves
		h.Merge(t.hist)
		r.Ops += t.measured
		r.Errors += t.errs.Load()
		r.VerifyFailures += t.bad.Load()
		last = max(last, t.lastDone)
		if p := t.firstBad.Load(); p != nil && r.FirstProblem == "" {
			r.FirstProblem = *p
		}
	}
	r.Seconds = time.Duration(last - int64(warmup)).Seconds()
	if r.Seconds > 0 {
		r.OpsPerSec = float64(r.Ops) / r.Seconds
	}
	r.P50us = float64(h.ValueAtQuantile(50))
	r.P99us = float64(h.ValueAtQuantile(99))
	r.P999us = float64(h.ValueAtQuantile(99.9))
	r.MaxUs = float64(h.Max())
	return r
}

// startProgress prints one line per second and, with a timeline, a CSV
// row every TimelineEvery; the returned func stops it.
func startProgress(w io.Writer, cfg *Config, threads []*thread, intervals <-chan *hdr.Histogram, base time.Time) func() {
	stop, done := make(chan struct{}), make(chan struct{})
	step := time.Second
	if cfg.Timeline != nil {
		step = min(cfg.TimelineEvery, time.Second)
		fmt.Fprintln(cfg.Timeline, timeline.Header)
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(step)
		defer tick.Stop()
		sec, slice := newProgressWindow(), newProgressWindow()
		lastLine := time.Now()
		for {
			select {
			case <-stop:
				return
			case h := <-intervals:
				sec.hist.Merge(h)
				slice.hist.Merge(h)
			case <-tick.C:
				var ops, errs uint64
				for _, t := range threads {
					ops += t.done.Load()
					errs += t.errs.Load()
				}
				now := time.Now()
				if cfg.Timeline != nil {
					slice.row(cfg.Timeline, now.Sub(base), ops, errs)
				}
				if now.Sub(lastLine) >= time.Second-step/2 {
					sec.line(w, now.Sub(base), ops, errs)
					lastLine = now
				}
			}
		}
	}()
	return func() { close(stop); <-done }
}

// progressWindow is what completed since the last report of one cadence.
type progressWindow struct {
	hist    *hdr.Histogram
	ops     uint64
	errs    uint64
	started time.Time
}

func newProgressWindow() *progressWindow {
	return &progressWindow{hist: newHist(), started: time.Now()}
}

// line prints the second's progress line (w nil: nothing) and starts the
// next window.
func (p *progressWindow) line(w io.Writer, at time.Duration, ops, errs uint64) {
	if w != nil {
		p99 := "     -" // no interval histogram arrived in this second
		if p.hist.TotalCount() > 0 {
			p99 = fmt.Sprintf("%6d", p.hist.ValueAtQuantile(99))
		}
		fmt.Fprintf(w, "%6.1fs  %10.0f ops/s  p99 %s us  errors %d\n", at.Seconds(),
			float64(ops-p.ops)/time.Since(p.started).Seconds(), p99, errs)
	}
	p.next(ops, errs)
}

// row writes the window's timeline row and starts the next window.
func (p *progressWindow) row(w io.Writer, at time.Duration, ops, errs uint64) {
	q := func(pct float64) int64 {
		if p.hist.TotalCount() == 0 {
			return 0
		}
		return p.hist.ValueAtQuantile(pct)
	}
	fmt.Fprintf(w, "%.3f,%.0f,%d,%d,%d,%d\n", at.Seconds(), float64(ops-p.ops)/time.Since(p.started).Seconds(),
		q(50), q(99), q(99.9), errs-p.errs)
	p.next(ops, errs)
}

func (p *progressWindow) next(ops, errs uint64) {
	p.hist.Reset()
	p.ops, p.errs, p.started = ops, errs, time.Now()
}
