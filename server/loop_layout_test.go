package server

import (
	"reflect"
	"testing"

	"github.com/fleetkv/fleetkv/internal/padcheck"
)

// TestLoopIsPadded keeps what a loop writes per batch off the cache lines
// of the loops allocated beside it (see loop).
func TestLoopIsPadded(t *testing.T) {
	if err := padcheck.Padded(reflect.TypeFor[loop]()); err != nil {
		t.Fatal(err)
	}
}
