//go:build !amd64

package prefetch

// line does nothing where no prefetch instruction is wired up.
func line(uintptr) {}
