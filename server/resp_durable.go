package server

import (
	"context"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/fleetkv/fleetkv/resp"
)

// RESP's durability commands in terms of checkpoints. A checkpoint runs on
// its own goroutine; a command that waits for one parks its connection (as
// a command on a cold key does) and the reply is appended on the loop when
// the checkpoint ends.

// cmdSave takes a checkpoint and answers once it is durable.
func cmdSave(l *loop, r *respConn, _ [][]byte) []byte {
	if l.s.dur == nil {
		return resp.AppendError(r.out, "ERR not supported by fleetkv: the server runs without a data directory")
	}
	l.respAfterCheckpoint(r, 0, func(b []byte, err error) []byte {
		if err != nil {
			return resp.AppendError(b, sanitize("ERR checkpoint failed: "+err.Error()))
		}
		return resp.AppendSimple(b, "OK")
	})
	return r.out
}

// cmdBGSave starts a checkpoint and answers at once.
func cmdBGSave(l *loop, r *respConn, a [][]byte) []byte {
	if len(a) > 2 {
		return resp.AppendError(r.out, "ERR syntax error")
	}
	if l.s.dur == nil {
		return resp.AppendError(r.out, "ERR not supported by fleetkv: the server runs without a data directory")
	}
	l.s.aside.Add(1)
	go func() {
		defer l.s.aside.Done()
		if _, err := l.s.Checkpoint(l.s.life); err != nil && l.s.life.Err() == nil {
			l.s.log.Error("BGSAVE checkpoint failed", "err", err)
		}
	}()
	return resp.AppendSimple(r.out, "Background saving started")
}

// cmdWaitAOF answers WAITAOF numlocal numreplicas timeout: with numlocal
// 1, once a checkpoint taken after every write the connection made before
// it is durable ([1, 0]), or when timeout milliseconds (0: no limit) pass
// first ([0, 0]). fleetkv has no replicas.
func cmdWaitAOF(l *loop, r *respConn, a [][]byte) []byte {
	local, ok1 := resp.ParseInt(a[1])
	replicas, ok2 := resp.ParseInt(a[2])
	timeout, ok3 := resp.ParseInt(a[3])
	switch {
	case !ok1 || !ok2 || !ok3:
		return resp.AppendError(r.out, "ERR value is not an integer or out of range")
	case timeout < 0:
		return resp.AppendError(r.out, "ERR timeout is negative")
	case local > 0 && l.s.dur == nil:
		return resp.AppendError(r.out, "ERR WAITAOF cannot be used when numlocal is set but appendonly is disabled.")
	case local == 0 && replicas == 0:
		return waitAOFReply(r.out, 0)
	}
	// RESP connections run one command at a time, so every write this
	// connection made is in the log before the checkpoint starts.
	l.respAfterCheckpoint(r, time.Duration(timeout)*time.Millisecond, func(b []byte, err error) []byte {
		if err != nil {
			return waitAOFReply(b, 0)
		}
		return waitAOFReply(b, 1)
	})
	return r.out
}

func waitAOFReply(b []byte, local int64) []byte {
	b = resp.AppendArray(b, 2)
	b = resp.AppendInt(b, local)
	return resp.AppendInt(b, 0)
}

// respAfterCheckpoint parks r, takes a checkpoint (within timeout when it
// is positive) on another goroutine, and back on the loop appends finish's
// reply and lets r go on.
func (l *loop) respAfterCheckpoint(r *respConn, timeout time.Duration, finish func([]byte, error) []byte) {
	l.respAside(r, timeout, func(ctx context.Context) error {
		_, err := l.s.Checkpoint(ctx)
		return err
	}, finish)
}

// respAside parks r, runs job (within timeout when it is positive, and
// the server's life) on another goroutine, and back on the loop appends
// finish's reply and lets r go on. job must not touch the loop's state.
func (l *loop) respAside(r *respConn, timeout time.Duration, job func(context.Context) error, finish func([]byte, error) []byte) {
	r.waiting = true
	l.s.aside.Add(1)
	go func() {
		defer l.s.aside.Done()
		ctx := l.s.life // Shutdown ends it, and waits for the job before it closes the store
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		err := job(ctx)
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			r.waiting = false
			if r.closed {
				return nil
			}
			r.out = finish(r.out, err)
			r.op.reset(nil, nil, 0)
			l.laterRESP(r) // write the reply and go on with the input, as respCompleted does
			return nil
		}))
	}()
}
