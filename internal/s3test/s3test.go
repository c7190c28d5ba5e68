// Package s3test runs a real S3 server for tests: versitygw v1.8.0 over a
// temporary directory on a loopback port (.ci/run installs it with go
// install). Tests only.
package s3test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Bin finds versitygw on PATH or where `go install` puts it, failing t
// when it is not installed.
func Bin(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	if gopath, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("versitygw not found: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 (.ci/run does)")
	return ""
}

// Credentials the server takes; Start puts them in the environment
// (FLEETKV_S3_ACCESS_KEY, FLEETKV_S3_SECRET_KEY) for the processes and
// stores the test starts.
const (
	Access = "fleetkvtest"
	Secret = "fleetkvtestsecret"
)

// Start runs versitygw until t ends (stopped by its PID), creates the
// bucket "fleetkv" and returns a tier URL for the prefix "shared" in it.
func Start(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(Bin(t), "--port", addr, "--access", Access, "--secret", Secret, "posix", t.TempDir())
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
	t.Setenv("FLEETKV_S3_ACCESS_KEY", Access)
	t.Setenv("FLEETKV_S3_SECRET_KEY", Secret)
	c, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(Access, Secret, "")})
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
