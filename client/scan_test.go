package client_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/fleetkv/fleetkv/client"
)

// TestKeysOverACluster: Client.Keys walks every key of both servers of a
// cluster, a few at a time, with and without a pattern; a bad count and
// an error from fn end it.
func TestKeysOverACluster(t *testing.T) {
	_, b, _ := twoServers(t)
	c, err := client.New(client.Config{Addr: b.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	var want, wantMatch []string
	for i := range 3000 {
		k := fmt.Sprint("user:", i)
		must(t, c.Set(ctx, []byte(k), []byte("v")))
		want = append(want, k)
		if fmt.Sprint(i)[0] == '7' {
			wantMatch = append(wantMatch, k)
		}
	}
	if _, err := c.Delete(ctx, []byte("user:0")); err != nil {
		t.Fatal(err)
	}
	want = want[1:]
	for _, tc := range []struct {
		match string
		want  []string
	}{{"", want}, {"user:7*", wantMatch}} {
		var got []string
		err := c.Keys(ctx, []byte(tc.match), 100, func(k []byte) error {
			got = append(got, string(k))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		slices.Sort(tc.want)
		if !slices.Equal(got, tc.want) {
			t.Fatalf("Keys(%q): %d keys, want %d", tc.match, len(got), len(tc.want))
		}
	}
	stop := fmt.Errorf("enough")
	if err := c.Keys(ctx, nil, 10, func([]byte) error { return stop }); err != stop {
		t.Fatalf("an error from fn: Keys returned %v", err)
	}
	if err := c.Keys(ctx, nil, 0, func([]byte) error { return nil }); err == nil {
		t.Fatal("a count of 0 was accepted")
	}
}
