// Command fleetkv is the single fleetkv binary: the server, the load
// generator and small tools, as cobra subcommands. It only wires flags to the
// library packages.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fleetkv/fleetkv/server"
)

func main() {
	root := &cobra.Command{
		Use:   "fleetkv",
		Short: "fleetkv: a FASTER/Shadowfax-style key-value server",
		Long: `fleetkv: a FASTER/Shadowfax-style key-value server.

Every flag can also be set with an environment variable FLEETKV_<FLAG>, the
flag's name in upper case with dashes as underscores (FLEETKV_MAX_PENDING_IO
for --max-pending-io); a flag given on the command line wins.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return flagsFromEnv(cmd, os.LookupEnv) },
	}
	root.AddCommand(serverCmd(), loadgenCmd(), metaCmd(), clusterCmd(), keysCmd(), versionCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "fleetkv:", err)
		os.Exit(2)
	}
}

// flagsFromEnv sets every flag of cmd not given on the command line from
// FLEETKV_<FLAG> when that is set.
func flagsFromEnv(cmd *cobra.Command, lookup func(string) (string, bool)) error {
	var err error
	cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		if err != nil || fl.Changed {
			return
		}
		name := envName(fl.Name)
		if v, ok := lookup(name); ok {
			if e := cmd.Flags().Set(fl.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", name, v, e)
			}
		}
	})
	return err
}

// envName is the environment variable of a flag: --max-pending-io is
// FLEETKV_MAX_PENDING_IO.
func envName(flag string) string {
	return "FLEETKV_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "fleetkv", server.Version)
		},
	}
}
