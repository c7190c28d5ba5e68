package padcheck

import (
	"reflect"
	"testing"

	"golang.org/x/sys/cpu"
)

func TestPadded(t *testing.T) {
	type good struct {
		_ cpu.CacheLinePad
		a uint64
		_ cpu.CacheLinePad
	}
	type noTail struct {
		_ cpu.CacheLinePad
		a uint64
	}
	type noHead struct {
		a uint64
		_ cpu.CacheLinePad
	}
	if err := Padded(reflect.TypeFor[good]()); err != nil {
		t.Errorf("good: %v", err)
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[noTail](), reflect.TypeFor[noHead]()} {
		if Padded(typ) == nil {
			t.Errorf("%s: no error for an unpadded end", typ.Name())
		}
	}
}
