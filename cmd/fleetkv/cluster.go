package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/cluster/etcdmeta"
	"github.com/fleetkv/fleetkv/clusterctl"
	"github.com/fleetkv/fleetkv/planner"
)

// clusterFlags are the flags every cluster subcommand shares.
type clusterFlags struct {
	name, meta, token string
	timeout           time.Duration
}

func (f *clusterFlags) register(cmd *cobra.Command) {
	fl := cmd.PersistentFlags()
	fl.StringVar(&f.name, "cluster", "local", "the cluster's name")
	fl.StringVar(&f.meta, "meta", "127.0.0.1:2379", "the metadata store's client endpoints, host:port,...")
	fl.StringVar(&f.token, "cluster-token", "", "the cluster's admin token, required by every change once set (init sets it; env FLEETKV_CLUSTER_TOKEN)")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "bound on the whole command")
}

// withAdmin opens the metadata store and runs fn with an Admin over it,
// within --timeout.
func (f *clusterFlags) withAdmin(cmd *cobra.Command, fn func(context.Context, *clusterctl.Admin) error) error {
	return f.withAdminFor(cmd, 0, fn)
}

// withAdminFor is withAdmin within --timeout plus wait.
func (f *clusterFlags) withAdminFor(cmd *cobra.Command, wait time.Duration, fn func(context.Context, *clusterctl.Admin) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout+wait)
	defer cancel()
	st, err := etcdmeta.Dial(etcdmeta.Config{Endpoints: splitList(f.meta), Cluster: f.name,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(ctx, &clusterctl.Admin{MD: st, Tokens: st, Token: f.token})
}

func clusterCmd() *cobra.Command {
	f := &clusterFlags{}
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Create, inspect and change a cluster's slot map; run a local cluster",
		Long: `Operate a fleetkv cluster through its metadata store (--meta, --cluster).

Ownership is by Redis Cluster slot: CRC16 of the key (or its {tag}) mod
16384. The slot map in the metadata store gives ranges of slots to servers;
every server watches it and serves exactly its slots, each under a view
number that grows whenever its slots change (stale clients are told).`,
	}
	f.register(cmd)
	cmd.AddCommand(clusterInitCmd(f), clusterStatusCmd(f), clusterAssignCmd(f), clusterMigrateCmd(f), clusterMigrationsCmd(f),
		clusterCancelCmd(f), clusterAddServerCmd(f), clusterDrainCmd(f), clusterPlansCmd(f), clusterCancelPlanCmd(f), clusterLocalCmd(f))
	return cmd
}

func clusterInitCmd(f *clusterFlags) *cobra.Command {
	var want int
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the slot map: every slot spread evenly over the registered servers",
		Long: `Create the cluster's slot map once: the 16384 slots are spread evenly, in
ranges, over the servers registered now (waiting up to --wait for --servers
of them), in the order of their ids. With --cluster-token the token is
recorded and every later change requires it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withAdmin(cmd, func(ctx context.Context, a *clusterctl.Admin) error {
				m, err := a.Init(ctx, f.name, want, wait)
				if err == nil {
					printMap(cmd.OutOrStdout(), m)
				}
				return err
			})
		},
	}
	cmd.Flags().IntVar(&want, "servers", 1, "wait until this many servers have registered")
	cmd.Flags().DurationVar(&wait, "wait", 10*time.Second, "how long to wait for them")
	return cmd
}

func printMap(w io.Writer, m *cluster.Map) {
	fmt.Fprintf(w, "cluster %s, map epoch %d\n", m.Cluster, m.Epoch)
	for _, id := range m.ServerIDs() {
		owned := m.Owned(id)
		var rs []string
		for _, r := range owned.Ranges() {
			rs = append(rs, r.String())
		}
		fmt.Fprintf(w, "  %-12s view %-4d %5d slots  %s  (native %s, resp %s)\n", id, m.Views[id], owned.Count(),
			strings.Join(rs, ","), m.Servers[id].Native, dashIfEmpty(m.Servers[id].RESP))
	}
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func clusterStatusCmd(f *clusterFlags) *cobra.Command {
	var asJSON bool
	var sample time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the servers, their slot ranges, views, index entries and ops/s",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withAdmin(cmd, func(ctx context.Context, a *clusterctl.Admin) error {
				st, err := a.Status(ctx, f.name, sample)
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					return enc.Encode(st)
				}
				st.WriteTable(cmd.OutOrStdout())
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().DurationVar(&sample, "sample", time.Second, "ops/s are counted over this long")
	return cmd
}

func clusterAssignCmd(f *clusterFlags) *cobra.Command {
	var slots, to string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "assign --slots A-B[,C...] --to ID",
		Short: "Give empty slots to a server",
		Long: `Give slots to a server. Only empty slots may be assigned (their owners are
asked over their admin endpoints); moving slots with data is migration's
job. The previous owner stops serving them first: the new owner takes them
once the previous one reports the view without them, and the command waits
for that (--wait).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs, err := cluster.ParseRanges(slots)
			if err != nil {
				return err
			}
			if to == "" {
				return fmt.Errorf("--to: the server to give the slots to")
			}
			return f.withAdmin(cmd, func(ctx context.Context, a *clusterctl.Admin) error {
				m, err := a.Assign(ctx, rs, cluster.ServerID(to))
				if err != nil {
					return err
				}
				printMap(cmd.OutOrStdout(), m)
				if wait > 0 {
					return a.WaitServing(ctx, m, wait)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&slots, "slots", "", "slots and ranges, e.g. 0-99,200")
	cmd.Flags().StringVar(&to, "to", "", "the server id to give them to")
	cmd.Flags().DurationVar(&wait, "wait", 10*time.Second, "wait this long for the previous owners to hand the slots over (0: do not wait)")
	return cmd
}

func clusterMigrateCmd(f *clusterFlags) *cobra.Command {
	var slots, to string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "migrate --slots A-B[,C...] --to ID",
		Short: "Move slots and their keys to another server while both serve",
		Long: `Start a live migration: the slots' owner (one server; the source) moves
them and every key in them to --to (the target) while both serve. The
source drives it through its phases (sample, prepare, transfer, move,
complete), each stored in the metadata store first; ownership passes to the
target at transfer, and the target holds operations on keys it has not
received yet instead of failing them. A migration that cannot go on (the
target silent, an operator's cancel) is cancelled: every key the target took
goes back to the source. The command prints the phases as they pass, for
up to --wait (0: it returns once the migration is stored; follow it with
'fleetkv cluster migrations').`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs, err := cluster.ParseRanges(slots)
			if err != nil {
				return err
			}
			if to == "" {
				return fmt.Errorf("--to: the server to move the slots to")
			}
			return f.withAdminFor(cmd, max(wait, 0), func(ctx context.Context, a *clusterctl.Admin) error {
				rec, err := a.Migrate(ctx, rs, cluster.ServerID(to))
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "migration %d: %s → %s, slots %s\n", rec.ID, rec.Source, rec.Target, slots)
				if wait <= 0 {
					return nil
				}
				start := time.Now()
				rec, err = a.WaitMigration(ctx, rec.ID, wait, func(m cluster.Migration) {
					fmt.Fprintf(out, "%8.3fs  %s\n", time.Since(start).Seconds(), m.Phase)
				})
				if err != nil {
					return err
				}
				if rec.Phase != cluster.PhaseComplete {
					return fmt.Errorf("migration %d was cancelled: %s", rec.ID, rec.Reason)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&slots, "slots", "", "slots and ranges, e.g. 0-99,200 (all of one server's)")
	cmd.Flags().StringVar(&to, "to", "", "the server id to move them to (a registered server joins the map)")
	cmd.Flags().DurationVar(&wait, "wait", 5*time.Minute, "follow the migration this long (0: do not wait)")
	return cmd
}

func clusterMigrationsCmd(f *clusterFlags) *cobra.Command {
	var asJSON bool
	var watch time.Duration
	cmd := &cobra.Command{
		Use:   "migrations",
		Short: "List the cluster's migrations, running and ended, with the progress of the running ones",
		Long: `List the cluster's migrations. A running one shows its progress, asked
from its servers' admin listeners: the data task running (move, or a
cancelled one's ship-back) with a bar of the slots whose every record was
sent, the records sent and their rate, and the reads its target holds
until their keys arrive. --watch redraws the list every interval until
every migration ended (or Ctrl-C).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if watch < 0 {
				return errors.New("--watch must be 0 (once) or positive")
			}
			var forever time.Duration // --timeout bounds each redraw of --watch, not the watch
			if watch > 0 {
				forever = 100 * 365 * 24 * time.Hour
			}
			return f.withAdminFor(cmd, forever, func(ctx context.Context, a *clusterctl.Admin) error {
				for {
					round, cancel := context.WithTimeout(ctx, f.timeout)
					ms, err := a.Migrations(round)
					var progress map[cluster.MigrationID]clusterctl.Progress
					if err == nil {
						progress = a.MigrationProgress(round, ms)
					}
					cancel()
					if err != nil {
						return err
					}
					out := cmd.OutOrStdout()
					if asJSON {
						enc := json.NewEncoder(out)
						enc.SetIndent("", "  ")
						if err := enc.Encode(migrationsJSON(ms, progress)); err != nil {
							return err
						}
					} else {
						if watch > 0 {
							fmt.Fprint(out, "\033[H\033[2J") // home, clear: redraw in place
						}
						clusterctl.WriteMigrations(out, ms, progress)
					}
					if watch == 0 || len(progress) == 0 {
						return nil // once, or nothing runs any more
					}
					select {
					case <-ctx.Done():
						return nil
					case <-time.After(watch):
					}
				}
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (each migration with its progress)")
	cmd.Flags().DurationVar(&watch, "watch", 0, "redraw every interval (e.g. 500ms) until every migration ended (--timeout bounds each redraw, not the watch); 0: once")
	return cmd
}

// migrationJSON is a migration record with its progress, for --json.
type migrationJSON struct {
	cluster.Migration
	Progress *clusterctl.Progress `json:"progress,omitempty"`
}

func migrationsJSON(ms []cluster.Migration, progress map[cluster.MigrationID]clusterctl.Progress) []migrationJSON {
	out := make([]migrationJSON, len(ms))
	for i, m := range ms {
		out[i].Migration = m
		if p, ok := progress[m.ID]; ok {
			out[i].Progress = &p
		}
	}
	return out
}

func clusterCancelCmd(f *clusterFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a running migration: its slots and keys go back to the source",
		Long: `Ask a migration's source to cancel it. Before ownership passed, the
migration just ends; after, the source takes the slots back and the target
ships every key it took or wrote back to it first. A complete migration
cannot be cancelled (migrate the slots back instead).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("migration id %q: %w", args[0], err)
			}
			return f.withAdmin(cmd, func(ctx context.Context, a *clusterctl.Admin) error {
				rec, err := a.Cancel(ctx, cluster.MigrationID(id))
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "migration %d (%s): cancel requested\n", rec.ID, rec.Phase)
				return nil
			})
		},
	}
	return cmd
}

func clusterAddServerCmd(f *clusterFlags) *cobra.Command {
	return planCmd(f, cluster.PlanAdd, "add-server ID", "Give a server its fair share of the slots, moved live from the others",
		`Plan and carry out the migrations that give server ID (registered, or in
the map already) an even share of the slots: every server that owns slots,
and ID, ends with the same number of slots or one more. Each source gives
the top of what it owns, one migration at a time per source, several
sources at once. The plan is stored in the metadata store; the servers'
elected planner (server --planner) carries it out, and this command drives
it too, printing each change until it ends. Stopped (Ctrl-C, --wait), the
command leaves the plan to the planner; the same command again follows it.
A migration that is cancelled (its target silent) is tried again, 3 times
in all; then the plan fails and starts no more steps.`)
}

func clusterDrainCmd(f *clusterFlags) *cobra.Command {
	return planCmd(f, cluster.PlanDrain, "drain ID", "Move every slot of a server to the others, live; then it can be stopped",
		`Plan and carry out the migrations that move every slot of server ID, and
every key in them, to the other servers that own slots, evenly. Once the
plan is done ID owns no slot and its migrations are complete (each target
has checkpointed what it received), so it can be stopped with nothing lost.
Sources move one range at a time. The plan is stored in the metadata store
and carried out by the servers' elected planner; this command drives it
too and prints each change until it ends (the same command again follows
it).`)
}

// planCmd is the command that starts (or resumes) a plan of kind and
// drives it to its end.
func planCmd(f *clusterFlags, kind cluster.PlanKind, use, short, long string) *cobra.Command {
	var maxSlots int
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if maxSlots < 0 {
				return errors.New("--max-slots must be 0 (no limit) or positive")
			}
			return f.withAdminFor(cmd, max(wait, 0), func(ctx context.Context, a *clusterctl.Admin) error {
				sctx, cancel := context.WithTimeout(ctx, f.timeout) // --wait bounds the driving only
				p, err := a.StartPlan(sctx, kind, cluster.ServerID(args[0]), maxSlots)
				cancel()
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				clusterctl.WritePlan(out, p)
				if wait <= 0 {
					fmt.Fprintf(out, "stored; the servers' elected planner carries it out (follow it with 'fleetkv cluster plans')\n")
					return nil
				}
				if p, err = drivePlan(ctx, cmd, a, p, wait); err == nil && p.Reason != "" {
					err = fmt.Errorf("%s: %s", &p, p.Reason)
				}
				return err
			})
		},
	}
	cmd.Flags().IntVar(&maxSlots, "max-slots", 0, "move at most this many slots per migration (0: a source's whole share at once)")
	cmd.Flags().DurationVar(&wait, "wait", 24*time.Hour, "drive and follow the plan this long (0: store it only, for the servers' planner)")
	return cmd
}

// drivePlan runs plan p until it ends or wait passes, printing a line at
// every change of a step, and returns it ended.
func drivePlan(ctx context.Context, cmd *cobra.Command, a *clusterctl.Admin, p cluster.Plan, wait time.Duration) (cluster.Plan, error) {
	out := cmd.OutOrStdout()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	prev := p
	p, err := a.RunPlan(ctx, p.ID, func(q cluster.Plan) {
		for _, i := range planner.ChangedSteps(prev, q) {
			s := &q.Steps[i]
			fmt.Fprintf(out, "%8.3fs  step %d %s → %s (%d slots): %s", time.Since(start).Seconds(), i+1, s.Source, s.Target, s.Slots(), s.State)
			if s.Migration != 0 {
				fmt.Fprintf(out, ", migration %d", s.Migration)
			}
			if s.Note != "" {
				fmt.Fprintf(out, " (%s)", s.Note)
			}
			fmt.Fprintln(out)
		}
		prev = q
	})
	switch {
	case errors.Is(err, planner.ErrPlanGone):
		fmt.Fprintf(out, "%8.3fs  %s ended while this command did not watch; it is no longer in the store\n", time.Since(start).Seconds(), &p)
		return p, nil
	case err != nil:
		return p, fmt.Errorf("%s not ended; the servers' planner goes on with it (the same command follows it again): %w", &p, err)
	}
	fmt.Fprintf(out, "%8.3fs  %s ended: %s\n", time.Since(start).Seconds(), &p, p.Summary())
	return p, nil
}

func clusterPlansCmd(f *clusterFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "plans",
		Short: "List the cluster's plans (add-server, drain) and their steps",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withAdmin(cmd, func(ctx context.Context, a *clusterctl.Admin) error {
				ps, err := a.Plans(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					return enc.Encode(ps)
				}
				clusterctl.WritePlans(cmd.OutOrStdout(), ps)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func clusterCancelPlanCmd(f *clusterFlags) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "cancel-plan ID",
		Short: "Stop a plan: no more steps start, its running migrations are cancelled",
		Long: `Mark a plan cancelled, then drive it to its end (beside the servers'
elected planner): no more steps start, the migrations of the running ones
are cancelled (their keys go back to their sources), and the plan ends once
they did. Steps done stay done.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("plan id %q: %w", args[0], err)
			}
			return f.withAdminFor(cmd, max(wait, 0), func(ctx context.Context, a *clusterctl.Admin) error {
				cctx, cancel := context.WithTimeout(ctx, f.timeout)
				p, err := a.CancelPlan(cctx, cluster.PlanID(id))
				cancel()
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: cancel requested\n", &p)
				if wait <= 0 {
					return nil
				}
				_, err = drivePlan(ctx, cmd, a, p, wait)
				return err
			})
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 10*time.Minute, "drive the plan to its end this long (0: only mark it)")
	return cmd
}

func clusterLocalCmd(f *clusterFlags) *cobra.Command {
	var dir, memory, drain string
	var portBase, metas, add int
	var planDelay time.Duration
	cmd := &cobra.Command{
		Use:   "local N",
		Short: "Run a cluster of N servers and a metadata store on this machine until Ctrl-C",
		Long: `Start one fleetkv meta member (or --metas of them) and N fleetkv servers as
processes on loopback, their data and logs under --dir, create the slot map
and print how to reach them; stop them all on Ctrl-C. The servers share
DIR/shared as their shared tier (--shared-tier).

For a demo of elasticity, --add K then starts K more servers and gives
each its share of the slots (the plan of 'fleetkv cluster add-server'),
and --drain ID then moves every slot of server ID to the others ('fleetkv
cluster drain') and stops it. Start a load first with --plan-delay.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var n int
			if _, err := fmt.Sscanf(args[0], "%d", &n); err != nil || n < 1 || n > 64 {
				return fmt.Errorf("N = %q: want a number of servers, 1..64", args[0])
			}
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			if dir == "" {
				if dir, err = os.MkdirTemp("", "fleetkv-local-"); err != nil {
					return err
				}
			}
			if dir, err = filepath.Abs(dir); err != nil {
				return err
			}
			mem, err := parseSize(memory)
			if err != nil {
				return fmt.Errorf("--memory: %w", err)
			}
			page := uint64(32 << 20) // the server's default, or an eighth of a small budget
			for page > 1<<20 && page*8 > mem {
				page /= 2
			}
			if add < 0 {
				return errors.New("--add must be 0 or more")
			}
			if err := checkLocalDrain(drain, n+add); err != nil {
				return err
			}
			cfg := clusterctl.LocalConfig{Bin: bin, Dir: dir, Name: f.name, Servers: n, Metas: metas, PortBase: portBase,
				ServerArgs: []string{"--memory", memory, "--page-size", formatSize(page), "--segment-size", "64MiB",
					"--shared-tier", "dir://" + filepath.Join(dir, "shared")}, Token: f.token}
			return runLocal(cmd, cfg, localPlans{add: add, drain: drain, delay: planDelay})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "where the processes keep their data and logs (default: a new temporary directory)")
	cmd.Flags().IntVar(&portBase, "port-base", 0, "server i listens on BASE+10i (native), +1 (RESP), +2 (admin); the meta members on BASE+1000+10j; 0: free ports")
	cmd.Flags().IntVar(&metas, "metas", 1, "metadata store members (3 tolerate the loss of one)")
	cmd.Flags().StringVar(&memory, "memory", "256MiB", "each server's in-memory log budget")
	cmd.Flags().IntVar(&add, "add", 0, "then start this many more servers and add each (a plan moving its share of the slots to it)")
	cmd.Flags().StringVar(&drain, "drain", "", "then drain this server (its slots move to the others) and stop it")
	cmd.Flags().DurationVar(&planDelay, "plan-delay", 0, "wait this long before --add and --drain (time to start a load)")
	return cmd
}

// checkLocalDrain checks, before anything starts, that --drain names one
// of the servers a local cluster will have (s1..sN) and leaves one.
func checkLocalDrain(drain string, servers int) error {
	if drain == "" {
		return nil
	}
	var i int
	if _, err := fmt.Sscanf(drain, "s%d", &i); err != nil || fmt.Sprintf("s%d", i) != drain || i < 1 || i > servers {
		return fmt.Errorf("--drain %q: not one of the servers s1..s%d", drain, servers)
	}
	if servers == 1 {
		return fmt.Errorf("--drain %s: it is the only server; its slots would have nowhere to go", drain)
	}
	return nil
}

// localPlans are the changes runLocal makes once the cluster serves.
type localPlans struct {
	add   int
	drain string
	delay time.Duration
}

// runLocal starts a local cluster, creates its map, prints how to reach
// it, carries out plans, and stops it on SIGINT or SIGTERM.
func runLocal(cmd *cobra.Command, cfg clusterctl.LocalConfig, plans localPlans) error {
	ctx := cmd.Context()
	sig := make(chan os.Signal, 1) // from the start: a signal while it starts stops it once started
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	dialMD := func(endpoints []string) (cluster.Metadata, error) {
		return etcdmeta.Dial(etcdmeta.Config{Endpoints: endpoints, Cluster: cfg.Name, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}
	l, err := clusterctl.StartLocal(ctx, cfg, dialMD)
	if err != nil {
		return err
	}
	defer l.Stop()
	st, err := etcdmeta.Dial(etcdmeta.Config{Endpoints: l.MetaEndpoints(), Cluster: cfg.Name, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	a := &clusterctl.Admin{MD: st, Tokens: st, Token: cfg.Token}
	m, err := a.Init(ctx, cfg.Name, cfg.Servers, 30*time.Second)
	if err == nil {
		err = a.WaitServing(ctx, m, 30*time.Second)
	}
	defer st.Close()
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "fleetkv cluster %q: %d servers, metadata store at %s (data and logs under %s)\n\n", cfg.Name, cfg.Servers,
		strings.Join(l.MetaEndpoints(), ","), cfg.Dir)
	printMap(out, m)
	first := l.Servers[0]
	if plans.drain == first.Name && len(l.Servers) > 1 {
		first = l.Servers[1] // an address that stays
	}
	bin := filepath.Base(cfg.Bin)
	fmt.Fprintf(out, `
Try:
  %[1]s loadgen --servers %[2]s --workload load --keys 1000000
  %[1]s loadgen --servers %[2]s --workload ycsb-b --dist zipf --keys 1000000 --duration 10s --verify
  redis-cli -c -p %[3]s set greeting hello
  redis-benchmark --cluster -p %[3]s -t set,get -P 64 -q
  %[1]s cluster status --meta %[4]s --cluster %[5]s

Ctrl-C stops every process.
`, bin, first.Native, portOf(first.RESP), strings.Join(l.MetaEndpoints(), ","), cfg.Name)
	switch err := runLocalPlans(cmd, l, a, plans, sig); {
	case errors.Is(err, errStopped): // the signal came during the plans
	case err != nil:
		return err
	default:
		<-sig
	}
	fmt.Fprintln(out, "stopping the cluster...")
	return nil
}

// errStopped ends runLocalPlans on a signal: a stop, not a failure.
var errStopped = errors.New("stopped")

// runLocalPlans adds plans.add servers to l, one plan each, then drains
// and stops plans.drain, printing the plans and the map after each; a
// signal on sig stops it with errStopped.
func runLocalPlans(cmd *cobra.Command, l *clusterctl.Local, a *clusterctl.Admin, plans localPlans, sig <-chan os.Signal) (err error) {
	if plans.add == 0 && plans.drain == "" {
		return nil
	}
	ctx, cancel := context.WithCancelCause(cmd.Context())
	defer cancel(nil)
	go func() {
		select {
		case <-sig:
			cancel(errStopped)
		case <-ctx.Done():
		}
	}()
	defer func() {
		if context.Cause(ctx) == errStopped {
			err = errStopped
		}
	}()
	out := cmd.OutOrStdout()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(plans.delay):
	}
	run := func(kind cluster.PlanKind, id cluster.ServerID) error {
		p, err := a.StartPlan(ctx, kind, id, 0)
		if err != nil {
			return err
		}
		fmt.Fprintln(out)
		clusterctl.WritePlan(out, p)
		if p, err = drivePlan(ctx, cmd, a, p, 24*time.Hour); err == nil && p.Reason != "" {
			err = fmt.Errorf("%s: %s", &p, p.Reason)
		}
		if err != nil {
			return err
		}
		st, err := a.MD.Load(ctx)
		if err == nil {
			printMap(out, st.Map)
		}
		return err
	}
	for range plans.add {
		p, err := l.AddServer(ctx, a.MD)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "\nstarted %s (native %s, resp %s, admin %s)\n", p.Name, p.Native, p.RESP, p.Admin)
		if err := run(cluster.PlanAdd, cluster.ServerID(p.Name)); err != nil {
			return err
		}
	}
	if plans.drain == "" {
		return nil
	}
	if err := run(cluster.PlanDrain, cluster.ServerID(plans.drain)); err != nil {
		return err
	}
	for _, p := range l.Servers {
		if p.Name == plans.drain {
			l.Terminate(p, 30*time.Second)
			fmt.Fprintf(out, "stopped %s (pid %d): it owns no slot\n", p.Name, p.PID())
		}
	}
	return nil
}

func portOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return addr[i+1:]
	}
	return addr
}
