package cluster

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// PlanRebalance is a plan the planner made itself: one step moving
// slots from a hot server to the coolest (Rebalancer).
const PlanRebalance PlanKind = "rebalance"

// RebalanceMode says what the planner does about load: nothing, log the
// plans it would make, or make them.
type RebalanceMode string

const (
	RebalanceOff     RebalanceMode = "off"
	RebalanceObserve RebalanceMode = "observe"
	RebalanceOn      RebalanceMode = "on"
)

// ParseRebalanceMode parses off, observe or on.
func ParseRebalanceMode(s string) (RebalanceMode, error) {
	switch m := RebalanceMode(s); m {
	case RebalanceOff, RebalanceObserve, RebalanceOn:
		return m, nil
	}
	return "", fmt.Errorf("cluster: rebalance mode %q: want off, observe or on", s)
}

// RebalanceConfig tunes the Rebalancer; zero fields take their defaults.
type RebalanceConfig struct {
	Mode RebalanceMode
	// Window is how long a server stays hot before slots move off it
	// (default 10 s).
	Window time.Duration
	// Floor is the load, in operations a second, a hot server must exceed
	// as well (default 1000).
	Floor float64
	// Ratio is how many times the mean a hot server's load must exceed as
	// well (default 1.25): with three servers the busiest is nearly
	// always above the mean plus one standard deviation.
	Ratio float64
	// Cooldown is how long after a plan ended (or the planner started)
	// no rebalance is made (default 60 s).
	Cooldown time.Duration
	// NoMoveBack is how long a slot a rebalance moved stays where it went
	// (default 5 min).
	NoMoveBack time.Duration
}

func (c RebalanceConfig) withDefaults() RebalanceConfig {
	if c.Mode == "" {
		c.Mode = RebalanceOff
	}
	if c.Window == 0 {
		c.Window = 10 * time.Second
	}
	if c.Floor == 0 {
		c.Floor = 1000
	}
	if c.Ratio == 0 {
		c.Ratio = 1.25
	}
	if c.Cooldown == 0 {
		c.Cooldown = 60 * time.Second
	}
	if c.NoMoveBack == 0 {
		c.NoMoveBack = 5 * time.Minute
	}
	return c
}

// Rebalancer decides, from the loads the servers report (State.Loads),
// when a server has been hot long enough and which slots move off it.
// It is pure: the caller passes the time, and stores the plan Step returns
// (RebalanceOn) or logs it (RebalanceObserve).
//
// A server is hot while its operations a second exceed the mean over the
// servers that report plus one standard deviation, Ratio times that mean,
// and Floor. Once one
// server has been the hot one for Window, and no plan or migration has run
// for Cooldown, Step plans one migration to the coolest server of load
// min(hot − mean, mean − coolest): a single slot that carries that much is
// moved alone; otherwise the busiest run of the hot server's slots is
// split where its sampled load, counted down from its busiest top slot,
// reaches it (the run's slots above that one carry no sampled load and
// stay). Slots a
// rebalance moved within NoMoveBack are not moved (no thrash).
type Rebalancer struct {
	cfg       RebalanceConfig
	hot       ServerID  // the server hot since hotSince ("": none)
	hotSince  time.Time //
	idleSince time.Time // when no plan or migration last began to run; zero: not seen yet
}

// NewRebalancer returns a rebalancer that waits a Cooldown from its first
// Step before it plans.
func NewRebalancer(cfg RebalanceConfig) *Rebalancer {
	return &Rebalancer{cfg: cfg.withDefaults()}
}

// Config returns the configuration with its defaults.
func (r *Rebalancer) Config() RebalanceConfig { return r.cfg }

// Decision is what a Step decided: a plan to store (or, observing, to log),
// and a note on why, for the log ("" when nothing changed).
type Decision struct {
	Plan *Plan
	Note string
}

// Step looks at st at time now.
func (r *Rebalancer) Step(st State, now time.Time) Decision {
	if r.cfg.Mode == RebalanceOff || st.Map == nil {
		return Decision{}
	}
	if busy(st) {
		r.hot, r.idleSince = "", time.Time{}
		return Decision{}
	}
	if r.idleSince.IsZero() {
		r.idleSince = now
	}
	loads := reported(st)
	if len(loads) < 2 {
		return Decision{}
	}
	mean, sd := meanSD(loads)
	hot, cool := extremes(loads)
	if len(loads) == 2 {
		sd = 0 // of two, the busier is always exactly mean + sd: Ratio decides
	}
	if loads[hot] <= mean+sd || loads[hot] <= r.cfg.Floor || loads[hot] <= r.cfg.Ratio*mean {
		r.hot = ""
		return Decision{}
	}
	if r.hot != hot {
		r.hot, r.hotSince = hot, now
		return Decision{Note: fmt.Sprintf("%s is hot: %.0f ops/s, mean %.0f, sd %.0f", hot, loads[hot], mean, sd)}
	}
	if now.Sub(r.hotSince) < r.cfg.Window || now.Sub(r.idleSince) < r.cfg.Cooldown {
		return Decision{}
	}
	amount := min(loads[hot]-mean, mean-loads[cool])
	rs, moved := r.pick(st, hot, amount, now)
	r.hot = ""
	r.idleSince = now // observing, the next note waits a Cooldown too
	if len(rs) == 0 {
		return Decision{Note: fmt.Sprintf("%s is hot (%.0f ops/s) but no sampled slot of it may move", hot, loads[hot])}
	}
	if max(loads[hot]-moved, loads[cool]+moved) >= loads[hot] {
		// Moving the hot spot only moves it (one slot too hot to split):
		// nothing would be better, and the next round would move it back.
		return Decision{Note: fmt.Sprintf("%s is hot (%.0f ops/s) but its busiest movable slots (%v, %.0f ops/s) would only make %s as hot",
			hot, loads[hot], rs, moved, cool)}
	}
	p := &Plan{Kind: PlanRebalance, Server: hot, At: now,
		Steps: []Step{{Source: hot, Target: cool, Ranges: rs, State: StepPending}}}
	for _, o := range st.Plans {
		p.ID = max(p.ID, o.ID)
	}
	p.ID++
	return Decision{Plan: p, Note: fmt.Sprintf("%s hot for %v at %.0f ops/s (mean %.0f, sd %.0f): slots %v, %.0f ops/s sampled, to %s (%.0f ops/s)",
		hot, now.Sub(r.hotSince).Round(time.Second), loads[hot], mean, sd, rs, moved, cool, loads[cool])}
}

// busy reports whether a plan or a migration runs.
func busy(st State) bool {
	for _, p := range st.Plans {
		if !p.Ended {
			return true
		}
	}
	for i := range st.Migrations {
		if !st.Migrations[i].Phase.Final() {
			return true
		}
	}
	return false
}

// reported returns the operations a second of every live server that owns
// slots and reported its load. A server that owns none (drained, or not
// added yet) is neither counted nor a target: add-server gives it slots.
func reported(st State) map[ServerID]float64 {
	out := map[ServerID]float64{}
	owners := map[ServerID]bool{}
	for _, a := range st.Map.Ranges {
		owners[a.Owner] = true
	}
	for id := range owners {
		l, ok := st.Loads[id]
		if _, live := st.Live[id]; ok && live {
			out[id] = l.OpsPerSec
		}
	}
	return out
}

func meanSD(loads map[ServerID]float64) (mean, sd float64) {
	for _, v := range loads {
		mean += v
	}
	mean /= float64(len(loads))
	for _, v := range loads {
		sd += (v - mean) * (v - mean)
	}
	return mean, math.Sqrt(sd / float64(len(loads)))
}

// extremes returns the busiest and the least busy server (ties: the
// lowest id).
func extremes(loads map[ServerID]float64) (hot, cool ServerID) {
	ids := slices.Sorted(maps.Keys(loads))
	hot, cool = ids[0], ids[0]
	for _, id := range ids[1:] {
		if loads[id] > loads[hot] {
			hot = id
		}
		if loads[id] < loads[cool] {
			cool = id
		}
	}
	return hot, cool
}

// pick returns the ranges of hot's slots to move for amount operations a
// second, and their sampled load.
func (r *Rebalancer) pick(st State, hot ServerID, amount float64, now time.Time) ([]Range, float64) {
	movable := *st.Map.Serving(hot, st.Applied)
	movable.subtract(r.recentlyMoved(st, now))
	load := map[uint16]float64{}
	var top SlotLoad
	for _, sl := range st.Loads[hot].Slots {
		if movable.Has(sl.Slot) {
			load[sl.Slot] = sl.OpsPerSec
			if sl.OpsPerSec > top.OpsPerSec {
				top = sl
			}
		}
	}
	if len(load) == 0 {
		return nil, 0
	}
	if top.OpsPerSec >= amount {
		return []Range{{top.Slot, top.Slot}}, top.OpsPerSec // a single hot slot moves whole
	}
	var best Range
	bestLoad := -1.0
	for _, run := range movable.Ranges() {
		sum := 0.0
		for s := int(run.First); s <= int(run.Last); s++ {
			sum += load[uint16(s)]
		}
		if sum > bestLoad {
			best, bestLoad = run, sum
		}
	}
	last := int(best.Last)
	for last > int(best.First) && load[uint16(last)] == 0 {
		last-- // the run's cold top stays: moving it moves data, not load
	}
	first, moved := last, 0.0
	for ; first >= int(best.First); first-- {
		moved += load[uint16(first)]
		if moved >= amount {
			break
		}
	}
	first = max(first, int(best.First))
	if first == int(best.First) && last == int(best.Last) && best.Len() > 1 && best.Len() == st.Map.Owned(hot).Count() {
		first++ // never every slot of the server
		moved -= load[best.First]
	}
	return []Range{{uint16(first), uint16(last)}}, moved
}

// recentlyMoved returns the slots rebalance plans started within
// NoMoveBack moved (or were to move).
func (r *Rebalancer) recentlyMoved(st State, now time.Time) *SlotSet {
	var t SlotSet
	for _, p := range st.Plans {
		if p.Kind != PlanRebalance || now.Sub(p.At) >= r.cfg.NoMoveBack {
			continue
		}
		for _, s := range p.Steps {
			for _, rg := range s.Ranges {
				t.Add(rg)
			}
		}
	}
	return &t
}
