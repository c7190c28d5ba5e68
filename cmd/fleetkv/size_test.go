package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/fleetkv/fleetkv/server"
)

func TestParseSize(t *testing.T) {
	good := map[string]uint64{
		"0": 0, "4096": 4096, "64KiB": 64 << 10, "256MiB": 256 << 20, "1GiB": 1 << 30,
		"1gib": 1 << 30, "2G": 2 << 30, "3 MB": 3 << 20, "512B": 512, "1TiB": 1 << 40,
	}
	for in, want := range good {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "12x", "-1", "1.5GiB", "99999999999TiB", "GiB"} {
		if n, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, n)
		}
	}
	for _, n := range []uint64{0, 1, 4096, 1 << 20, 3 << 30, 1000} {
		back, err := parseSize(formatSize(n))
		if err != nil || back != n {
			t.Errorf("formatSize(%d) = %q does not parse back (%d, %v)", n, formatSize(n), back, err)
		}
	}
}

func TestServerFlagsRejectBadValues(t *testing.T) {
	for _, args := range [][]string{
		{"--page-size", "3MiB"},
		{"--memory", "lots"},
		{"--max-key", "8GiB"},
		{"--mutable-fraction", "1.5"},
		{"--loops", "-2"},
		{"--log-level", "chatty"},
		{"--index-bits", "64"},
		{"--io", "floppy"},
		{"--segment-size", "3MiB"},
		{"--segment-size", "64KiB"},
		{"--segment-size", "1MiB", "--page-size", "4MiB"},
		{"--max-batch", "0"},
		{"--log-format", "xml"},
		{"--checkpoint-mode", "fsync"},
		{"--max-input", "2TiB"},
		{"--tier-segment-size", "3MiB"},
		{"--tier-segment-size", "1MiB", "--page-size", "4MiB"},
		{"--shared-tier", "/just/a/path"},
		{"--cluster", "c"},
		{"--migration-max-sampled", "-1"},
		{"--migration-max-sampled-bytes", "2TiB"},
	} {
		cmd := newServerCmd(func(_ *cobra.Command, f serverFlags) error {
			_, err := f.nodeConfig()
			return err
		})
		cmd.SetArgs(args)
		cmd.SetOut(new(nopWriter))
		cmd.SetErr(new(nopWriter))
		if err := cmd.Execute(); err == nil {
			t.Errorf("server %v: accepted, want a clear error", args)
		}
	}
	ok := newServerCmd(func(_ *cobra.Command, f serverFlags) error {
		cfg, err := f.config()
		if err == nil && cfg.MaxInput != 64<<20 {
			t.Errorf("--max-input 64MiB gave MaxInput %d", cfg.MaxInput)
		}
		if err == nil && cfg.MaxSampled != server.Off {
			t.Errorf("--migration-max-sampled 0 gave MaxSampled %d, want Off", cfg.MaxSampled)
		}
		if err == nil && cfg.MaxSampledBytes != 4<<20 {
			t.Errorf("--migration-max-sampled-bytes 4MiB gave MaxSampledBytes %d", cfg.MaxSampledBytes)
		}
		return err
	})
	ok.SetArgs([]string{"--memory", "256MiB", "--page-size", "1MiB", "--loops", "2", "--checkpoint-mode", "snapshot", "--max-input", "64MiB", "--migration-max-sampled", "0", "--migration-max-sampled-bytes", "4MiB"})
	if err := ok.Execute(); err != nil {
		t.Errorf("good flags rejected: %v", err)
	}
}

type nopWriter struct{}

func (*nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// TestFlagsFromEnvironment: FLEETKV_<FLAG> sets a flag the command line did
// not give; the command line wins; a bad value is an error naming the
// variable.
func TestFlagsFromEnvironment(t *testing.T) {
	env := map[string]string{"FLEETKV_MAX_PENDING_IO": "77", "FLEETKV_LOOPS": "3", "FLEETKV_RESP": "127.0.0.1:6379"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	var got serverFlags
	cmd := newServerCmd(func(_ *cobra.Command, f serverFlags) error { got = f; return nil })
	cmd.PersistentPreRunE = func(c *cobra.Command, _ []string) error { return flagsFromEnv(c, lookup) }
	cmd.SetArgs([]string{"--loops", "2"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.maxPendingIO != 77 || got.loops != 2 || got.resp != "127.0.0.1:6379" {
		t.Errorf("max-pending-io %d (want 77), loops %d (want 2, the command line's), resp %q", got.maxPendingIO, got.loops, got.resp)
	}
	env["FLEETKV_MEMORY"] = "lots"
	cmd = newServerCmd(func(*cobra.Command, serverFlags) error { return nil })
	cmd.PersistentPreRunE = func(c *cobra.Command, _ []string) error { return flagsFromEnv(c, lookup) }
	cmd.SetArgs(nil)
	cmd.SetErr(new(nopWriter))
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "FLEETKV_MEMORY") {
		t.Errorf("bad FLEETKV_MEMORY: %v, want an error naming it", err)
	}
}
