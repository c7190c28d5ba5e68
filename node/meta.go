package node

import (
	"context"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
)

// dialMeta connects to the metadata store at endpoints.
func dialMeta(ctx context.Context, endpoints []string, timeout time.Duration) (cluster.Metadata, error) {
	if len(endpoints) == 0 {
		return nil, errNoMeta
	}
	return nil, errNoMeta
}
