package timeline

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
)

// sample is a 6 s timeline of 100 ms steps: 2 M ops/s, falling to 1 M
// between 3 and 4 s with p99.9 ten times higher there, and two failed
// operations in the step that ends at 3.5 s.
func sample() string {
	var b strings.Builder
	b.WriteString(Header + "\n")
	for i := 1; i <= 60; i++ {
		t := float64(i) / 10
		ops, p999, errs := 2e6, 800, 0
		if t > 3 && t <= 4 {
			ops, p999 = 1e6, 8000
		}
		if i == 35 {
			errs = 2
		}
		fmt.Fprintf(&b, "%.3f,%.0f,100,400,%d,%d\n", t, ops, p999, errs)
	}
	return b.String()
}

func TestRead(t *testing.T) {
	tl, err := Read(strings.NewReader(sample()))
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.T) != 60 || tl.T[0] != 0.1 || tl.Ops[35] != 1e6 || tl.P999us[35] != 8000 || tl.Errors[34] != 2 || tl.Errors[35] != 0 {
		t.Fatalf("read %d rows: t0 %v, ops[35] %v, p999[35] %v, errors[34] %v", len(tl.T), tl.T[0], tl.Ops[35], tl.P999us[35], tl.Errors[34])
	}
	// redis-benchmark's progress as bench-migration.sh keeps it: no latency, no errors.
	tl, err = Read(strings.NewReader("t_s,rps\n0.25,790000\n0.50,801000\n"))
	if err != nil || len(tl.T) != 2 || tl.Ops[1] != 801000 || tl.P999us != nil || tl.Errors != nil {
		t.Fatalf("rps timeline: %+v, %v", tl, err)
	}
}

func TestReadRefusesWhatIsNotATimeline(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"empty", "", "header"},
		{"no throughput", "t_s,p999_us\n1,2\n", "no ops_per_s"},
		{"no rows", Header + "\n", "no rows"},
		{"not a number", Header + "\n0.1,x,1,1,1,0\n", "line 2"},
		{"negative", Header + "\n0.1,-5,1,1,1,0\n", "negative"},
		{"backwards", Header + "\n0.2,5,1,1,1,0\n0.1,5,1,1,1,0\n", "line 3: time 0.1 does not follow 0.2"},
		{"short row", "t_s,ops_per_s,p999_us\n0.1,5\n", "line 2"},
	} {
		_, err := Read(strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.name, err, c.want)
		}
	}
}

func TestMean(t *testing.T) {
	tl, err := Read(strings.NewReader(sample()))
	if err != nil {
		t.Fatal(err)
	}
	m := tl.Mean(1)
	for i, want := range map[int]float64{0: 2e6, 29: 2e6, 34: 1.5e6, 39: 1e6, 44: 1.5e6, 59: 2e6} {
		if math.Abs(m[i]-want) > 1 {
			t.Errorf("mean over 1 s ending at %.1f s: %v, want %v", tl.T[i], m[i], want)
		}
	}
}

func TestParseMark(t *testing.T) {
	m, err := ParseMark("10.25=migrate")
	if err != nil || m.At != 10.25 || m.Label != "migrate" {
		t.Fatalf("ParseMark: %+v, %v", m, err)
	}
	for _, bad := range []string{"", "10.25", "x=migrate", "-1=migrate", "3="} {
		if _, err := ParseMark(bad); err == nil {
			t.Errorf("ParseMark(%q) accepted", bad)
		}
	}
}

// TestWrite draws the sample as SVG and PNG: the SVG holds the title, the
// marks' labels, both charts' axis labels and the failed step's legend;
// a timeline without latency draws one chart.
func TestWrite(t *testing.T) {
	tl, err := Read(strings.NewReader(sample()))
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Title: "a migration", Marks: []Mark{{3, "migrate"}, {4, "moved"}}}
	var svg bytes.Buffer
	if err := Write(&svg, "svg", tl, o); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "a migration", "migrate", "moved", "M ops/s", "p99.9 of each step (ms)",
		"seconds since the load began", "mean over 1 s", "a step with failed operations"} {
		if !bytes.Contains(svg.Bytes(), []byte(want)) {
			t.Errorf("the SVG lacks %q", want)
		}
	}
	var png bytes.Buffer
	if err := Write(&png, "png", tl, o); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png.Bytes(), []byte("\x89PNG\r\n\x1a\n")) || png.Len() < 10_000 {
		t.Errorf("the PNG: %d bytes, starting %q", png.Len(), png.Bytes()[:min(8, png.Len())])
	}

	rps, err := Read(strings.NewReader("t_s,rps\n0.25,790000\n0.50,801000\n0.75,400000\n"))
	if err != nil {
		t.Fatal(err)
	}
	svg.Reset()
	if err := Write(&svg, "svg", rps, Options{}); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(svg.Bytes(), []byte("p99.9")) || !bytes.Contains(svg.Bytes(), []byte("K ops/s")) ||
		bytes.Contains(svg.Bytes(), []byte("failed operations")) {
		t.Error("a timeline without latency or errors: want one chart in K ops/s, no latency, no failed steps")
	}
	if err := Write(&svg, "gif", tl, o); err == nil {
		t.Error("Write accepted the format gif")
	}
}
