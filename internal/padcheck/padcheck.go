// Package padcheck checks, in tests, that a struct keeps its fields off the
// cache lines of whatever the allocator puts before and after it: a struct
// that several workers each own one of, and write per operation, starts
// and ends with a cache-line pad.
package padcheck

import (
	"fmt"
	"reflect"
)

// CacheLine is the cache line size the pads are sized for.
const CacheLine = 64

// Padded returns an error naming the first field of struct type t that lies
// within CacheLine bytes of either end of t (fields named "_" are the pads).
func Padded(t reflect.Type) error {
	size := t.Size()
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Name == "_" {
			continue
		}
		if f.Offset < CacheLine || f.Offset+f.Type.Size() > size-CacheLine {
			return fmt.Errorf("%s.%s at bytes %d..%d of %d: within a cache line of the struct's ends",
				t.Name(), f.Name, f.Offset, f.Offset+f.Type.Size(), size)
		}
	}
	return nil
}
