// Package ssd is the storage device under the HybridLog: the one interface
// through which the log writes flushed pages and reads records that have left
// memory, and the devices behind it.
//
//   - FileDevice: segment files under a directory, preallocated and opened
//     with O_DIRECT, I/O through io_uring (internal/uring) or, where that is
//     unavailable or --io=pread asks for it, a pool of pread/pwrite workers.
//   - MemDevice: memory, every I/O complete before the call returns.
//   - CrashDevice: memory that models power loss (unsynced writes lost or
//     torn) and can complete I/O asynchronously in random order, for tests.
//   - FaultyDevice: a wrapper that injects EIO, ENOSPC, short writes and
//     failed syncs by rule, for tests.
//
// Devices own no log semantics: they move bytes at logical offsets and report
// completions. They must never call back into the caller while holding their
// own locks.
package ssd
