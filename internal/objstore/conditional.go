package objstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/minio/minio-go/v7"
)

// ErrConflict is returned (wrapped) by PutIf when the object changed since it was read.
var ErrConflict = errors.New("the object changed since it was read")

// Conditional is implemented by stores that can write an object only if it is still the version
// that was read (S3 If-Match / If-None-Match; a lock on the file system): the building block of
// read-modify-write without lost updates.
type Conditional interface {
	// ReadVersion reads the object and its version; a missing object is ErrNotExist.
	ReadVersion(ctx context.Context, uri string, limit int64) ([]byte, string, error)
	// PutIf writes b only if the object's version is still version ("" : only if it does not
	// exist); otherwise ErrConflict.
	PutIf(ctx context.Context, uri string, b []byte, version string) error
}

// ReadVersion implements Conditional: the version is the object's ETag. An object replaced while
// it is read (minio-go pins later reads to the first ETag: 412) is a conflict too.
func (s *S3Store) ReadVersion(ctx context.Context, uri string, limit int64) ([]byte, string, error) {
	b, v, err := s.readVersion(ctx, uri, limit)
	if isPreconditionFailed(err) {
		return nil, "", fmt.Errorf("reading %s: %w", uri, ErrConflict)
	}
	return b, v, err
}

func isPreconditionFailed(err error) bool {
	r := minio.ToErrorResponse(errors.Unwrap(err))
	if r.StatusCode == 0 && r.Code == "" {
		r = minio.ToErrorResponse(err)
	}
	return r.StatusCode == 412 || r.Code == "PreconditionFailed"
}

func (s *S3Store) readVersion(ctx context.Context, uri string, limit int64) ([]byte, string, error) {
	u, err := s3uri(uri)
	if err != nil {
		return nil, "", err
	}
	obj, err := s.client.GetObject(ctx, u.Bucket, u.Key, minio.GetObjectOptions{})
	if err != nil {
		return nil, "", classify("reading", uri, err)
	}
	defer obj.Close()
	st, err := obj.Stat()
	if err != nil {
		return nil, "", classify("reading", uri, err)
	}
	b, err := io.ReadAll(io.LimitReader(obj, limit+1))
	if err != nil {
		return nil, "", classify("reading", uri, err)
	}
	if int64(len(b)) > limit {
		return nil, "", fmt.Errorf("reading %s: larger than %d bytes", uri, limit)
	}
	return b, st.ETag, nil
}

// PutIf implements Conditional with If-Match (or If-None-Match: * for a new object).
func (s *S3Store) PutIf(ctx context.Context, uri string, b []byte, version string) error {
	u, err := s3uri(uri)
	if err != nil {
		return err
	}
	var opts minio.PutObjectOptions
	if version == "" {
		opts.SetMatchETagExcept("*")
	} else {
		opts.SetMatchETag(version)
	}
	_, err = s.client.PutObject(ctx, u.Bucket, u.Key, bytes.NewReader(b), int64(len(b)), opts)
	if r := minio.ToErrorResponse(err); r.StatusCode == 412 || r.Code == "PreconditionFailed" {
		return fmt.Errorf("writing %s: %w", uri, ErrConflict)
	}
	if err != nil {
		return classify("writing", uri, err)
	}
	return nil
}

// ReadVersion implements Conditional: the version is the content's SHA-256.
func (f FileStore) ReadVersion(ctx context.Context, uri string, limit int64) ([]byte, string, error) {
	b, err := ReadAll(ctx, f, uri, limit)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:]), nil
}

// PutIf implements Conditional under an exclusive lock on a sidecar file, so that the compare
// and the write are one step for every process on this machine.
func (f FileStore) PutIf(ctx context.Context, uri string, b []byte, version string) error {
	p, err := filePath(uri)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("writing %s: %w", uri, err)
	}
	lock, err := os.OpenFile(filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("writing %s: %w", uri, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking %s: %w", uri, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	_, now, err := f.ReadVersion(ctx, uri, 1<<40)
	switch {
	case IsNotExist(err):
		now = ""
	case err != nil:
		return err
	}
	if now != version {
		return fmt.Errorf("writing %s: %w", uri, ErrConflict)
	}
	return f.Put(ctx, uri, bytes.NewReader(b), int64(len(b)))
}

// ReadVersion implements Conditional for the store the URI picks.
func (r *Router) ReadVersion(ctx context.Context, uri string, limit int64) ([]byte, string, error) {
	s, err := r.pick(uri)
	if err != nil {
		return nil, "", err
	}
	c, ok := s.(Conditional)
	if !ok {
		return nil, "", fmt.Errorf("%s: the store has no conditional writes", uri)
	}
	return c.ReadVersion(ctx, uri, limit)
}

// PutIf implements Conditional for the store the URI picks.
func (r *Router) PutIf(ctx context.Context, uri string, b []byte, version string) error {
	s, err := r.pick(uri)
	if err != nil {
		return err
	}
	c, ok := s.(Conditional)
	if !ok {
		return fmt.Errorf("%s: the store has no conditional writes", uri)
	}
	return c.PutIf(ctx, uri, b, version)
}

// IsConflict reports whether err is a PutIf conflict.
func IsConflict(err error) bool { return errors.Is(err, ErrConflict) }

// ErrNoConditionalWrites is returned by ProbeConditional for a store that accepts a conditional
// write it should have refused.
var ErrNoConditionalWrites = errors.New("the store ignores conditional writes (If-None-Match)")

// ProbeConditional checks, with a throw-away object at uri, that the store honours conditional
// writes: a second create-only write of one object must conflict. A store that ignores the
// header (some S3 gateways and older servers do) would let concurrent read-modify-writes lose
// entries without a sign; callers refuse to work on it. The object is removed afterwards when
// the store can delete.
func ProbeConditional(ctx context.Context, s Store, uri string) error {
	c, ok := s.(Conditional)
	if !ok {
		return fmt.Errorf("%w: the store has no conditional writes at all", ErrNoConditionalWrites)
	}
	if d, ok := s.(interface {
		Delete(context.Context, string) error
	}); ok {
		defer func() { _ = d.Delete(context.WithoutCancel(ctx), uri) }()
	}
	if err := c.PutIf(ctx, uri, []byte("probe\n"), ""); err != nil {
		return fmt.Errorf("probing conditional writes at %s: %w", uri, err)
	}
	err := c.PutIf(ctx, uri, []byte("probe again\n"), "")
	switch {
	case errors.Is(err, ErrConflict):
		return nil
	case err == nil:
		return fmt.Errorf("%w: a second create-only write of %s succeeded", ErrNoConditionalWrites, uri)
	default:
		return fmt.Errorf("probing conditional writes at %s: %w", uri, err)
	}
}
