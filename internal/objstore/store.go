package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"
)

// ErrNotExist is returned (wrapped) when an object does not exist.
var ErrNotExist = fs.ErrNotExist

// Info describes one object.
type Info struct {
	URI     string
	Size    int64
	ModTime time.Time
	// ETag is the S3 entity tag (content-derived for an upload; "" on a file system).
	ETag string
}

// Store is what tasks need of object storage.
type Store interface {
	// Open reads one object.
	Open(ctx context.Context, uri string) (io.ReadCloser, error)
	// Put writes one object atomically: readers see the old or the new content.
	Put(ctx context.Context, uri string, r io.Reader, size int64) error
	// Stat describes one object.
	Stat(ctx context.Context, uri string) (Info, error)
	// List returns every object under prefix (recursively), sorted by URI.
	List(ctx context.Context, prefix string) ([]Info, error)
	// Copy copies one object; on S3 the copy happens on the server.
	Copy(ctx context.Context, src, dst string) error
	// Delete removes one object; a missing object is not an error.
	Delete(ctx context.Context, uri string) error
}

// Router dispatches on the URI scheme: file:// to the local file system,
// s3:// to the configured S3 client.
type Router struct {
	File Store
	S3   Store // nil: s3:// URIs are refused as bad input
}

// New returns a Router for the local file system and, when cfg is not nil, S3.
func New(cfg *S3Config) (*Router, error) {
	r := &Router{File: FileStore{}}
	if cfg != nil {
		s, err := NewS3(*cfg)
		if err != nil {
			return nil, err
		}
		r.S3 = s
	}
	return r, nil
}

func (r *Router) pick(uri string) (Store, error) {
	u, err := Parse(uri)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "s3" {
		if r.S3 == nil {
			return nil, fmt.Errorf("no S3 client configured for %s", uri)
		}
		return r.S3, nil
	}
	return r.File, nil
}

func (r *Router) Open(ctx context.Context, uri string) (io.ReadCloser, error) {
	s, err := r.pick(uri)
	if err != nil {
		return nil, err
	}
	return s.Open(ctx, uri)
}

func (r *Router) Put(ctx context.Context, uri string, rd io.Reader, size int64) error {
	s, err := r.pick(uri)
	if err != nil {
		return err
	}
	return s.Put(ctx, uri, rd, size)
}

func (r *Router) Stat(ctx context.Context, uri string) (Info, error) {
	s, err := r.pick(uri)
	if err != nil {
		return Info{}, err
	}
	return s.Stat(ctx, uri)
}

func (r *Router) List(ctx context.Context, prefix string) ([]Info, error) {
	s, err := r.pick(prefix)
	if err != nil {
		return nil, err
	}
	return s.List(ctx, prefix)
}

func (r *Router) Delete(ctx context.Context, uri string) error {
	s, err := r.pick(uri)
	if err != nil {
		return err
	}
	return s.Delete(ctx, uri)
}

// Copy copies within one backend server-side, or across backends by streaming.
func (r *Router) Copy(ctx context.Context, src, dst string) error {
	ss, err := r.pick(src)
	if err != nil {
		return err
	}
	ds, err := r.pick(dst)
	if err != nil {
		return err
	}
	if ss == ds {
		return ss.Copy(ctx, src, dst)
	}
	info, err := ss.Stat(ctx, src)
	if err != nil {
		return err
	}
	rc, err := ss.Open(ctx, src)
	if err != nil {
		return err
	}
	defer rc.Close()
	return ds.Put(ctx, dst, rc, info.Size)
}

// ReadAll reads a whole object of at most limit bytes.
func ReadAll(ctx context.Context, s Store, uri string, limit int64) ([]byte, error) {
	rc, err := s.Open(ctx, uri)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", uri, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("reading %s: larger than %d bytes", uri, limit)
	}
	return b, nil
}

// PutBytes writes b to uri.
func PutBytes(ctx context.Context, s Store, uri string, b []byte) error {
	return s.Put(ctx, uri, strings.NewReader(string(b)), int64(len(b)))
}

// IsNotExist reports whether err means the object does not exist.
func IsNotExist(err error) bool { return errors.Is(err, ErrNotExist) }
