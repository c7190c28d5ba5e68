package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetkv/fleetkv/loadgen/timeline"
)

func plotCmd() *cobra.Command {
	var (
		out, title string
		marks      []string
		window     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "plot TIMELINE.csv",
		Short: "Draw a timeline that loadgen --timeline wrote as an SVG or PNG chart",
		Long: `Draw a timeline that loadgen --timeline wrote (or any CSV with t_s and
ops_per_s or rps columns, and optionally p999_us and errors) as a chart:
throughput above (each step, and its mean over --window), the steps that
had failed operations marked on it, p99.9 below. --mark draws a moment of
the run across both, such as a migration's start and end:

  fleetkv loadgen plot run.csv --out run.svg --mark 10.2=migrate --mark 14.8=moved

The format follows --out's extension: .svg or .png.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format := strings.TrimPrefix(filepath.Ext(out), ".")
			if out == "" || !slices.Contains(timeline.Formats, format) {
				return fmt.Errorf("--out %q: name an .svg or .png file", out)
			}
			o := timeline.Options{Title: title, Window: window.Seconds()}
			for _, m := range marks {
				mk, err := timeline.ParseMark(m)
				if err != nil {
					return fmt.Errorf("--mark: %w", err)
				}
				o.Marks = append(o.Marks, mk)
			}
			if o.Window <= 0 {
				return fmt.Errorf("--window %v: want a positive span", window)
			}
			tl, err := readTimeline(args[0])
			if err != nil {
				return err
			}
			return writeChart(out, format, tl, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&out, "out", "", "the chart's file: .svg or .png")
	fl.StringVar(&title, "title", "", "the chart's title")
	fl.StringArrayVar(&marks, "mark", nil, "SECONDS=LABEL: a moment to draw, in seconds since the load began (repeatable)")
	fl.DurationVar(&window, "window", time.Second, "the span of the mean drawn over the throughput")
	return cmd
}

func readTimeline(path string) (*timeline.Timeline, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tl, err := timeline.Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tl, nil
}

// writeChart writes the chart to a temporary file beside out and renames
// it: a failed draw leaves no partial chart.
func writeChart(out, format string, tl *timeline.Timeline, o timeline.Options) error {
	f, err := os.CreateTemp(filepath.Dir(out), ".plot-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := timeline.Write(f, format, tl, o); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), out)
}
