package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/server/servertest"
)

// TestKeysCommand: fleetkv keys lists a server's keys, all of them or
// those a pattern matches, one per line.
func TestKeysCommand(t *testing.T) {
	srv := servertest.Start(t, servertest.Config())
	c, err := client.New(client.Config{Addr: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 250 {
		if err := c.Set(context.Background(), []byte(fmt.Sprint("k:", i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		args []string
		n    int
	}{{nil, 250}, {[]string{"k:1?"}, 10}, {[]string{"nomatch*"}, 0}} {
		cmd := keysCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs(append([]string{"--servers", srv.Addr(), "--count", "7"}, tc.args...))
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		lines := strings.Fields(out.String())
		slices.Sort(lines)
		if len(lines) != tc.n || len(slices.Compact(lines)) != tc.n {
			t.Fatalf("fleetkv keys %q: %d lines (%q...), want %d distinct", tc.args, len(lines), lines[:min(3, len(lines))], tc.n)
		}
	}
}
