package timeline

import (
	"fmt"
	"image/color"
	"io"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Options says what a chart shows besides the timeline.
type Options struct {
	Title string
	Marks []Mark
	// Window is the span of the mean drawn over the throughput, in
	// seconds (0: 1 s).
	Window float64
}

// Formats are the formats Write draws.
var Formats = []string{"svg", "png"}

var (
	faint  = color.RGBA{R: 150, G: 170, B: 200, A: 255}
	strong = color.RGBA{R: 20, G: 70, B: 160, A: 255}
	late   = color.RGBA{R: 190, G: 90, B: 20, A: 255}
	failed = color.RGBA{R: 210, G: 20, B: 20, A: 255}
	marked = color.RGBA{R: 90, G: 90, B: 90, A: 255}
)

// Write draws tl as format (one of Formats) to w: throughput above (each
// step, and its mean over Options.Window), with the steps that had errors
// marked on it, p99.9 below when tl has it; Options.Marks are drawn
// across both.
func Write(w io.Writer, format string, tl *Timeline, o Options) error {
	if !slices.Contains(Formats, format) {
		return fmt.Errorf("timeline: format %q, want one of %v", format, Formats)
	}
	if o.Window == 0 {
		o.Window = 1
	}
	if o.Window < 0 {
		return fmt.Errorf("timeline: window %v s", o.Window)
	}
	plots, err := charts(tl, o)
	if err != nil {
		return err
	}
	width, height := 24*vg.Centimeter, vg.Length(len(plots))*8*vg.Centimeter
	var c vg.CanvasWriterTo
	if format == "svg" {
		c = vgsvg.New(width, height)
	} else {
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(110))}
	}
	grid := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		grid[i] = []*plot.Plot{p}
	}
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadX: vg.Millimeter, PadY: 3 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	for i, dc := range plot.Align(grid, tiles, draw.New(c)) {
		plots[i].Draw(dc[0])
	}
	_, err = c.WriteTo(w)
	return err
}

// charts builds the throughput chart and, when tl has latency, the p99.9
// chart below it.
func charts(tl *Timeline, o Options) ([]*plot.Plot, error) {
	tp, err := throughputChart(tl, o)
	if err != nil {
		return nil, err
	}
	if tl.P999us == nil {
		tp.X.Label.Text = "seconds since the load began"
		return []*plot.Plot{tp}, nil
	}
	lp, err := latencyChart(tl, o)
	if err != nil {
		return nil, err
	}
	lp.X.Min, lp.X.Max = tp.X.Min, tp.X.Max
	return []*plot.Plot{tp, lp}, nil
}

func throughputChart(tl *Timeline, o Options) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = o.Title
	scale, unit := unitOf(slices.Max(tl.Ops))
	p.Y.Label.Text = unit
	p.Y.Min = 0
	raw, err := line(tl.T, tl.Ops, scale, faint, 0.6)
	if err != nil {
		return nil, err
	}
	mean, err := line(tl.T, tl.Mean(o.Window), scale, strong, 1.6)
	if err != nil {
		return nil, err
	}
	plain(p)
	p.Add(plotter.NewGrid(), raw, mean)
	p.Legend.Add("each step", raw)
	p.Legend.Add(fmt.Sprintf("mean over %g s", o.Window), mean)
	if err := addErrors(p, tl, scale); err != nil {
		return nil, err
	}
	p.Legend.Top, p.Legend.Left = false, true
	p.X.Min = 0 // the load's start (times are never negative: Read)
	p.Y.Max = slices.Max(tl.Ops) * scale * 1.12
	return p, addMarks(p, o.Marks, p.Y.Max, true)
}

func latencyChart(tl *Timeline, o Options) (*plot.Plot, error) {
	p := plot.New()
	p.X.Label.Text = "seconds since the load began"
	p.Y.Label.Text = "p99.9 of each step (ms)"
	p.Y.Min = 0
	l, err := line(tl.T, tl.P999us, 1e-3, late, 1)
	if err != nil {
		return nil, err
	}
	plain(p)
	p.Add(plotter.NewGrid(), l)
	p.Y.Max = max(slices.Max(tl.P999us)*1e-3*1.08, 1e-3)
	return p, addMarks(p, o.Marks, p.Y.Max, false)
}

// plain labels p's ticks where gonum's default puts them, with no more
// digits than each needs (25, not 25.00).
func plain(p *plot.Plot) {
	t := plot.TickerFunc(func(lo, hi float64) []plot.Tick {
		ticks := plot.DefaultTicks{}.Ticks(lo, hi)
		for i := range ticks {
			if ticks[i].Label != "" {
				ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'g', 6, 64)
			}
		}
		return ticks
	})
	p.X.Tick.Marker, p.Y.Tick.Marker = t, t
}

// unitOf returns the scale and the axis label for throughput up to top.
func unitOf(top float64) (float64, string) {
	switch {
	case top >= 1e6:
		return 1e-6, "M ops/s"
	case top >= 1e3:
		return 1e-3, "K ops/s"
	}
	return 1, "ops/s"
}

func line(t, y []float64, scale float64, c color.Color, width vg.Length) (*plotter.Line, error) {
	xy := make(plotter.XYs, len(t))
	for i := range t {
		xy[i] = plotter.XY{X: t[i], Y: y[i] * scale}
	}
	l, err := plotter.NewLine(xy)
	if err != nil {
		return nil, err
	}
	l.Color, l.Width = c, width
	return l, nil
}

// addErrors marks on p's throughput the steps in which operations failed.
func addErrors(p *plot.Plot, tl *Timeline, scale float64) error {
	var xy plotter.XYs
	for i, e := range tl.Errors {
		if e > 0 {
			xy = append(xy, plotter.XY{X: tl.T[i], Y: tl.Ops[i] * scale})
		}
	}
	if len(xy) == 0 {
		return nil
	}
	s, err := plotter.NewScatter(xy)
	if err != nil {
		return err
	}
	s.Color, s.Shape, s.Radius = failed, draw.CrossGlyph{}, 3
	p.Add(s)
	p.Legend.Add("a step with failed operations", s)
	return nil
}

// addMarks draws each mark as a dashed line across p up to top, with its
// label when labelled.
func addMarks(p *plot.Plot, marks []Mark, top float64, labelled bool) error {
	var at plotter.XYs
	var labels []string
	for _, m := range marks {
		l, err := plotter.NewLine(plotter.XYs{{X: m.At, Y: 0}, {X: m.At, Y: top}})
		if err != nil {
			return err
		}
		l.Color, l.Dashes = marked, []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l)
		at, labels = append(at, plotter.XY{X: m.At, Y: top * 0.97}), append(labels, " "+m.Label)
	}
	if !labelled || len(marks) == 0 {
		return nil
	}
	ls, err := plotter.NewLabels(plotter.XYLabels{XYs: at, Labels: labels})
	if err != nil {
		return err
	}
	p.Add(ls)
	return nil
}
