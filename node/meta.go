package node

import (
	"log/slog"
	"time"

	"github.com/fleetkv/fleetkv/cluster"
	"github.com/fleetkv/fleetkv/cluster/etcdmeta"
)

// dialMeta connects to the metadata store (etcd) at endpoints. It does not
// wait for it: a member starts and serves what it persisted while etcd is
// unreachable.
func dialMeta(name string, endpoints []string, timeout time.Duration, log *slog.Logger) (cluster.Metadata, error) {
	if len(endpoints) == 0 {
		return nil, errNoMeta
	}
	return etcdmeta.Dial(etcdmeta.Config{Endpoints: endpoints, Cluster: name, DialTimeout: timeout, Log: log})
}
