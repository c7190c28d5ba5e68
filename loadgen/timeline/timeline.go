// Package timeline reads the load generator's timeline (a CSV row per
// step: throughput, latency quantiles, errors) and draws it, with the
// moments a run marks (a migration's start and end), as an SVG or PNG
// chart: throughput above, p99.9 below, on one time axis.
package timeline

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Header is the timeline's CSV header as the load generator writes it.
const Header = "t_s,ops_per_s,p50_us,p99_us,p999_us,errors"

// Timeline is a load's timeline: row i covers the step that ended T[i]
// seconds after the load began.
type Timeline struct {
	T      []float64 // seconds since the load began
	Ops    []float64 // throughput in the step, per second
	P999us []float64 // p99.9 latency of the step in µs; nil when the file has none
	Errors []float64 // failed operations in the step; nil when the file has none
}

// Read parses a timeline: a header naming t_s and the throughput
// (ops_per_s, or rps as redis-benchmark's progress, which
// scripts/bench-migration.sh keeps in the same form), optionally p999_us
// and errors; other columns are ignored. Rows must go forward in time.
func Read(r io.Reader) (*Timeline, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("timeline: header: %w", err)
	}
	col := func(names ...string) int {
		for i, h := range head {
			if slices.Contains(names, strings.TrimSpace(h)) {
				return i
			}
		}
		return -1
	}
	ti, oi, pi, ei := col("t_s"), col("ops_per_s", "rps"), col("p999_us"), col("errors")
	if ti < 0 || oi < 0 {
		return nil, errors.New("timeline: the header names no t_s or no ops_per_s (or rps) column")
	}
	tl := &Timeline{}
	if pi >= 0 {
		tl.P999us = []float64{}
	}
	if ei >= 0 {
		tl.Errors = []float64{}
	}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("timeline: %w", err)
		}
		if err := tl.add(rec, ti, oi, pi, ei); err != nil {
			return nil, fmt.Errorf("timeline: line %d: %w", line, err)
		}
	}
	if len(tl.T) == 0 {
		return nil, errors.New("timeline: no rows")
	}
	return tl, nil
}

// add appends the row rec, whose columns are at ti, oi, pi and ei (-1:
// absent).
func (tl *Timeline) add(rec []string, ti, oi, pi, ei int) error {
	num := func(i int) (float64, error) {
		if i >= len(rec) {
			return 0, fmt.Errorf("%d columns, want at least %d", len(rec), i+1)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rec[i]), 64)
		if err != nil {
			return 0, err
		}
		if v < 0 {
			return 0, fmt.Errorf("negative value %v", v)
		}
		return v, nil
	}
	t, err := num(ti)
	if err != nil {
		return err
	}
	if n := len(tl.T); n > 0 && t <= tl.T[n-1] {
		return fmt.Errorf("time %v does not follow %v", t, tl.T[n-1])
	}
	ops, err := num(oi)
	if err != nil {
		return err
	}
	tl.T, tl.Ops = append(tl.T, t), append(tl.Ops, ops)
	for _, c := range []struct {
		i   int
		dst *[]float64
	}{{pi, &tl.P999us}, {ei, &tl.Errors}} {
		if c.i < 0 {
			continue
		}
		v, err := num(c.i)
		if err != nil {
			return err
		}
		*c.dst = append(*c.dst, v)
	}
	return nil
}

// Mean returns the mean throughput over the window seconds that end at
// each row (fewer at the start): the 1 s figures a run's report gives. A
// window of 0 or less is each row's own figure.
func (tl *Timeline) Mean(window float64) []float64 {
	out := make([]float64, len(tl.T))
	if window <= 0 {
		copy(out, tl.Ops)
		return out
	}
	first, sum := 0, 0.0
	for i, t := range tl.T {
		sum += tl.Ops[i]
		for tl.T[first] <= t-window {
			sum -= tl.Ops[first]
			first++
		}
		out[i] = sum / float64(i-first+1)
	}
	return out
}

// Mark is a moment of the run to draw on the chart.
type Mark struct {
	At    float64 // seconds since the load began
	Label string
}

// ParseMark parses SECONDS=LABEL.
func ParseMark(s string) (Mark, error) {
	at, label, ok := strings.Cut(s, "=")
	v, err := strconv.ParseFloat(at, 64)
	if !ok || err != nil || v < 0 || label == "" {
		return Mark{}, fmt.Errorf("mark %q: want SECONDS=LABEL, seconds since the load began", s)
	}
	return Mark{At: v, Label: label}, nil
}
