package store

import (
	"reflect"
	"testing"

	"github.com/fleetkv/fleetkv/internal/padcheck"
)

// TestSessionIsPadded keeps the fields every operation writes off the cache
// lines of the sessions allocated beside it (see Session).
func TestSessionIsPadded(t *testing.T) {
	if err := padcheck.Padded(reflect.TypeFor[Session]()); err != nil {
		t.Fatal(err)
	}
}
