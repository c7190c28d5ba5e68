package node

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// dirLock is a process's hold on its data directory: an exclusive flock(2)
// on DIR/LOCK, which holds the holder's pid for the message of the next
// one. Two servers on one directory would write the same log segments and
// checkpoints; the second is refused at start instead. The kernel releases
// the lock when the holder's descriptor closes, at release or when the
// process dies (kill -9 included), so a stale LOCK file never blocks a
// restart.
type dirLock struct{ f *os.File }

// lockDir takes dir's lock, creating dir if needed. On a file system
// without flock it logs so and goes on unlocked.
func lockDir(dir string, log *slog.Logger) (*dirLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	name := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := os.ReadFile(name)
		f.Close()
		switch holder := strings.TrimSpace(string(b)); {
		case errors.Is(err, unix.EWOULDBLOCK):
			if holder == "" { // between its truncate and its write
				holder = "unknown"
			}
			return nil, fmt.Errorf("node: data directory %s is in use by another server (pid %s); stop it or give another --dir",
				dir, holder)
		case errors.Is(err, unix.ENOLCK) || errors.Is(err, unix.EOPNOTSUPP):
			log.Warn("the data directory's file system does not lock: nothing keeps a second server off it", "dir", dir, "err", err)
			return &dirLock{}, nil
		}
		return nil, fmt.Errorf("node: lock %s: %w", name, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

// release gives the directory up; a second release does nothing.
func (l *dirLock) release() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
