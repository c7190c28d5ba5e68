package server

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetkv/fleetkv/client"
	"github.com/fleetkv/fleetkv/session"
)

// TestSessionResumesAtItsCommitPoint: a session writes, waits until its
// writes are durable (commit point T), writes more; the data directory is
// copied as it stands (what a crash would leave) and a second server
// recovers the copy. Resuming the session there is answered T: the writes
// after T are gone and the client re-issues them with the serials after
// T. On the first server, still running, resuming the closed session is
// answered its last executed serial instead. Unknown and busy ids are
// refused.
func TestSessionResumesAtItsCommitPoint(t *testing.T) {
	dir := t.TempDir()
	s1, dev1 := durableServer(t, dir)
	defer shutdown(t, s1, dev1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a := dialSession(t, client.Config{Addr: s1.Addr()})
	set := func(cs *client.Session, round, from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := cs.Upsert(fmt.Appendf(nil, "k%d", i), fmt.Appendf(nil, "v%d", round), nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := cs.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	set(a, 1, 0, 50)
	if err := a.WaitDurable(ctx); err != nil {
		t.Fatal(err)
	}
	commit := a.Durable()
	set(a, 2, 0, 10) // executed, not durable
	if commit != 50 || a.LastSerial() != 60 {
		t.Fatalf("commit point %d, last serial %d; want 50, 60", commit, a.LastSerial())
	}
	if _, err := client.Dial(client.Config{Addr: s1.Addr(), Resume: a.ID()}); err == nil || !strings.Contains(err.Error(), "open on another connection") {
		t.Fatalf("resuming a session that is open: %v", err)
	}
	if _, err := client.Dial(client.Config{Addr: s1.Addr(), Resume: 1 << 40}); err == nil || !strings.Contains(err.Error(), "unknown session") {
		t.Fatalf("resuming an unknown session: %v", err)
	}

	crashed := t.TempDir()
	copyDir(t, dir, crashed)
	s2, dev2 := durableServer(t, crashed)
	defer shutdown(t, s2, dev2)
	b := dialSession(t, client.Config{Addr: s2.Addr(), Resume: a.ID()})
	if b.ID() != a.ID() || b.ResumedAt() != commit || b.Durable() != commit {
		t.Fatalf("resumed after the crash: id %d at %d, durable %d; want %d at %d", b.ID(), b.ResumedAt(), b.Durable(), a.ID(), commit)
	}
	expect(t, b, 0, 10, "v1") // the writes after the commit point are gone
	// A new session after the restart gets an id of a later incarnation:
	// ids given out after the checkpoint are never given again.
	if n := dialSession(t, client.Config{Addr: s2.Addr()}); n.ID()>>32 <= a.ID()>>32 {
		t.Fatalf("new session id %#x after a restart, the crashed run gave out %#x", n.ID(), a.ID())
	}
	set(b, 2, 0, 10) // re-issued after it
	if b.LastSerial() != commit+10+10 {
		t.Fatalf("last serial %d after 10 reads and 10 writes from %d", b.LastSerial(), commit)
	}
	expect(t, b, 0, 10, "v2")

	a.Close()
	time.Sleep(50 * time.Millisecond) // the server sees the close
	c := dialSession(t, client.Config{Addr: s1.Addr(), Resume: a.ID()})
	if c.ResumedAt() != 60 || c.Durable() != commit {
		t.Fatalf("resumed in the same process: at %d, durable %d; want 60, %d", c.ResumedAt(), c.Durable(), commit)
	}
	expect(t, c, 0, 10, "v2")
	s1.sessions.mu.Lock()
	_, open := s1.sessions.open[a.ID()]
	s1.sessions.mu.Unlock()
	if !open {
		t.Fatalf("session %d not marked open after the resume", a.ID())
	}
}

func dialSession(t *testing.T, cfg client.Config) *client.Session {
	t.Helper()
	cs, err := client.Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// expect reads keys k<from>..k<to-1> through cs and wants value v.
func expect(t *testing.T, cs *client.Session, from, to int, v string) {
	t.Helper()
	got := map[int]string{}
	for i := from; i < to; i++ {
		if err := cs.Read(fmt.Appendf(nil, "k%d", i), func(r client.Result) { got[i] = string(r.Value) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := cs.Wait(); err != nil {
		t.Fatal(err)
	}
	for i := from; i < to; i++ {
		if got[i] != v {
			t.Fatalf("k%d = %q, want %q", i, got[i], v)
		}
	}
}

// copyDir copies the regular files under src to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMarkCPRCountsClosingConnections: a connection closed while its reads
// are still pending is listed at its last operation by the next
// checkpoint's markCPR (after quiesce no write is pending), not left out
// until the reads complete; a closed one that completed is listed once
// from closedCPR.
func TestMarkCPRCountsClosingConnections(t *testing.T) {
	l := &loop{conns: map[*conn]struct{}{}, closing: map[*conn]struct{}{}}
	open, closing := &conn{sess: session.New(false)}, &conn{sess: session.New(false), closed: true}
	open.sess.Resume(7, 10)
	closing.sess.Resume(8, 20)
	closing.sess.AddPending(19) // a read
	l.conns[open] = struct{}{}
	l.closing[closing] = struct{}{}
	l.closedSession(9, 30)
	l.markCPR()
	got := map[uint64]uint64{}
	for _, p := range l.cprs {
		got[p.id] = p.cpr
	}
	if want := map[uint64]uint64{7: 10, 8: 20, 9: 30}; !maps.Equal(got, want) {
		t.Fatalf("CPR points %v, want %v", got, want)
	}
}
