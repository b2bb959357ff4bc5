package objstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"github.com/minio/minio-go/v7"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/testenv"
)

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want objstore.URI
	}{
		{"s3://models/fashion/v1/", objstore.URI{Scheme: "s3", Bucket: "models", Key: "fashion/v1/"}},
		{"s3://models", objstore.URI{Scheme: "s3", Bucket: "models", Key: ""}},
		{"file:///tmp/x/../y", objstore.URI{Scheme: "file", Key: "/tmp/y"}},
		{"file:///tmp/out/", objstore.URI{Scheme: "file", Key: "/tmp/out/"}},
	} {
		got, err := objstore.Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
	for _, bad := range []string{"", "models/x", "gs://b/k", "s3:///k", "file://host/x", "file:relative", "s3://b/a/../k"} {
		_, err := objstore.Parse(bad)
		if exitcode.Of(err) != exitcode.BadInput {
			t.Errorf("Parse(%q) = %v, want bad input", bad, err)
		}
	}
	if got := (objstore.URI{Scheme: "s3", Bucket: "b", Key: "m"}).Join("v1", "manifest.json").String(); got != "s3://b/m/v1/manifest.json" {
		t.Errorf("Join = %s", got)
	}
}

// exercise runs the same contract against any backend.
func exercise(t *testing.T, s objstore.Store, root string) {
	ctx := context.Background()
	if err := objstore.PutBytes(ctx, s, root+"a/model.bin", []byte("weights")); err != nil {
		t.Fatal(err)
	}
	if err := objstore.PutBytes(ctx, s, root+"a/sub/metrics.json", []byte(`{"acc":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := objstore.PutBytes(ctx, s, root+"ab/other", []byte("x")); err != nil {
		t.Fatal(err)
	}
	b, err := objstore.ReadAll(ctx, s, root+"a/model.bin", 1<<20)
	if err != nil || string(b) != "weights" {
		t.Fatalf("ReadAll = %q, %v", b, err)
	}
	if _, err := objstore.ReadAll(ctx, s, root+"a/model.bin", 3); err == nil {
		t.Error("ReadAll ignored its limit")
	}
	info, err := s.Stat(ctx, root+"a/model.bin")
	if err != nil || info.Size != 7 {
		t.Fatalf("Stat = %+v, %v", info, err)
	}
	if _, err := s.Stat(ctx, root+"a/missing"); !objstore.IsNotExist(err) {
		t.Errorf("Stat(missing) = %v, want not-exist", err)
	}
	if _, err := s.Open(ctx, root+"a/missing"); !objstore.IsNotExist(err) {
		t.Errorf("Open(missing) = %v, want not-exist", err)
	}
	list, err := s.List(ctx, root+"a/")
	if err != nil {
		t.Fatal(err)
	}
	var uris []string
	for _, i := range list {
		uris = append(uris, strings.TrimPrefix(i.URI, root))
	}
	if diff := cmp.Diff([]string{"a/model.bin", "a/sub/metrics.json"}, uris); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if err := s.Copy(ctx, root+"a/model.bin", root+"c/model.bin"); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Open(ctx, root+"c/model.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "weights" {
		t.Errorf("copy = %q", got)
	}
	if err := s.Delete(ctx, root+"c/model.bin"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, root+"c/model.bin"); err != nil {
		t.Errorf("deleting a missing object: %v", err)
	}
	if _, err := s.Stat(ctx, root+"c/model.bin"); !objstore.IsNotExist(err) {
		t.Errorf("after delete: %v", err)
	}
}

func TestFileStore(t *testing.T) {
	t.Parallel()
	r, err := objstore.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, r, "file://"+t.TempDir()+"/")
	if _, err := r.Stat(context.Background(), "s3://b/k"); err == nil {
		t.Error("s3 URI accepted without an S3 client")
	}
}

func TestS3StoreAgainstMinIO(t *testing.T) {
	m := testenv.StartMinIO(t)
	m.MakeBucket("models")
	r, err := objstore.New(&objstore.S3Config{Endpoint: m.Endpoint, Creds: m.Creds(), MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, r, "s3://models/t/")

	ctx := context.Background()
	if _, err := r.Stat(ctx, "s3://nobucket/x"); !objstore.IsNotExist(err) {
		t.Errorf("stat in a missing bucket = %v, want not-exist", err)
	}
	if err := objstore.PutBytes(ctx, r, "s3://nobucket/x", []byte("x")); exitcode.Of(err) != exitcode.BadInput {
		t.Errorf("put into a missing bucket = %v (code %d), want bad input", err, exitcode.Of(err))
	}
	// Cross-backend copy streams.
	dir := "file://" + t.TempDir() + "/"
	if err := r.Copy(ctx, "s3://models/t/a/model.bin", dir+"model.bin"); err != nil {
		t.Fatal(err)
	}

	m.Stop()
	err = objstore.PutBytes(ctx, r, "s3://models/t/down", []byte("x"))
	if code := exitcode.Of(err); code != exitcode.Transient {
		t.Errorf("put with the server down = %v (code %d), want transient (3)", err, code)
	}
	_, err = r.Stat(ctx, "s3://models/t/a/model.bin")
	if exitcode.Of(err) != exitcode.Transient || errors.Is(err, objstore.ErrNotExist) {
		t.Errorf("stat with the server down = %v, want transient", err)
	}
}

func TestEndpointValidation(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"127.0.0.1:9000", "ftp://x", "http://", "http://h/path"} {
		if _, err := objstore.NewS3(objstore.S3Config{Endpoint: bad}); exitcode.Of(err) != exitcode.BadInput {
			t.Errorf("endpoint %q: %v, want bad input", bad, err)
		}
	}
}

// A connection reset in the middle of an object — reading or writing, on every retry — is a
// transient error (exit 3), never "not found", bad input or corrupt data; once the network
// heals, the same store works.
func TestConnectionResetMidObjectIsTransient(t *testing.T) {
	m := testenv.StartMinIO(t)
	m.MakeBucket("models")
	proxy, r := m.Proxied(t, 2)
	ctx := context.Background()
	big := bytes.Repeat([]byte("gantry!"), 200_000) // 1.4 MB
	if err := objstore.PutBytes(ctx, r, "s3://models/big", big); err != nil {
		t.Fatal(err)
	}
	proxy.CutAfter(64 << 10)
	if _, err := objstore.ReadAll(ctx, r, "s3://models/big", 16<<20); exitcode.Of(err) != exitcode.Transient || objstore.IsNotExist(err) {
		t.Errorf("read cut mid-object: %v (code %d), want transient", err, exitcode.Of(err))
	}
	if err := objstore.PutBytes(ctx, r, "s3://models/big2", big); exitcode.Of(err) != exitcode.Transient {
		t.Errorf("write cut mid-object: %v (code %d), want transient", err, exitcode.Of(err))
	}
	if proxy.Cuts() == 0 {
		t.Fatal("the proxy cut nothing: the test tested nothing")
	}
	proxy.CutAfter(0)
	if _, err := r.Stat(ctx, "s3://models/big2"); !objstore.IsNotExist(err) {
		t.Errorf("a write cut mid-object left an object behind: %v", err)
	}
	got, err := objstore.ReadAll(ctx, r, "s3://models/big", 16<<20)
	if err != nil || !bytes.Equal(got, big) {
		t.Errorf("after the network healed: %d bytes, %v", len(got), err)
	}
}

// CopySHA256 has MinIO compute the copy's SHA-256 (a full-object checksum the store keeps), and
// copies an object over the single-copy limit part by part on the server (small parts here);
// file:// and cross-backend copies hash the one stream they read.
func TestCopySHA256(t *testing.T) {
	m := testenv.StartMinIO(t)
	m.MakeBucket("models")
	s3, err := objstore.NewS3(objstore.S3Config{Endpoint: m.Endpoint, Creds: m.Creds()})
	if err != nil {
		t.Fatal(err)
	}
	s3.SetMaxCopyObject(5 << 20)
	r, err := objstore.New(&objstore.S3Config{Endpoint: m.Endpoint, Creds: m.Creds()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	small, big := bytes.Repeat([]byte("small"), 1000), make([]byte, 11<<20+123)
	for i := range big {
		big[i] = byte(i * 31 / 7)
	}
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	for name, b := range map[string][]byte{"small": small, "big": big} {
		if err := objstore.PutBytes(ctx, r, "s3://models/src/"+name, b); err != nil {
			t.Fatal(err)
		}
		got, err := s3.CopySHA256(ctx, "s3://models/src/"+name, "s3://models/dst/"+name)
		if err != nil || got != sum(b) {
			t.Errorf("%s: copy SHA-256 %s, %v; want %s", name, got, err, sum(b))
		}
		back, err := objstore.ReadAll(ctx, r, "s3://models/dst/"+name, 64<<20)
		if err != nil || !bytes.Equal(back, b) {
			t.Errorf("%s: the copy differs from the source (%d bytes, %v)", name, len(back), err)
		}
	}
	if stored, err := s3.StoredSHA256(ctx, "s3://models/dst/small"); err != nil || stored != sum(small) {
		t.Errorf("the server kept no SHA-256 of the copy: %q %v", stored, err)
	}
	// gantry's uploads carry their SHA-256 (one PUT, trailing checksum), big ones too; an upload
	// without a checksum, and a copy made part by part, claim none.
	for name, b := range map[string][]byte{"small": small, "big": big} {
		if stored, err := s3.StoredSHA256(ctx, "s3://models/src/"+name); err != nil || stored != sum(b) {
			t.Errorf("%s: stored SHA-256 of gantry's upload %q (%v), want %s", name, stored, err, sum(b))
		}
	}
	if _, err := m.Client().PutObject(ctx, "models", "plain", bytes.NewReader(small), int64(len(small)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"plain", "dst/big"} {
		if stored, err := s3.StoredSHA256(ctx, "s3://models/"+key); err != nil || stored != "" {
			t.Errorf("%s claims a stored SHA-256 %q (%v)", key, stored, err)
		}
	}
	dir := "file://" + t.TempDir() + "/"
	for _, tc := range [][2]string{{"s3://models/src/big", dir + "big"}, {dir + "big", dir + "big2"}, {dir + "big2", "s3://models/back"}} {
		if got, err := r.CopySHA256(ctx, tc[0], tc[1]); err != nil || got != sum(big) {
			t.Errorf("%s → %s: %s %v", tc[0], tc[1], got, err)
		}
	}
}
