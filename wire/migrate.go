package wire

import "encoding/binary"

// MigrateKind says how a server stores a record a migration sent it
// (OpMigrate).
type MigrateKind uint8

const (
	// MigrateMoved: a record the source sends its target, inserted unless
	// the key has a record written since the target prepared.
	MigrateMoved MigrateKind = iota
	// MigrateShipped: a record a cancelled migration's target ships back
	// to the source, stored as it comes.
	MigrateShipped
	// MigrateShippedDeleted: a deletion shipped back: the key is deleted.
	MigrateShippedDeleted
	// MigrateFetch: a target asks its source for the key's record (the
	// value is empty): answered with the value, or NOT_FOUND.
	MigrateFetch
	// MigrateAbsent: the source holds no record of the key: the target
	// deletes it unless it has a record written since it began to accept
	// the slot, and reads it parked for it answer NOT_FOUND.
	MigrateAbsent
)

// migrateHeader is the size of OpMigrate's value before the record's value:
// migration id u64 | kind u8, then, when the kind byte has migrateExpires,
// the value's expiry (Unix milliseconds) u64.
const migrateHeader = 9

// migrateExpires flags a kind byte followed by an expiry.
const migrateExpires = 0x80

// AppendMigrateValue appends OpMigrate's value: the migration's id, the
// kind, the record's expiry when it has one (expireAt != 0), then its
// value.
func AppendMigrateValue(dst []byte, id uint64, kind MigrateKind, expireAt int64, value []byte) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, id)
	if expireAt == 0 {
		return append(append(dst, byte(kind)), value...)
	}
	dst = binary.LittleEndian.AppendUint64(append(dst, byte(kind)|migrateExpires), uint64(expireAt))
	return append(dst, value...)
}

// ParseMigrateValue splits OpMigrate's value (expireAt 0: none); ok is
// false when it is too short or names an unknown kind.
func ParseMigrateValue(v []byte) (id uint64, kind MigrateKind, expireAt int64, value []byte, ok bool) {
	if len(v) < migrateHeader {
		return 0, 0, 0, nil, false
	}
	id, kind, value = binary.LittleEndian.Uint64(v), MigrateKind(v[8]&^migrateExpires), v[migrateHeader:]
	if kind > MigrateAbsent {
		return 0, 0, 0, nil, false
	}
	if v[8]&migrateExpires != 0 {
		if len(value) < 8 || int64(binary.LittleEndian.Uint64(value)) <= 0 {
			return 0, 0, 0, nil, false
		}
		expireAt, value = int64(binary.LittleEndian.Uint64(value)), value[8:]
	}
	return id, kind, expireAt, value, true
}

// A fetch (MigrateFetch) is answered with the key's value, its expiry in
// front of it (8 bytes, little-endian, 0: none), or NOT_FOUND; or, by a
// source whose shared tier holds its log where the key's chain leaves
// memory, with where the target reads on instead (AppendFetchBelow):
//
//	fetchBelowMark u64 | address u64 | begin u64 | log
//
// The mark is never an expiry (expiries are positive). The key's newest
// record is the first of the key on its chain from address down to begin
// in the source's log; log names that log in the tier (opaque here).
const fetchBelowMark = ^uint64(0)

// fetchBelowHeader is the size of a below answer before its log.
const fetchBelowHeader = 24

// AppendFetchBelow appends a fetch's below answer to dst.
func AppendFetchBelow(dst []byte, addr, begin uint64, log []byte) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, fetchBelowMark)
	dst = binary.LittleEndian.AppendUint64(dst, addr)
	dst = binary.LittleEndian.AppendUint64(dst, begin)
	return append(dst, log...)
}

// ParseFetchBelow splits a fetch's answer that says where to read on; ok
// is false for any other answer.
func ParseFetchBelow(b []byte) (addr, begin uint64, log []byte, ok bool) {
	if len(b) < fetchBelowHeader || binary.LittleEndian.Uint64(b) != fetchBelowMark {
		return 0, 0, nil, false
	}
	return binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:]), b[fetchBelowHeader:], true
}
