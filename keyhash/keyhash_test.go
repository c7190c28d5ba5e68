package keyhash

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	metro "github.com/dgryski/go-metro"
)

// crc16Bitwise is the CRC one bit at a time, straight from its definition.
func crc16Bitwise(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ poly
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

func TestCRC16(t *testing.T) {
	// The check value of CRC-16/XMODEM.
	if got := crc16([]byte("123456789")); got != 0x31c3 {
		t.Fatalf("crc16(123456789) = %#x, want 0x31c3", got)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 70 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if got, want := crc16(b), crc16Bitwise(b); got != want {
			t.Fatalf("crc16(%x) = %#x, bitwise %#x", b, got, want)
		}
	}
}

func TestSlotMatchesRedis(t *testing.T) {
	// Slots as Redis Cluster's CLUSTER KEYSLOT answers them (its docs and
	// cluster specification).
	for _, c := range []struct {
		key  string
		slot uint16
	}{
		{"somekey", 11058},
		{"foo{hash_tag}", 2515},
		{"hash_tag", 2515},
		{"foo", 12182},
		{"bar", 5061},
	} {
		if got := Slot([]byte(c.key)); got != c.slot {
			t.Errorf("Slot(%q) = %d, want %d", c.key, got, c.slot)
		}
	}
}

func TestHashTag(t *testing.T) {
	// The examples of the Redis Cluster specification.
	for _, c := range []struct{ key, tag string }{
		{"{user1000}.following", "user1000"},
		{"{user1000}.followers", "user1000"},
		{"foo{}{bar}", "foo{}{bar}"},
		{"foo{{bar}}zap", "{bar"},
		{"foo{bar}{zap}", "bar"},
		{"nobraces", "nobraces"},
		{"open{only", "open{only"},
		{"}{x}", "x"},
		{"", ""},
	} {
		if got := string(HashTag([]byte(c.key))); got != c.tag {
			t.Errorf("HashTag(%q) = %q, want %q", c.key, got, c.tag)
		}
	}
}

func TestHashLayout(t *testing.T) {
	a, b := []byte("{user1000}.following"), []byte("{user1000}.followers")
	ha, hb := Hash(a), Hash(b)
	if SlotOf(ha) != Slot(a) || SlotOf(ha) != SlotOf(hb) {
		t.Fatalf("slots of %q and %q: %d, %d, want both %d", a, b, SlotOf(ha), SlotOf(hb), Slot(a))
	}
	if ha == hb {
		t.Fatalf("keys sharing a tag hash alike: %#x", ha)
	}
	if ha < FirstHash(Slot(a)) || ha > LastHash(Slot(a)) {
		t.Fatalf("hash %#x outside its slot's range", ha)
	}
	// Hashes are persisted: a change here is a new Format.
	if got := Hash([]byte("fleetkv")); got != 0x5247d7075dcd3de6 {
		t.Fatalf("Hash(\"fleetkv\") = %#x, want 0x5247d7075dcd3de6 (slot 5265)", got)
	}
}

// TestSlotsSpread checks that consecutive integer keys (the load
// generator's) fill the slots evenly.
func TestSlotsSpread(t *testing.T) {
	var counts [Slots]int
	const n = 1 << 20
	var k [8]byte
	for i := range uint64(n) {
		binary.LittleEndian.PutUint64(k[:], i)
		counts[Slot(k[:])]++
	}
	for s, c := range counts {
		if c < n/Slots/2 || c > n/Slots*2 {
			t.Fatalf("slot %d holds %d of %d keys", s, c, n)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	key := []byte("{tag}rest-of-the-key")
	if n := testing.AllocsPerRun(100, func() { _ = Hash(key) }); n != 0 {
		t.Fatalf("Hash allocates %v times", n)
	}
}

// BenchmarkHash hashes 1024 distinct keys of each length in turn, beside
// go-metro alone (the hash before slots) as the baseline.
func BenchmarkHash(b *testing.B) {
	for _, n := range []int{8, 16, 64} {
		keys := make([][]byte, 1024)
		for i := range keys {
			keys[i] = make([]byte, n)
			for j := range keys[i] {
				keys[i][j] = byte(i*7 + j*13)
			}
		}
		b.Run(fmt.Sprintf("keyhash/%dB", n), func(b *testing.B) {
			var sum uint64
			for i := range b.N {
				sum += Hash(keys[i&1023])
			}
			sink = sum
		})
		b.Run(fmt.Sprintf("metro/%dB", n), func(b *testing.B) {
			var sum uint64
			for i := range b.N {
				sum += metro.Hash64(keys[i&1023], Seed)
			}
			sink = sum
		})
	}
}

var sink uint64
