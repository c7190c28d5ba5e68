package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetkv/fleetkv/loadgen/timeline"
)

// TestPlotCommand: fleetkv loadgen plot draws a timeline as the --out
// file's extension says, with the marks given, and refuses a bad --out,
// --mark or timeline with a clear error and no chart.
func TestPlotCommand(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "run.csv")
	rows := timeline.Header + "\n0.1,1000,5,9,12,0\n0.2,1500,5,9,40,1\n0.3,900,5,9,15,0\n"
	if err := os.WriteFile(csv, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) error {
		cmd := loadgenCmd()
		cmd.SetArgs(append([]string{"plot"}, args...))
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		return cmd.Execute()
	}
	svg := filepath.Join(dir, "run.svg")
	if err := run(csv, "--out", svg, "--mark", "0.15=migrate", "--title", "one run"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(svg)
	if err != nil || !bytes.HasPrefix(bytes.TrimSpace(b), []byte("<?xml")) || !bytes.Contains(b, []byte("migrate")) || !bytes.Contains(b, []byte("one run")) {
		t.Fatalf("the SVG (%d bytes, %v) lacks its header, mark or title", len(b), err)
	}
	png := filepath.Join(dir, "run.png")
	if err := run(csv, "--out", png); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("the PNG: %v", err)
	}
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("t_s,what\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{csv, "--out", filepath.Join(dir, "x.gif")}, "--out"},
		{[]string{csv}, "--out"},
		{[]string{csv, "--out", filepath.Join(dir, "x.svg"), "--mark", "soon"}, "--mark"},
		{[]string{csv, "--out", filepath.Join(dir, "x.svg"), "--window", "0s"}, "--window"},
		{[]string{filepath.Join(dir, "none.csv"), "--out", filepath.Join(dir, "x.svg")}, "no such file"},
		{[]string{bad, "--out", filepath.Join(dir, "x.svg")}, "bad.csv: timeline"},
	} {
		err := run(c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("plot %q: %v, want an error naming %q", c.args, err, c.want)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(left) != 4 { // run.csv, run.svg, run.png, bad.csv
		t.Errorf("files left: %q", left)
	}
}
