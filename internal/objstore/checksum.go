package objstore

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"
)

// HashCopier copies objects and says what the copy's SHA-256 is, moving as few bytes through
// the client as the store allows.
type HashCopier interface {
	// CopySHA256 copies src to dst and returns the SHA-256 (hex) of what landed at dst.
	CopySHA256(ctx context.Context, src, dst string) (string, error)
	// StoredSHA256 returns the full-object SHA-256 (hex) the store keeps for uri, or "" when it
	// keeps none (then only reading the object tells).
	StoredSHA256(ctx context.Context, uri string) (string, error)
}

// MaxCopyObject is the largest object one S3 CopyObject may copy (5 GiB on AWS); larger
// objects are copied part by part with UploadPartCopy.
const MaxCopyObject = 5 << 30

// CopySHA256 copies on the server and has the server compute the copy's SHA-256
// (x-amz-checksum-algorithm: SHA256 on CopyObject, read back with HeadObject's checksum mode): no
// byte passes through the client. An object over the copy limit is copied part by part on the
// server; its checksum is then per part (composite), so the copy is read once to hash it. A
// server that keeps no checksum gets the same one read.
func (s *S3Store) CopySHA256(ctx context.Context, src, dst string) (string, error) {
	su, err := s3uri(src)
	if err != nil {
		return "", err
	}
	du, err := s3uri(dst)
	if err != nil {
		return "", err
	}
	info, err := s.Stat(ctx, src)
	if err != nil {
		return "", err
	}
	limit := s.maxCopy
	if limit <= 0 {
		limit = MaxCopyObject
	}
	dstOpts := minio.CopyDestOptions{Bucket: du.Bucket, Object: du.Key, ChecksumType: minio.ChecksumSHA256}
	if info.Size <= limit {
		_, err = s.client.CopyObject(ctx, dstOpts, minio.CopySrcOptions{Bucket: su.Bucket, Object: su.Key})
		if err != nil {
			return "", classify("copying", src+" to "+dst, err)
		}
		if sum, err := s.StoredSHA256(ctx, dst); err != nil || sum != "" {
			return sum, err
		}
		return s.readSHA256(ctx, dst)
	}
	// Multipart server-side copy: parts of at most limit bytes (at least 5 MiB each but the last).
	var parts []minio.CopySrcOptions
	for start := int64(0); start < info.Size; start += limit {
		end := min(start+limit, info.Size) - 1
		parts = append(parts, minio.CopySrcOptions{Bucket: su.Bucket, Object: su.Key, MatchRange: true, Start: start, End: end})
	}
	dstOpts.ChecksumType = minio.ChecksumNone
	if _, err := s.client.ComposeObject(ctx, dstOpts, parts...); err != nil {
		return "", classify("copying", src+" to "+dst+" in parts", err)
	}
	return s.readSHA256(ctx, dst)
}

// StoredSHA256 reads the object's full-object SHA-256 checksum, if it has one.
func (s *S3Store) StoredSHA256(ctx context.Context, uri string) (string, error) {
	u, err := s3uri(uri)
	if err != nil {
		return "", err
	}
	st, err := s.client.StatObject(ctx, u.Bucket, u.Key, minio.StatObjectOptions{Checksum: true})
	if err != nil {
		return "", classify("stat", uri, err)
	}
	if st.ChecksumSHA256 == "" || (st.ChecksumMode != "" && st.ChecksumMode != minio.ChecksumFullObjectMode.String()) {
		return "", nil // none, or a composite of parts: not the object's SHA-256
	}
	raw, err := base64.StdEncoding.DecodeString(st.ChecksumSHA256)
	if err != nil || len(raw) != sha256.Size {
		return "", nil
	}
	return hex.EncodeToString(raw), nil
}

func (s *S3Store) readSHA256(ctx context.Context, uri string) (string, error) {
	return readSHA256(ctx, s, uri)
}

func readSHA256(ctx context.Context, s Store, uri string) (string, error) {
	rc, err := s.Open(ctx, uri)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return "", fmt.Errorf("reading %s: %w", uri, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// CopySHA256 copies the file, hashing it on the way: one read.
func (f FileStore) CopySHA256(ctx context.Context, src, dst string) (string, error) {
	return streamSHA256(ctx, f, f, src, dst)
}

// streamSHA256 copies src (in from) to dst (in to) by one streamed read, hashing it on the way.
func streamSHA256(ctx context.Context, from, to Store, src, dst string) (string, error) {
	info, err := from.Stat(ctx, src)
	if err != nil {
		return "", err
	}
	rc, err := from.Open(ctx, src)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	if err := to.Put(ctx, dst, io.TeeReader(rc, h), info.Size); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// StoredSHA256: a file system keeps no checksums.
func (FileStore) StoredSHA256(context.Context, string) (string, error) { return "", nil }

// CopySHA256 copies within one backend as it does best, across backends by one streamed read.
func (r *Router) CopySHA256(ctx context.Context, src, dst string) (string, error) {
	ss, err := r.pick(src)
	if err != nil {
		return "", err
	}
	ds, err := r.pick(dst)
	if err != nil {
		return "", err
	}
	if hc, ok := ss.(HashCopier); ok && ss == ds {
		return hc.CopySHA256(ctx, src, dst)
	}
	return streamSHA256(ctx, ss, ds, src, dst)
}

// StoredSHA256 asks the backend for uri's stored checksum.
func (r *Router) StoredSHA256(ctx context.Context, uri string) (string, error) {
	s, err := r.pick(uri)
	if err != nil {
		return "", err
	}
	if hc, ok := s.(HashCopier); ok {
		return hc.StoredSHA256(ctx, uri)
	}
	return "", nil
}
