package tier

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// versitygwBin finds versitygw on PATH or where `go install` puts it
// (.ci/run installs v1.8.0 there).
func versitygwBin(t *testing.T) string {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(string(gopath[:len(gopath)-1]), "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("versitygw not found: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 (.ci/run does)")
	return ""
}

// startS3 runs a versitygw S3 server over a temporary directory on a
// loopback port, stops it (by its PID) when t ends, creates a bucket and
// returns a store URL for it. The credentials go to the environment.
func startS3(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	const access, secret = "fleetkvtest", "fleetkvtestsecret"
	dir := t.TempDir()
	cmd := exec.Command(versitygwBin(t), "--port", addr, "--access", access, "--secret", secret, "posix", dir)
	logf, err := os.Create(filepath.Join(t.TempDir(), "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	t.Setenv("FLEETKV_S3_ACCESS_KEY", access)
	t.Setenv("FLEETKV_S3_SECRET_KEY", secret)
	c, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(access, secret, "")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		err := c.MakeBucket(ctx, "fleetkv", minio.MakeBucketOptions{})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("versitygw at %s did not come up: %v\n%s", addr, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "s3://fleetkv/shared?endpoint=" + addr + "&region=us-east-1"
}

// openTest opens a store of each kind: a directory, and S3 on versitygw.
func openTest(t *testing.T) map[string]Store {
	ctx := context.Background()
	d, err := Open(ctx, "dir://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, startS3(t))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]Store{"dir": d, "s3": s}
}
