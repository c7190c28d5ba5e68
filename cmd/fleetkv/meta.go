package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/fleetkv/fleetkv/cluster/etcdmeta"
)

func metaCmd() *cobra.Command {
	var cfg etcdmeta.MemberConfig
	cmd := &cobra.Command{
		Use:   "meta",
		Short: "Run an embedded etcd member holding clusters' slot maps",
		Long: `Run an embedded etcd member (etcd v3.7) that holds fleetkv clusters' metadata:
slot maps, server registrations and applied views. Servers join a cluster
with --cluster NAME --meta HOST:PORT,... naming these members' --client
addresses (any external etcd cluster works the same way).

One member is a cluster by itself. Several form an etcd cluster with
--initial-cluster name=http://PEER,... listing every member's --name and
--peer address, started together; a majority must be up for the map to
change, while servers keep serving what they own when none is.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := etcdmeta.StartMember(cfg)
			if err != nil {
				return err
			}
			defer m.Close()
			fmt.Fprintf(cmd.ErrOrStderr(), "fleetkv meta %s serving clients on %s\n", cfg.Name, m.ClientAddr())
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
			select {
			case s := <-sig:
				fmt.Fprintf(cmd.ErrOrStderr(), "fleetkv meta %s stopping (%v)\n", cfg.Name, s)
				return nil
			case err := <-m.Err():
				return err
			}
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Name, "name", "meta", "the member's name (in --initial-cluster)")
	fl.StringVar(&cfg.Dir, "dir", "./meta", "the member's data directory")
	fl.StringVar(&cfg.Client, "client", "127.0.0.1:2379", "host:port to serve clients (servers, fleetkv cluster) on")
	fl.StringVar(&cfg.Peer, "peer", "127.0.0.1:2380", "host:port to serve the other members on")
	fl.StringVar(&cfg.InitialCluster, "initial-cluster", "", "every member as name=http://peer-host:port,... when several start together (empty: this one alone)")
	fl.BoolVar(&cfg.Join, "join", false, "join a running etcd cluster (added with etcdctl member add) instead of starting one")
	return cmd
}
