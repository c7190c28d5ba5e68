// Package tier is the shared tier: where a server's sealed log segments
// live for other servers to read. A migration target that was handed an
// indirection record (the source log's id and an address in it) reads the
// record from here instead of asking the source, so the source need not
// copy records it holds only on its device.
//
// Two kinds of store hold the objects (Open takes a URL):
//
//   - dir:///path: files under a directory every server can read (one host,
//     or NFS across hosts). A file appears whole: Put writes a temporary
//     file, syncs it and renames it into place.
//   - s3://bucket/prefix?endpoint=host:port&secure=false: an S3 bucket
//     through minio-go; records come back through ranged GETs, segments go
//     up in multipart PUTs. Credentials come from the environment
//     (FLEETKV_S3_ACCESS_KEY and FLEETKV_S3_SECRET_KEY, or AWS_ACCESS_KEY_ID
//     and AWS_SECRET_ACCESS_KEY).
//
// Layout: a log's segment n is the object "logs/<log id>/<n>" (n in 12
// decimal digits) and holds the log's bytes [n*size, (n+1)*size) for the
// segment size its Segments was made with.
//
// Invariant (kept by the uploader, segments.go): a segment is uploaded
// only once every byte of it lies below the end of a completed checkpoint
// and below the log's flushed point. Those bytes never change again under
// that log id (a recovery restarts the log after the checkpoint's end, and
// a log that starts over gets a new id), so an object, once present, is
// the final content of its addresses and readers may cache it. Bytes of a
// segment below the log's begin when it went up may be zeros (the device
// had released them); no reader reads below the begin it was given.
package tier
