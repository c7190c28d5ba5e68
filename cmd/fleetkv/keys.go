package main

import (
	"bufio"
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetkv/fleetkv/client"
)

func keysCmd() *cobra.Command {
	var (
		servers string
		token   string
		count   int
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "keys [PATTERN]",
		Short: "List the keys of a server or a cluster (an incremental SCAN, never a blocking KEYS)",
		Long: `List the keys of a server or of every server of a cluster, one per line,
through the native protocol's SCAN: each server walks its index a run of
buckets at a time, reading keys on the device from it, and answers about
--count keys per call, so a large store is listed without holding up the
servers. PATTERN follows Redis's glob rules (*, ?, [a-z], [^a], \ quotes);
without one every key is listed. A key present for the whole listing is
listed once; one written or deleted meanwhile may or may not be, and one
whose slot moves between servers meanwhile may be missed or listed twice.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addrs := splitList(servers)
			if len(addrs) == 0 {
				return fmt.Errorf("--servers: no address")
			}
			var match []byte
			if len(args) == 1 {
				match = []byte(args[0])
			}
			c, err := client.New(client.Config{Addr: addrs[0], Seeds: addrs[1:], AuthToken: token})
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			out := bufio.NewWriter(cmd.OutOrStdout())
			err = c.Keys(ctx, match, count, func(k []byte) error {
				_, err := fmt.Fprintf(out, "%s\n", k)
				return err
			})
			if ferr := out.Flush(); err == nil {
				err = ferr
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&servers, "servers", "127.0.0.1:7400", "comma-separated server addresses: any servers of the cluster, or the one server")
	fl.StringVar(&token, "auth-token", "", "the servers' --auth-token")
	fl.IntVar(&count, "count", 1000, "keys asked of a server per call")
	fl.DurationVar(&timeout, "timeout", 10*time.Minute, "give up after this long")
	return cmd
}
