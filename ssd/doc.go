// Package ssd is the storage device under the HybridLog: the one interface
// through which the log writes flushed pages and reads records that have left
// memory, and the devices behind it.
//
// This package has the interface and an in-memory device; the O_DIRECT file
// device with io_uring, the crashable device and the error-injecting wrapper
// build on the same interface. Devices own no log semantics: they move bytes
// at logical offsets and report completions. They must never call back into
// the caller while holding their own locks.
package ssd
