// Package resp reads and writes the Redis serialization protocol: RESP2
// requests (arrays of bulk strings, and inline commands as typed over
// telnet) and the RESP2 reply types.
//
// Reader.Parse takes the bytes a connection has buffered and returns the
// first complete command as slices of those bytes, without copying or
// allocating (inline commands with quoted escapes are unescaped into the
// reader's own buffer). It keeps no state between calls, so any split of a
// byte stream yields the same commands and the same errors (the
// split-input invariant, fuzzed in FuzzSplit). Every length and count is
// checked against Limits before anything is reserved for it: a client that
// announces a 2 GB bulk or a 10^9-element array gets a protocol error and
// nothing is allocated. The error texts are Redis's own.
//
// The Append functions write replies into a caller's buffer.
package resp
