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
	// MigrateAbsent: the source holds no record of the key: reads the
	// target parked for it answer NOT_FOUND (nothing is stored).
	MigrateAbsent
)

// migrateHeader is the size of OpMigrate's value before the record's value:
// migration id u64 | kind u8.
const migrateHeader = 9

// AppendMigrateValue appends OpMigrate's value: the migration's id, the
// kind, then the record's value.
func AppendMigrateValue(dst []byte, id uint64, kind MigrateKind, value []byte) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, id)
	return append(append(dst, byte(kind)), value...)
}

// ParseMigrateValue splits OpMigrate's value; ok is false when it is too
// short or names an unknown kind.
func ParseMigrateValue(v []byte) (id uint64, kind MigrateKind, value []byte, ok bool) {
	if len(v) < migrateHeader || MigrateKind(v[8]) > MigrateAbsent {
		return 0, 0, nil, false
	}
	return binary.LittleEndian.Uint64(v), MigrateKind(v[8]), v[migrateHeader:], true
}
