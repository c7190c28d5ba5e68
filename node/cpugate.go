package node

import (
	"runtime"
	"sync/atomic"

	"github.com/fleetkv/fleetkv/ssd"
)

// cpuGate lets at most its capacity of a node's resolver workers run at
// once: a worker holds a token while it works and gives it up while it
// waits for the tier (gatedDevice), so reads still overlap (a ranged GET
// on S3 takes milliseconds) while the work beside them takes no more
// CPUs than the loops leave. On 2 CPUs with one loop that is one: 16
// workers at once took both, and the load's throughput fell to 10-25 %
// while a migration's 166 K records were pulled in (BENCHMARKS.md). A nil
// gate lets every worker run. What a worker does while it holds its token
// (rests included) is insertAll's to say.
type cpuGate chan struct{}

// newCPUGate is the gate for a server of loops loops: the CPUs they leave
// (runtime.GOMAXPROCS), at least one.
func newCPUGate(loops int) cpuGate {
	return make(cpuGate, max(1, runtime.GOMAXPROCS(0)-loops))
}

func (g cpuGate) acquire() {
	if g != nil {
		g <- struct{}{}
	}
}

func (g cpuGate) release() {
	if g != nil {
		<-g
	}
}

// gatedDevice is a device read by workers that each hold a token of gate.
// A read that completes before ReadAsync returns (a kept block:
// tier.Reader) keeps the token; one that does not gives it up until its
// callback, which takes it back before the worker sees the outcome.
type gatedDevice struct {
	ssd.Device
	gate cpuGate
}

func (d gatedDevice) ReadAsync(p []byte, off uint64, cb ssd.Callback) {
	if d.gate == nil {
		d.Device.ReadAsync(p, off, cb)
		return
	}
	r := &gatedRead{gate: d.gate, cb: cb}
	d.Device.ReadAsync(p, off, r)
	if r.state.CompareAndSwap(issuing, waiting) {
		d.gate.release() // the callback takes it back
	}
}

// A gatedRead's state: issuing until exactly one of ReadAsync's return
// (waiting) and the callback (doneAtOnce) moves it on.
const (
	issuing int32 = iota
	waiting
	doneAtOnce
)

type gatedRead struct {
	gate  cpuGate
	cb    ssd.Callback
	state atomic.Int32
}

func (r *gatedRead) IODone(n int, err error) {
	if !r.state.CompareAndSwap(issuing, doneAtOnce) {
		r.gate.acquire() // for the worker waiting on cb
	}
	r.cb.IODone(n, err)
}
