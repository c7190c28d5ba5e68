package tier

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3 is a Store of objects under a prefix of an S3 bucket.
type S3 struct {
	c      *minio.Client
	bucket string
	prefix string // "" or ending in "/"
	url    string
}

// partSize is the multipart PUT's part: a segment goes up in parts of it.
const partSize = 16 << 20

func openS3(ctx context.Context, u *url.URL) (*S3, error) {
	q := u.Query()
	endpoint := q.Get("endpoint")
	if endpoint == "" {
		endpoint = "s3.amazonaws.com"
	}
	access, secret := credentialsFromEnv()
	c, err := minio.New(endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(access, secret, ""),
		Secure: q.Get("secure") == "true",
		Region: q.Get("region"),
	})
	if err != nil {
		return nil, fmt.Errorf("tier: %s: %w", u.Redacted(), err)
	}
	s := &S3{c: c, bucket: u.Host, prefix: strings.Trim(u.Path, "/"), url: u.String()}
	if s.prefix != "" {
		s.prefix += "/"
	}
	if s.bucket == "" {
		return nil, fmt.Errorf("tier: %s: no bucket (want s3://bucket/prefix?endpoint=host:port)", u.Redacted())
	}
	ok, err := c.BucketExists(ctx, s.bucket)
	switch {
	case err != nil:
		return nil, fmt.Errorf("tier: %s: %w", u.Redacted(), err)
	case !ok:
		return nil, fmt.Errorf("tier: %s: bucket %q does not exist", u.Redacted(), s.bucket)
	}
	return s, nil
}

// credentialsFromEnv reads the access key pair, fleetkv's names first.
func credentialsFromEnv() (access, secret string) {
	access, secret = os.Getenv("FLEETKV_S3_ACCESS_KEY"), os.Getenv("FLEETKV_S3_SECRET_KEY")
	if access == "" {
		access, secret = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	}
	return access, secret
}

func (s *S3) String() string { return s.url }

func (s *S3) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := checkName(name); err != nil {
		return err
	}
	_, err := s.c.PutObject(ctx, s.bucket, s.prefix+name, r, size, minio.PutObjectOptions{
		PartSize: partSize, ContentType: "application/octet-stream"})
	if err != nil {
		return fmt.Errorf("tier: put %s: %w", name, err)
	}
	return nil
}

func (s *S3) ReadAt(ctx context.Context, name string, p []byte, off int64) error {
	if err := checkName(name); err != nil {
		return err
	}
	if len(p) == 0 {
		return nil
	}
	var opts minio.GetObjectOptions
	if err := opts.SetRange(off, off+int64(len(p))-1); err != nil {
		return fmt.Errorf("tier: read %s: %w", name, err)
	}
	// Core.GetObject makes the request at once and returns its error;
	// Client.GetObject would defer both to the first Read.
	body, _, _, err := minio.Core{Client: s.c}.GetObject(ctx, s.bucket, s.prefix+name, opts)
	if err != nil {
		return s.readErr(name, off, len(p), err)
	}
	defer body.Close()
	n, err := io.ReadFull(body, p)
	if err != nil {
		return fmt.Errorf("tier: read %s at %d: %d of %d bytes: %w", name, off, n, len(p), io.ErrUnexpectedEOF)
	}
	return nil
}

// readErr maps S3's answers to the Store's errors.
func (s *S3) readErr(name string, off int64, n int, err error) error {
	r := minio.ToErrorResponse(err)
	switch {
	case r.Code == "NoSuchKey" || r.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s in %s", ErrNotFound, name, s)
	case r.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("tier: read %s at %d: %d bytes past its end: %w", name, off, n, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("tier: read %s: %w", name, err)
}

func (s *S3) Get(ctx context.Context, name string) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	body, _, _, err := minio.Core{Client: s.c}.GetObject(ctx, s.bucket, s.prefix+name, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.readErr(name, 0, 0, err)
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("tier: get %s: %w", name, err)
	}
	return b, nil
}

func (s *S3) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := s.c.RemoveObject(ctx, s.bucket, s.prefix+name, minio.RemoveObjectOptions{}); err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil
		}
		return fmt.Errorf("tier: delete %s: %w", name, err)
	}
	return nil
}

func (s *S3) List(ctx context.Context, prefix string) ([]string, error) {
	var names []string
	for o := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("tier: list %s: %w", prefix, o.Err)
		}
		names = append(names, strings.TrimPrefix(o.Key, s.prefix))
	}
	sort.Strings(names)
	return names, nil
}
