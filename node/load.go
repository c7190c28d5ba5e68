package node

import (
	"cmp"
	"context"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetkv/fleetkv/cluster"
)

// idleReport is how often an idle server (under 1 op/s) reports again:
// every report is a write to etcd's history.
const idleReport = 30 * time.Second

// reportLoad reports the server's load to the metadata store every
// loadEvery until ctx ends: its data operations a second over the interval
// and those of its busiest slots (cluster.ServerLoad), for the planner's
// rebalancing; an idle server only every idleReport. A report that fails
// is dropped.
func (m *member) reportLoad(ctx context.Context) {
	defer m.mg.wg.Done()
	tick := time.NewTicker(m.loadEvery)
	defer tick.Stop()
	last := time.Now()
	var seq uint64
	var lastSent time.Time
	idle := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ops, err := m.srv.SlotLoad(ctx)
		now := time.Now()
		if err != nil {
			continue
		}
		l := summarise(ops, now.Sub(last).Seconds(), seq+1)
		last = now
		m.opsPerSec.Store(&l.OpsPerSec)
		if l.OpsPerSec < 1 && idle && now.Sub(lastSent) < idleReport {
			continue // idle and said so: no write to etcd's history
		}
		idle, lastSent, seq = l.OpsPerSec < 1, now, seq+1
		rctx, cancel := context.WithTimeout(ctx, m.timeout)
		err = m.md.ReportLoad(rctx, m.id, l)
		cancel()
		m.warn(ctx, err)
	}
}

// summarise turns per-slot operation counts over secs seconds into a
// ServerLoad: the total and the cluster.MaxReportedSlots busiest slots, by
// slot.
func summarise(ops *[cluster.Slots]uint64, secs float64, seq uint64) cluster.ServerLoad {
	l := cluster.ServerLoad{Seq: seq}
	if secs <= 0 {
		return l
	}
	var total uint64
	for s, n := range ops {
		if n == 0 {
			continue
		}
		total += n
		l.Slots = append(l.Slots, cluster.SlotLoad{Slot: uint16(s), OpsPerSec: float64(n) / secs})
	}
	l.OpsPerSec = float64(total) / secs
	if len(l.Slots) > cluster.MaxReportedSlots {
		slices.SortFunc(l.Slots, func(a, b cluster.SlotLoad) int { return cmp.Compare(b.OpsPerSec, a.OpsPerSec) })
		l.Slots = l.Slots[:cluster.MaxReportedSlots]
		slices.SortFunc(l.Slots, func(a, b cluster.SlotLoad) int { return cmp.Compare(a.Slot, b.Slot) })
	}
	return l
}

// collectors are the member's metrics: its reported load, its
// planner's rebalancing decisions and its fetches as a migration's target.
func (m *member) collectors() []prometheus.Collector {
	d := &m.decisions
	decision := func(what string, n func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fleetkv_rebalance_decisions_total",
			Help:        "What this server's planner decided about load while it led: hot (a server seen turning hot), planned (a plan stored), observed (a plan only logged, --rebalance observe), failed (a plan the store refused).",
			ConstLabels: prometheus.Labels{"decision": what}}, func() float64 { return float64(n()) })
	}
	f := &m.mg.fetches
	fetched := func(what string, n *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fleetkv_migration_fetches_total",
			Help:        "What became of the keys this server, a migration's target, parked reads on and fetched from the source: dropped (the fetch queue was full), asked, then record, absent, below (answered with where the shared tier has it), refused (not lent yet) or lost (no answer within the timeout, or not read from the tier); tier counts the keys read from the tier.",
			ConstLabels: prometheus.Labels{"result": what}}, func() float64 { return float64(n.Load()) })
	}
	return []prometheus.Collector{
		decision("hot", d.Hot.Load), decision("planned", d.Planned.Load),
		decision("observed", d.Observed.Load), decision("failed", d.Failed.Load),
		fetched("dropped", &f.dropped), fetched("asked", &f.asked), fetched("record", &f.record),
		fetched("absent", &f.absent), fetched("below", &f.below), fetched("refused", &f.refused),
		fetched("lost", &f.lost), fetched("tier", &f.tier),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fleetkv_reported_ops_per_second",
			Help: "The data operations a second this server last reported to the metadata store for rebalancing."},
			func() float64 {
				if p := m.opsPerSec.Load(); p != nil {
					return *p
				}
				return 0
			}),
	}
}
