// Package etcdmeta keeps a cluster's metadata in etcd (cluster.Metadata)
// and runs an embedded etcd member (fleetkv meta). It is the only package
// that imports etcd; node and cmd/fleetkv import it, so server, store and
// their tests never link etcd.
//
// Layout, under /fleetkv/<cluster>/:
//
//	map            the slot map (JSON of cluster.Map); its ModRevision is
//	               the revision SwapMap compares
//	servers/<id>   a server's registration (JSON of cluster.Server), under
//	               a lease the process keeps alive
//	applied/<id>   the newest view the server reported applied (decimal)
//	token          SHA-256 of the cluster's admin token, when one is set
//
// Every change of the map is one transaction guarded by the map's
// ModRevision, so concurrent changes serialise (cluster.Change retries).
package etcdmeta
