package clusterctl

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
)

// Status is a cluster's state as `fleetkv cluster status` shows it.
type Status struct {
	Cluster string         `json:"cluster"`
	Epoch   uint64         `json:"map_epoch"` // 0: no map yet
	Servers []ServerStatus `json:"servers"`
}

// ServerStatus is one server's line.
type ServerStatus struct {
	ID      cluster.ServerID `json:"id"`
	Native  string           `json:"native"`
	RESP    string           `json:"resp,omitempty"`
	Admin   string           `json:"admin,omitempty"`
	Live    bool             `json:"live"` // registered now
	InMap   bool             `json:"in_map"`
	View    uint64           `json:"view"`    // in the map
	Applied uint64           `json:"applied"` // the view it reported serving under
	Slots   int              `json:"slots"`   // assigned by the map
	Ranges  string           `json:"ranges"`
	// From the server's admin /stats (absent when it did not answer):
	Entries   int64   `json:"index_entries"` // index entries: keys, deleted ones until compaction
	OpsPerSec float64 `json:"ops_per_sec"`
	Error     string  `json:"error,omitempty"`
}

// serverStats is the part of a server's /stats that status reads.
type serverStats struct {
	Ops   map[string]int64 `json:"ops"`
	Store struct {
		Index struct {
			Entries int64 `json:"entries"`
		} `json:"index"`
	} `json:"store"`
}

// Status reads the cluster's state, and each reachable server's stats
// twice, sample apart, for its ops/s.
func (a *Admin) Status(ctx context.Context, name string, sample time.Duration) (Status, error) {
	st, err := a.MD.Load(ctx)
	if err != nil {
		return Status{}, err
	}
	out := Status{Cluster: name}
	byID := map[cluster.ServerID]*ServerStatus{}
	add := func(s cluster.Server) *ServerStatus {
		if ss, ok := byID[s.ID]; ok {
			return ss
		}
		ss := &ServerStatus{ID: s.ID, Native: s.Native, RESP: s.RESP, Admin: s.Admin}
		byID[s.ID] = ss
		return ss
	}
	if m := st.Map; m != nil {
		out.Epoch = m.Epoch
		for _, id := range m.ServerIDs() {
			ss := add(m.Servers[id])
			ss.InMap, ss.View = true, m.Views[id]
			owned := m.Owned(id)
			ss.Slots, ss.Ranges = owned.Count(), cluster.FormatRanges(owned.Ranges())
		}
	}
	for _, s := range st.Live {
		ss := add(s)
		ss.Native, ss.RESP, ss.Admin, ss.Live = s.Native, s.RESP, s.Admin, true
	}
	for id, ss := range byID {
		ss.Applied = st.Applied[id]
	}
	a.sampleStats(ctx, byID, sample)
	for _, id := range sortedIDs(byID) {
		out.Servers = append(out.Servers, *byID[id])
	}
	return out, nil
}

// sampleStats fills entries and ops/s from each live server's /stats.
func (a *Admin) sampleStats(ctx context.Context, byID map[cluster.ServerID]*ServerStatus, sample time.Duration) {
	first := map[cluster.ServerID]serverStats{}
	for id, ss := range byID {
		var s serverStats
		if !ss.Live || ss.Admin == "" {
			continue
		}
		if err := a.GetJSON(ctx, "http://"+ss.Admin+"/stats", &s); err != nil {
			ss.Error = err.Error()
			continue
		}
		first[id] = s
	}
	if len(first) == 0 {
		return
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(sample):
	}
	for id, s0 := range first {
		ss := byID[id]
		var s1 serverStats
		if err := a.GetJSON(ctx, "http://"+ss.Admin+"/stats", &s1); err != nil {
			ss.Error = err.Error()
			continue
		}
		ss.Entries = s1.Store.Index.Entries
		ss.OpsPerSec = float64(sumOps(s1.Ops)-sumOps(s0.Ops)) / time.Since(t0).Seconds()
	}
}

func sumOps(m map[string]int64) int64 {
	n := int64(0)
	for op, v := range m {
		if op != "control" {
			n += v
		}
	}
	return n
}

func sortedIDs(m map[cluster.ServerID]*ServerStatus) []cluster.ServerID {
	return slices.Sorted(maps.Keys(m))
}

// WriteTable prints the status as a table.
func (s Status) WriteTable(w io.Writer) {
	if s.Epoch == 0 {
		fmt.Fprintf(w, "cluster %s: no slot map yet (fleetkv cluster init)\n", s.Cluster)
	} else {
		fmt.Fprintf(w, "cluster %s, map epoch %d\n", s.Cluster, s.Epoch)
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tSTATE\tNATIVE\tRESP\tADMIN\tVIEW\tAPPLIED\tSLOTS\tRANGES\tENTRIES\tOPS/S")
	for _, ss := range s.Servers {
		state := "up"
		switch {
		case !ss.Live:
			state = "down"
		case ss.Error != "":
			state = "unreachable"
		case !ss.InMap:
			state = "up, no slots"
		}
		ranges := ss.Ranges
		if len(ranges) > 40 {
			ranges = ranges[:37] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%d\t%.0f\n", ss.ID, state, ss.Native, dash(ss.RESP), dash(ss.Admin),
			ss.View, ss.Applied, ss.Slots, dash(ranges), ss.Entries, ss.OpsPerSec)
	}
	tw.Flush()
}

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
