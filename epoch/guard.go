package epoch

// Guard is one worker's slot in a Manager. Every method must be called only
// by the goroutine that owns the Guard (the one worker it stands for), except
// Protected, which is safe from any goroutine.
type Guard struct {
	m *Manager
	s *slot
}

// Protect enters the current epoch. Shared state read after Protect stays
// valid (frames are not reused, tables not freed) until the next Refresh or
// Unprotect.
func (g *Guard) Protect() uint64 {
	e := g.m.current.Load()
	g.s.local.Store(e)
	return e
}

// Unprotect leaves epoch protection; the worker must hold no reference into
// epoch-protected state afterwards.
func (g *Guard) Unprotect() {
	g.s.local.Store(0)
	g.m.tryDrain()
}

// Protected reports whether the Guard is inside an epoch.
func (g *Guard) Protected() bool { return g.s.local.Load() != 0 }

// Refresh moves the worker to the current epoch, dropping every reference it
// took under the old one, and runs the deferred actions that became safe.
// It is cheap (one load and one store) when nothing waits. On an unprotected
// Guard it protects it.
func (g *Guard) Refresh() {
	g.s.local.Store(g.m.current.Load())
	g.m.tryDrain()
}

// Release unprotects and frees the slot. The Guard must not be used again.
func (g *Guard) Release() {
	g.Unprotect()
	g.s.inUse.Store(false)
	g.s = nil
}
