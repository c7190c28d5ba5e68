package node

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fleetkv/fleetkv/cluster"
)

// clusterDir is where a member keeps its id and routing.
func clusterDir(dataDir string) string { return filepath.Join(dataDir, "cluster") }

// resolveID returns the member's id: the one given (recorded in dir for
// the next start), else the one recorded, else a new one.
func resolveID(dir string, given cluster.ServerID) (cluster.ServerID, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("node: %w", err)
	}
	name := filepath.Join(dir, "server-id")
	b, err := os.ReadFile(name)
	switch {
	case err == nil:
		old := cluster.ServerID(strings.TrimSpace(string(b)))
		if given != "" && given != old {
			return "", fmt.Errorf("node: %s was server %q, not %q: give that id or another directory", dir, old, given)
		}
		return old, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("node: %w", err)
	}
	id := given
	if id == "" {
		var r [6]byte
		if _, err := rand.Read(r[:]); err != nil {
			return "", err
		}
		id = cluster.ServerID("s-" + hex.EncodeToString(r[:]))
	}
	if err := validID(id); err != nil {
		return "", err
	}
	return id, writeSynced(name, []byte(string(id)+"\n"))
}

// validID accepts ids of letters, digits, '-', '_' and '.', up to 64 bytes:
// they appear in metadata keys and in Redis's CLUSTER NODES.
func validID(id cluster.ServerID) error {
	if len(id) == 0 || len(id) > 64 {
		return fmt.Errorf("node: server id %q: 1 to 64 bytes", id)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("node: server id %q: letters, digits, '-', '_' and '.' only", id)
		}
	}
	return nil
}

// routingFile is the routing a member persisted: what it served when it
// last confirmed a routing on every loop.
type routingFile struct{ dir string }

type persistedRouting struct {
	Cluster string          `json:"cluster"`
	Server  string          `json:"server"`
	View    uint64          `json:"view"`
	Serving []cluster.Range `json:"serving"`
	Map     *cluster.Map    `json:"map"`
}

func (f routingFile) path() string { return filepath.Join(f.dir, "routing.json") }

// load returns the persisted routing; nil when there is none. One of
// another cluster or server is an error.
func (f routingFile) load(name string, id cluster.ServerID) (*cluster.Routing, error) {
	b, err := os.ReadFile(f.path())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	var p persistedRouting
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("node: %s: %w", f.path(), err)
	}
	if p.Cluster != name || p.Server != string(id) || p.Map == nil {
		return nil, fmt.Errorf("node: %s belongs to server %q of cluster %q, not %q of %q", f.path(), p.Server, p.Cluster, id, name)
	}
	if err := p.Map.Validate(); err != nil {
		return nil, fmt.Errorf("node: %s: %w", f.path(), err)
	}
	return &cluster.Routing{View: p.View, Serving: slotSet(p.Serving), Map: p.Map}, nil
}

// save persists r durably (temporary file, fsync, rename, fsync of the
// directory).
func (f routingFile) save(name string, id cluster.ServerID, r *cluster.Routing) error {
	b, err := json.Marshal(persistedRouting{Cluster: name, Server: string(id), View: r.View, Serving: r.Serving.Ranges(), Map: r.Map})
	if err != nil {
		return err
	}
	return writeSynced(f.path(), b)
}

// writeSynced replaces name with b durably.
func writeSynced(name string, b []byte) error {
	tmp := name + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	_, err = fh.Write(b)
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err == nil {
		err = syncDir(filepath.Dir(name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("node: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// holdsFile is the migration holds a member persisted
// (cluster.Migrator's Holds): what its loops hold and accept, and the
// records it resumes from after a restart.
type holdsFile struct{ dir string }

type persistedHolds struct {
	Cluster  string                         `json:"cluster"`
	Server   string                         `json:"server"`
	Version  uint64                         `json:"version"`
	Hold     []cluster.Range                `json:"hold"`
	Misses   []cluster.Range                `json:"misses"`
	Accept   []persistedAccept              `json:"accept"`
	Lend     []persistedAccept              `json:"lend,omitempty"`
	Sample   []persistedAccept              `json:"sample,omitempty"`
	Prepared map[cluster.MigrationID]uint64 `json:"prepared"`
	Save     []cluster.Migration            `json:"migrations"`
}

type persistedAccept struct {
	ID    cluster.MigrationID `json:"id"`
	Slots []cluster.Range     `json:"slots"`
	Since uint64              `json:"since"`
}

func (f holdsFile) path() string { return filepath.Join(f.dir, "holds.json") }

// load returns the persisted holds; nil when there are none.
func (f holdsFile) load(name string, id cluster.ServerID) (*cluster.Holds, error) {
	b, err := os.ReadFile(f.path())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	var p persistedHolds
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("node: %s: %w", f.path(), err)
	}
	if p.Cluster != name || p.Server != string(id) {
		return nil, fmt.Errorf("node: %s belongs to server %q of cluster %q, not %q of %q", f.path(), p.Server, p.Cluster, id, name)
	}
	h := &cluster.Holds{Version: p.Version, Hold: slotSet(p.Hold), Misses: slotSet(p.Misses), Prepared: p.Prepared, Save: p.Save}
	h.Accept, h.Lend, h.Sample = fromPersisted(p.Accept), fromPersisted(p.Lend), fromPersisted(p.Sample)
	return h, nil
}

// save persists h durably.
func (f holdsFile) save(name string, id cluster.ServerID, h *cluster.Holds) error {
	p := persistedHolds{Cluster: name, Server: string(id), Version: h.Version, Hold: h.Hold.Ranges(), Misses: h.Misses.Ranges(),
		Prepared: h.Prepared, Save: h.Save}
	p.Accept, p.Lend, p.Sample = toPersisted(h.Accept), toPersisted(h.Lend), toPersisted(h.Sample)
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return writeSynced(f.path(), b)
}

func toPersisted(as []cluster.Accepting) []persistedAccept {
	var out []persistedAccept
	for _, a := range as {
		out = append(out, persistedAccept{ID: a.ID, Slots: a.Slots.Ranges(), Since: a.Since})
	}
	return out
}

func fromPersisted(ps []persistedAccept) []cluster.Accepting {
	var out []cluster.Accepting
	for _, a := range ps {
		out = append(out, cluster.Accepting{ID: a.ID, Slots: slotSet(a.Slots), Since: a.Since})
	}
	return out
}

func slotSet(rs []cluster.Range) *cluster.SlotSet {
	var t cluster.SlotSet
	for _, r := range rs {
		t.Add(r)
	}
	return &t
}

// nextIncarnation counts a start of the server on the data in dir and
// returns the count: every start's differs from every earlier one's.
func nextIncarnation(dir string) (uint64, error) {
	name := filepath.Join(dir, "incarnation")
	var n uint64
	b, err := os.ReadFile(name)
	switch {
	case err == nil:
		if n, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil {
			return 0, fmt.Errorf("node: %s: %w", name, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return 0, fmt.Errorf("node: %w", err)
	}
	n++
	return n, writeSynced(name, []byte(strconv.FormatUint(n, 10)+"\n"))
}
