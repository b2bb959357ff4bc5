package objstore

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/transient"
)

// S3Config configures the S3 backend.
type S3Config struct {
	// Endpoint is a URL such as http://127.0.0.1:9000; empty means AWS S3.
	Endpoint string
	Region   string
	// Creds defaults to the standard AWS_* / MINIO_* environment variables
	// and the instance metadata service, in that order.
	Creds *credentials.Credentials
	// MaxRetries is the client's own retry count per request (default 3).
	MaxRetries int
	Transport  http.RoundTripper
}

// S3Store serves s3:// URIs.
type S3Store struct {
	client *minio.Client
	// maxCopy is the largest object one CopyObject copies (default MaxCopyObject; tests lower it).
	maxCopy int64
}

// SetMaxCopyObject lowers the single-request copy limit (tests exercise the multipart copy).
func (s *S3Store) SetMaxCopyObject(n int64) { s.maxCopy = n }

// NewS3 builds an S3 client. Endpoint errors are bad input.
func NewS3(cfg S3Config) (*S3Store, error) {
	host, secure := "s3.amazonaws.com", true
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") {
			return nil, exitcode.Invalidf("--s3-endpoint %q: want http(s)://host[:port]", cfg.Endpoint)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	creds := cfg.Creds
	if creds == nil {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{}, &credentials.EnvMinio{}, &credentials.IAM{},
		})
	}
	retries := cfg.MaxRetries
	if retries == 0 {
		retries = 3
	}
	c, err := minio.New(host, &minio.Options{
		Creds: creds, Secure: secure, Region: cfg.Region, MaxRetries: retries,
		Transport: cfg.Transport, BucketLookup: minio.BucketLookupPath,
		// Checksums as trailing headers: a Put streams once and the server still verifies and keeps
		// the object's SHA-256 (see Put).
		TrailingHeaders: true,
	})
	if err != nil {
		return nil, exitcode.Invalidf("creating S3 client for %q: %v", cfg.Endpoint, err)
	}
	return &S3Store{client: c}, nil
}

// Client exposes the underlying minio client (for bucket set-up in tools and tests).
func (s *S3Store) Client() *minio.Client { return s.client }

func s3uri(uri string) (URI, error) {
	u, err := Parse(uri)
	if err != nil {
		return URI{}, err
	}
	if u.Scheme != "s3" {
		return URI{}, fmt.Errorf("%s is not an s3:// URI", uri)
	}
	return u, nil
}

// classify maps S3 and network errors onto not-exist, transient and bad input.
func classify(op, uri string, err error) error {
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == minio.NoSuchKey || resp.Code == "NoSuchBucket" && op == "stat":
		return fmt.Errorf("%s %s: %s: %w", op, uri, resp.Code, ErrNotExist)
	case resp.Code == "NoSuchBucket", resp.Code == "InvalidBucketName":
		return exitcode.Invalidf("%s %s: %s", op, uri, resp.Code)
	case resp.StatusCode == http.StatusNotFound && resp.Code == "":
		return fmt.Errorf("%s %s: %w", op, uri, ErrNotExist)
	}
	if isTransient(err, resp) {
		return exitcode.Retryable(fmt.Errorf("%s %s: %w", op, uri, err))
	}
	return fmt.Errorf("%s %s: %w", op, uri, err)
}

func isTransient(err error, resp minio.ErrorResponse) bool {
	switch resp.Code {
	case "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "XMinioServerNotInitialized":
		return true
	}
	return transient.IsStatus(resp.StatusCode) || transient.IsError(err)
}

func (s *S3Store) Open(ctx context.Context, uri string) (io.ReadCloser, error) {
	u, err := s3uri(uri)
	if err != nil {
		return nil, err
	}
	// GetObject is lazy: Stat first so a missing object fails here.
	obj, err := s.client.GetObject(ctx, u.Bucket, u.Key, minio.GetObjectOptions{})
	if err != nil {
		return nil, classify("opening", uri, err)
	}
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, classify("opening", uri, err)
	}
	return &classifyingReader{obj: obj, uri: uri}, nil
}

type classifyingReader struct {
	obj *minio.Object
	uri string
}

func (r *classifyingReader) Read(p []byte) (int, error) {
	n, err := r.obj.Read(p)
	if err != nil && err != io.EOF {
		err = classify("reading", r.uri, err)
	}
	return n, err
}
func (r *classifyingReader) Close() error { return r.obj.Close() }

func (s *S3Store) Put(ctx context.Context, uri string, r io.Reader, size int64) error {
	u, err := s3uri(uri)
	if err != nil {
		return err
	}
	if u.Key == "" || strings.HasSuffix(u.Key, "/") {
		return exitcode.Invalidf("writing %s: URI names a prefix, not an object", uri)
	}
	// One PUT carrying the SHA-256 as a trailing checksum, computed while streaming: the server
	// verifies it and keeps it as the object's full-object checksum, so a publisher knows the
	// content's digest from a HEAD (StoredSHA256) and copies the object once. Multipart uploads
	// (unknown size, or over the 5 GiB single-PUT limit) keep only a composite of their parts.
	opts := minio.PutObjectOptions{ContentType: contentType(u.Key), Checksum: minio.ChecksumSHA256}
	if size >= 0 && size <= MaxSinglePut {
		opts.DisableMultipart = true
	}
	_, err = s.client.PutObject(ctx, u.Bucket, u.Key, r, size, opts)
	return classify("writing", uri, err)
}

// MaxSinglePut is the largest object one S3 PUT may write (5 GiB on AWS).
const MaxSinglePut = 5 << 30

func contentType(key string) string {
	switch {
	case strings.HasSuffix(key, ".json"):
		return "application/json"
	case strings.HasSuffix(key, ".html"):
		return "text/html; charset=utf-8"
	}
	return "application/octet-stream"
}

func (s *S3Store) Stat(ctx context.Context, uri string) (Info, error) {
	u, err := s3uri(uri)
	if err != nil {
		return Info{}, err
	}
	oi, err := s.client.StatObject(ctx, u.Bucket, u.Key, minio.StatObjectOptions{})
	if err != nil {
		return Info{}, classify("stat", uri, err)
	}
	return Info{URI: uri, Size: oi.Size, ModTime: oi.LastModified, ETag: strings.Trim(oi.ETag, `"`)}, nil
}

func (s *S3Store) List(ctx context.Context, prefix string) ([]Info, error) {
	u, err := s3uri(prefix)
	if err != nil {
		return nil, err
	}
	var out []Info
	for oi := range s.client.ListObjects(ctx, u.Bucket, minio.ListObjectsOptions{Prefix: u.Key, Recursive: true}) {
		if oi.Err != nil {
			return nil, classify("listing", prefix, oi.Err)
		}
		if strings.HasSuffix(oi.Key, "/") {
			continue
		}
		out = append(out, Info{URI: URI{Scheme: "s3", Bucket: u.Bucket, Key: oi.Key}.String(), Size: oi.Size, ModTime: oi.LastModified, ETag: strings.Trim(oi.ETag, `"`)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].URI < out[j].URI })
	return out, nil
}

func (s *S3Store) Copy(ctx context.Context, src, dst string) error {
	su, err := s3uri(src)
	if err != nil {
		return err
	}
	du, err := s3uri(dst)
	if err != nil {
		return err
	}
	_, err = s.client.CopyObject(ctx,
		minio.CopyDestOptions{Bucket: du.Bucket, Object: du.Key},
		minio.CopySrcOptions{Bucket: su.Bucket, Object: su.Key})
	return classify("copying", src+" to "+dst, err)
}

func (s *S3Store) Delete(ctx context.Context, uri string) error {
	u, err := s3uri(uri)
	if err != nil {
		return err
	}
	err = s.client.RemoveObject(ctx, u.Bucket, u.Key, minio.RemoveObjectOptions{})
	if resp := minio.ToErrorResponse(err); resp.Code == minio.NoSuchKey {
		return nil
	}
	return classify("deleting", uri, err)
}
