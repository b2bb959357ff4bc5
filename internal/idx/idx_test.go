package idx

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/testenv"
)

const debianDataset = "/usr/share/datasets/fashion-mnist/"

func encodeImages(n, rows, cols int, px []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, []uint32{magicImages, uint32(n), uint32(rows), uint32(cols)})
	b.Write(px)
	return b.Bytes()
}

func encodeLabels(l []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, []uint32{magicLabels, uint32(len(l))})
	b.Write(l)
	return b.Bytes()
}

func gz(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

func TestReadImagesRawAndGzip(t *testing.T) {
	t.Parallel()
	raw := encodeImages(2, 2, 3, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	for name, in := range map[string][]byte{"raw": raw, "gzip": gz(raw)} {
		im, d, err := ReadImages(bytes.NewReader(in))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if im.N != 2 || im.Rows != 2 || im.Cols != 3 || !bytes.Equal(im.Image(1), []byte{7, 8, 9, 10, 11, 12}) {
			t.Errorf("%s: got %+v", name, im)
		}
		if d.MD5 == "" || len(d.SHA256) != 64 {
			t.Errorf("%s: digests %+v", name, d)
		}
	}
}

func TestCorruptInputIsAnError(t *testing.T) {
	t.Parallel()
	good := encodeImages(2, 2, 2, make([]byte, 8))
	for name, in := range map[string][]byte{
		"empty":          {},
		"short header":   good[:7],
		"wrong magic":    encodeLabels([]byte{1}),
		"truncated":      good[:len(good)-1],
		"trailing":       append(append([]byte{}, good...), 0),
		"huge dims":      encodeImages(MaxItems+1, 28, 28, nil),
		"zero rows":      encodeImages(1, 0, 28, nil),
		"bad gzip":       {0x1f, 0x8b, 0, 0},
		"truncated gzip": gz(good)[:20],
	} {
		_, _, err := ReadImages(bytes.NewReader(in))
		if !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", name, err)
		}
	}
	if _, _, err := ReadLabels(bytes.NewReader(good)); !errors.Is(err, ErrFormat) {
		t.Errorf("images as labels: %v", err)
	}
}

// cutReader serves the first n bytes, then fails the way the object store reports a connection
// reset mid-object: a transient error (exit 3).
type cutReader struct {
	r *bytes.Reader
	n int
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, exitcode.Retryable(fmt.Errorf("reading s3://datasets/x: %w", syscall.ECONNRESET))
	}
	if len(p) > c.n {
		p = p[:c.n]
	}
	k, err := c.r.Read(p)
	c.n -= k
	return k, err
}

// A connection lost while the dataset streams in stays transient (retried), never "invalid IDX
// data": only bytes that really end too early are a format error.
func TestConnectionLostMidFileIsTransientNotCorrupt(t *testing.T) {
	t.Parallel()
	raw := encodeImages(50, 28, 28, bytes.Repeat([]byte{7}, 50*28*28))
	for name, in := range map[string][]byte{"raw": raw, "gzip": gz(raw)} {
		for _, at := range []int{4, len(in) / 2} {
			_, _, err := ReadImages(&cutReader{bytes.NewReader(in), at})
			if exitcode.Of(err) != exitcode.Transient || errors.Is(err, ErrFormat) || !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("%s cut at %d: %v (code %d), want transient", name, at, err, exitcode.Of(err))
			}
		}
	}
	if _, _, err := ReadLabels(&cutReader{bytes.NewReader(encodeLabels(make([]byte, 100))), 20}); exitcode.Of(err) != exitcode.Transient {
		t.Errorf("labels cut: %v", err)
	}
}

func TestLoadChecksLabels(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := objstore.New(nil)
	ctx := context.Background()
	put := func(name string, b []byte) {
		if err := objstore.PutBytes(ctx, s, "file://"+dir+"/"+name, gz(b)); err != nil {
			t.Fatal(err)
		}
	}
	put("t10k-images-idx3-ubyte.gz", encodeImages(3, 1, 1, []byte{1, 2, 3}))
	put("t10k-labels-idx1-ubyte.gz", encodeLabels([]byte{0, 1}))
	if _, err := Load(ctx, s, "file://"+dir+"/", "t10k", 10); !errors.Is(err, ErrFormat) {
		t.Errorf("count mismatch: %v", err)
	}
	put("t10k-labels-idx1-ubyte.gz", encodeLabels([]byte{0, 1, 10}))
	if _, err := Load(ctx, s, "file://"+dir+"/", "t10k", 10); !errors.Is(err, ErrFormat) {
		t.Errorf("label out of range: %v", err)
	}
	put("t10k-labels-idx1-ubyte.gz", encodeLabels([]byte{0, 1, 9}))
	sp, err := Load(ctx, s, "file://"+dir, "t10k", 10)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Subset(2).Images.N != 2 || len(sp.Subset(2).Labels) != 2 || sp.Images.N != 3 {
		t.Error("Subset is wrong or modified the original")
	}
	if _, err := Load(ctx, s, "file://"+dir+"/", "train", 10); !objstore.IsNotExist(err) {
		t.Errorf("missing split: %v", err)
	}
}

func TestDebianFashionMNISTMatchesOfficialMD5(t *testing.T) {
	if _, err := os.Stat(debianDataset); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("dataset-fashion-mnist not installed: %v", err)
		}
		t.Skip("dataset-fashion-mnist not installed")
	}
	s, _ := objstore.New(nil)
	for split, n := range map[string]int{"train": 60000, "t10k": 10000} {
		sp, err := Load(context.Background(), s, "file://"+debianDataset, split, 10)
		if err != nil {
			t.Fatal(err)
		}
		if sp.Images.N != n || sp.Images.Rows != 28 || sp.Images.Cols != 28 {
			t.Errorf("%s: %d images of %dx%d", split, sp.Images.N, sp.Images.Rows, sp.Images.Cols)
		}
		if err := sp.CheckKnown(split); err != nil {
			t.Error(err)
		}
	}
}

func FuzzReadImages(f *testing.F) {
	f.Add(encodeImages(1, 2, 2, []byte{1, 2, 3, 4}))
	f.Add(gz(encodeImages(1, 1, 1, []byte{9})))
	f.Add([]byte{0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		im, _, err := ReadImages(bytes.NewReader(b))
		if err == nil && len(im.Pixels) != im.N*im.Rows*im.Cols {
			t.Fatalf("pixels %d for %d×%d×%d", len(im.Pixels), im.N, im.Rows, im.Cols)
		}
	})
}

func FuzzReadLabels(f *testing.F) {
	f.Add(encodeLabels([]byte{1, 2, 3}))
	f.Add(gz(encodeLabels([]byte{0})))
	f.Fuzz(func(t *testing.T, b []byte) {
		ReadLabels(bytes.NewReader(b))
	})
}

// The real thing: the dataset streams from a real MinIO through a proxy that resets the
// connection mid-file. Load says transient (exit 3, retried), never "invalid IDX data".
func TestLoadFromS3CutMidFileIsTransient(t *testing.T) {
	m := testenv.StartMinIO(t)
	m.MakeBucket("datasets")
	proxy, s := m.Proxied(t, 2)
	ctx := context.Background()
	n := 400
	px := make([]byte, n*28*28)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range px {
		px[i] = byte(rnd.Uint32()) // incompressible: the file stays well over the cut
	}
	lbl := make([]byte, n)
	for name, b := range map[string][]byte{"t10k-images-idx3-ubyte.gz": gz(encodeImages(n, 28, 28, px)), "t10k-labels-idx1-ubyte.gz": gz(encodeLabels(lbl))} {
		if err := objstore.PutBytes(ctx, s, "s3://datasets/f/"+name, b); err != nil {
			t.Fatal(err)
		}
	}
	proxy.CutAfter(32 << 10)
	_, err := Load(ctx, s, "s3://datasets/f/", "t10k", 10)
	if exitcode.Of(err) != exitcode.Transient || errors.Is(err, ErrFormat) || proxy.Cuts() == 0 {
		t.Errorf("load cut mid-file: %v (code %d, %d cuts), want transient, not a format error", err, exitcode.Of(err), proxy.Cuts())
	}
	proxy.CutAfter(0)
	if sp, err := Load(ctx, s, "s3://datasets/f/", "t10k", 10); err != nil || len(sp.Labels) != n {
		t.Errorf("after the network healed: %v", err)
	}
}
