package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/fleetkv/fleetkv/checkpoint"
	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/hlog"
	"github.com/fleetkv/fleetkv/server"
	"github.com/fleetkv/fleetkv/ssd"
)

// Config configures one process.
type Config struct {
	// Dir is the data directory: the log under Dir/log, checkpoints under
	// Dir/checkpoints, a member's id and routing under Dir/cluster.
	Dir string
	// Server configures the server; Start sets its Checkpoints, its log
	// device and, in a cluster, its ServerID and Routing.
	Server server.Config
	// Device configures the log's segment files.
	Device DeviceConfig
	// Cluster makes the process a member of a cluster; a zero Name: a
	// standalone server.
	Cluster ClusterConfig
	// Tier is the shared tier the log's sealed segments go to; a zero URL:
	// none.
	Tier TierConfig
	Log  *slog.Logger
}

// DeviceConfig configures the segment files under Dir/log.
type DeviceConfig struct {
	SegmentSize uint64 // a power of two; default 1 GiB
	IO          string // ssd.IOUring or ssd.IOPread; "": io_uring where it works
	Depth       int    // io_uring entries or pread workers; 0: the engine's default
}

// Node is one running process. Its methods are safe from any goroutine.
type Node struct {
	cfg    Config
	dev    *ssd.FileDevice
	srv    *server.Server
	member *member     // nil for a standalone server
	sealer *sealer     // nil without a shared tier
	ind    *indirector // a member's with a shared tier, else nil
	logID  string      // DIR/log-id: names this log in the shared tier
	lock   *dirLock    // DIR/LOCK, released last by Shutdown
}

// Start locks and opens the data directory, starts the server and, in a
// cluster, joins it.
func Start(cfg Config) (*Node, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Device.SegmentSize == 0 {
		cfg.Device.SegmentSize = 1 << 30
	}
	lock, err := lockDir(cfg.Dir, cfg.Log)
	if err != nil {
		return nil, err
	}
	n, err := start(cfg, lock)
	if err != nil {
		lock.release()
		return nil, err
	}
	return n, nil
}

// start is Start once the directory is locked.
func start(cfg Config, lock *dirLock) (*Node, error) {
	n := &Node{cfg: cfg, lock: lock}
	ckpts, err := checkpoint.Open(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if n.dev, err = openLogDevice(cfg, ckpts); err != nil {
		return nil, err
	}
	_, recovering, _ := ckpts.Latest() // openLogDevice read it without error
	if n.logID, err = logIdentity(cfg.Dir, recovering); err != nil {
		n.dev.Close()
		return nil, err
	}
	if cfg.Tier.URL != "" {
		if n.sealer, err = openSealer(cfg.Tier, pageSize(cfg.Server.Store.Log), n.logID, n.dev, cfg.Log); err != nil {
			n.dev.Close()
			return nil, err
		}
	}
	scfg := cfg.Server
	scfg.Checkpoints = ckpts
	scfg.AdminRoutes = n.dashboardRoutes
	scfg.Store.Log.Device = n.dev
	if cfg.Cluster.Name != "" {
		if n.member, err = prepareMember(cfg, &scfg); err != nil {
			n.dev.Close()
			return nil, err
		}
		if err := n.prepareIndirections(cfg, &scfg); err != nil {
			n.closeMember()
			n.dev.Close()
			return nil, err
		}
	}
	if n.srv, err = server.Start(scfg, cfg.Log); err != nil {
		if n.ind != nil {
			n.ind.close()
		}
		n.closeMember()
		n.dev.Close()
		return nil, err
	}
	if n.ind != nil {
		n.ind.srv = n.srv // before the member runs tasks that take tables
		n.ind.cpus = newCPUGate(n.srv.Loops())
	}
	if n.sealer != nil {
		n.sealer.run(n.srv) // before the member runs moves that pin
	}
	if n.member != nil {
		n.member.start(n.srv)
	}
	if n.ind != nil {
		if err := n.ind.resolveAll(); err != nil {
			n.Shutdown(context.Background())
			return nil, err
		}
	}
	return n, nil
}

// Server returns the node's server.
func (n *Node) Server() *server.Server { return n.srv }

// ID returns the node's server id in its cluster ("" when standalone).
func (n *Node) ID() cluster.ServerID {
	if n.member == nil {
		return ""
	}
	return n.member.id
}

// Shutdown leaves the cluster (the registration lapses; the slots stay
// assigned), stops the server and closes the device.
func (n *Node) Shutdown(ctx context.Context) error {
	errs := []error{n.closeMember()} // its tasks end first: they take tables and pin
	if n.ind != nil {
		n.ind.close()
	}
	if n.sealer != nil {
		n.sealer.close()
	}
	err := n.srv.Shutdown(ctx)
	errs = append(errs, err, n.dev.Close())
	if err == nil || ctx.Err() == nil {
		// Stopped: a server cut short by ctx may still run, and the
		// directory stays locked while this process lives.
		n.lock.release()
	}
	return errors.Join(errs...)
}

func (n *Node) closeMember() error {
	if n.member == nil {
		return nil
	}
	return n.member.close()
}

// openLogDevice opens the segment files under Dir/log. They are kept when
// the checkpoint directory records a checkpoint (the server recovers it); a
// log without one holds nothing durable and is deleted.
func openLogDevice(cfg Config, ckpts *checkpoint.Dir) (*ssd.FileDevice, error) {
	dir := filepath.Join(cfg.Dir, "log")
	_, recovering, err := ckpts.Latest()
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", cfg.Dir, err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "log.*"))
	if len(old) > 0 && !recovering {
		cfg.Log.Warn("deleting a log that no checkpoint covers", "dir", dir, "files", len(old))
		for _, p := range old {
			if err := os.Remove(p); err != nil {
				return nil, fmt.Errorf("data directory %s: %w", cfg.Dir, err)
			}
		}
	}
	dev, err := ssd.OpenFile(ssd.FileConfig{Dir: dir, SegmentSize: cfg.Device.SegmentSize, IO: cfg.Device.IO, Log: cfg.Log,
		RingEntries: uint32(cfg.Device.Depth), Workers: cfg.Device.Depth})
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", cfg.Dir, err)
	}
	return dev, nil
}

// pageSize is the log's page size under c.
func pageSize(c hlog.Config) uint64 {
	if c.PageBits == 0 {
		return 1 << hlog.DefaultPageBits
	}
	return 1 << c.PageBits
}

// prepareIndirections gives a member with a shared tier its indirector,
// which installs the tables kept under DIR/cluster/indirections when the
// store is recovered, before the server serves. Without a tier, such
// tables are an error: their keys would read as absent.
func (n *Node) prepareIndirections(cfg Config, scfg *server.Config) error {
	if n.sealer == nil {
		kept, _ := filepath.Glob(filepath.Join(clusterDir(cfg.Dir), "indirections", "*.tbl"))
		if len(kept) > 0 {
			return fmt.Errorf("node: %s holds %d unresolved indirection tables: start with the --shared-tier they were made with", cfg.Dir, len(kept))
		}
		return nil
	}
	n.ind = newIndirector(n.sealer.segs.Store(), cfg.Dir, cfg.Cluster.Name, n.logID, cfg.Cluster.MigrationRate, cfg.Log)
	n.ind.gate = cfg.Cluster.resolveGate
	n.member.sealer, n.member.ind = n.sealer, n.ind
	scfg.Recovered = n.ind.reinstall
	return nil
}
