// Package idx reads the IDX files MNIST-style datasets ship in (optionally
// gzip-compressed), validating magic numbers, dimensions and counts. Corrupt
// or truncated input is an error, never a panic.
package idx

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/klauspost/compress/gzip"
	"hash"
	"io"
	"strings"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
)

// Limits on what a file may declare, so a corrupt header cannot ask for
// terabytes of memory.
const (
	MaxItems = 10_000_000
	MaxSide  = 1024
	MaxBytes = 1 << 31
)

const (
	magicLabels = 0x00000801
	magicImages = 0x00000803
)

// Images are N images of Rows×Cols bytes, row-major, one after another.
type Images struct {
	N, Rows, Cols int
	Pixels        []byte
}

// Image returns image i's pixels.
func (im *Images) Image(i int) []byte {
	sz := im.Rows * im.Cols
	return im.Pixels[i*sz : (i+1)*sz]
}

// ErrFormat is wrapped by every error about the bytes themselves.
var ErrFormat = errors.New("invalid IDX data")

// Digests of the uncompressed bytes, computed while reading.
type Digests struct {
	MD5    string
	SHA256 string
}

// decompress returns a reader over the uncompressed bytes: gzip is detected by its magic.
func decompress(r io.Reader) (io.Reader, func() error, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	head, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	if len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, readError("gzip", err)
		}
		return zr, zr.Close, nil
	}
	return br, func() error { return nil }, nil
}

type hashing struct {
	r    io.Reader
	m, s hash.Hash
}

func (h *hashing) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.m.Write(p[:n])
	h.s.Write(p[:n])
	return n, err
}

func readHeader(r io.Reader, magic uint32, ndims int) ([]int, error) {
	hdr := make([]uint32, 1+ndims)
	if err := binary.Read(r, binary.BigEndian, hdr); err != nil {
		return nil, readError("header", err)
	}
	if hdr[0] != magic {
		return nil, fmt.Errorf("%w: magic 0x%08x, want 0x%08x", ErrFormat, hdr[0], magic)
	}
	dims := make([]int, ndims)
	for i, d := range hdr[1:] {
		dims[i] = int(d)
	}
	return dims, nil
}

// readError tells a transport failure of the source (a connection reset mid-object, which the
// object store marks transient: exit 3, retried) from bytes that end too early (ErrFormat).
func readError(what string, err error) error {
	if exitcode.Of(err) == exitcode.Transient {
		return fmt.Errorf("reading %s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %v", ErrFormat, what, err)
}

func readBody(r io.Reader, n int64) ([]byte, error) {
	if n > MaxBytes {
		return nil, fmt.Errorf("%w: body of %d bytes is over the limit", ErrFormat, n)
	}
	// Grow as data arrives rather than trusting the header with one big allocation.
	var buf bytes.Buffer
	got, err := io.CopyN(&buf, r, n)
	if err != nil {
		return nil, readError(fmt.Sprintf("truncated: %d of %d bytes", got, n), err)
	}
	var extra [1]byte
	if k, _ := io.ReadFull(r, extra[:]); k != 0 {
		return nil, fmt.Errorf("%w: trailing bytes after %d", ErrFormat, n)
	}
	return buf.Bytes(), nil
}

// ReadImages reads an images file (magic 0x803).
func ReadImages(r io.Reader) (*Images, Digests, error) {
	d, closeFn, err := decompress(r)
	if err != nil {
		return nil, Digests{}, err
	}
	defer closeFn()
	h := &hashing{r: d, m: md5.New(), s: sha256.New()}
	dims, err := readHeader(h, magicImages, 3)
	if err != nil {
		return nil, Digests{}, err
	}
	n, rows, cols := dims[0], dims[1], dims[2]
	if n <= 0 || n > MaxItems || rows <= 0 || rows > MaxSide || cols <= 0 || cols > MaxSide {
		return nil, Digests{}, fmt.Errorf("%w: dimensions %d×%d×%d out of range", ErrFormat, n, rows, cols)
	}
	px, err := readBody(h, int64(n)*int64(rows)*int64(cols))
	if err != nil {
		return nil, Digests{}, err
	}
	return &Images{N: n, Rows: rows, Cols: cols, Pixels: px}, digests(h), nil
}

// ReadLabels reads a labels file (magic 0x801).
func ReadLabels(r io.Reader) ([]byte, Digests, error) {
	d, closeFn, err := decompress(r)
	if err != nil {
		return nil, Digests{}, err
	}
	defer closeFn()
	h := &hashing{r: d, m: md5.New(), s: sha256.New()}
	dims, err := readHeader(h, magicLabels, 1)
	if err != nil {
		return nil, Digests{}, err
	}
	if dims[0] <= 0 || dims[0] > MaxItems {
		return nil, Digests{}, fmt.Errorf("%w: %d labels out of range", ErrFormat, dims[0])
	}
	l, err := readBody(h, int64(dims[0]))
	if err != nil {
		return nil, Digests{}, err
	}
	return l, digests(h), nil
}

func digests(h *hashing) Digests {
	return Digests{MD5: hex.EncodeToString(h.m.Sum(nil)), SHA256: hex.EncodeToString(h.s.Sum(nil))}
}

// Split is a set of labelled images.
type Split struct {
	Images *Images
	Labels []byte
	// Digest identifies the uncompressed images+labels bytes: sha256:<hex>.
	Digest string
	MD5    [2]string // images, labels
}

// File names of the standard splits.
func files(split string) (string, string) {
	return split + "-images-idx3-ubyte.gz", split + "-labels-idx1-ubyte.gz"
}

// KnownMD5 are the md5s of the uncompressed official Fashion-MNIST files.
var KnownMD5 = map[string]string{
	"train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
	"train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
	"t10k-images-idx3-ubyte.gz":  "8181f5470baa50b63fa0f6fddb340f0a",
	"t10k-labels-idx1-ubyte.gz":  "15d484375f8d13e6eb1aabb0c3f46965",
}

// Load reads split ("train" or "t10k") from a dataset prefix URI holding the
// standard file names, and checks labels match images and lie below classes.
func Load(ctx context.Context, s objstore.Store, prefix, split string, classes int) (*Split, error) {
	u, err := objstore.Parse(prefix)
	if err != nil {
		return nil, err
	}
	imgName, lblName := files(split)
	imgURI, lblURI := u.Join(imgName).String(), u.Join(lblName).String()
	rc, err := s.Open(ctx, imgURI)
	if err != nil {
		return nil, fmt.Errorf("opening dataset images: %w", err)
	}
	im, imd, err := ReadImages(rc)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", imgURI, err)
	}
	rc, err = s.Open(ctx, lblURI)
	if err != nil {
		return nil, fmt.Errorf("opening dataset labels: %w", err)
	}
	lb, lbd, err := ReadLabels(rc)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", lblURI, err)
	}
	if len(lb) != im.N {
		return nil, fmt.Errorf("%w: %s has %d labels for %d images", ErrFormat, lblURI, len(lb), im.N)
	}
	for i, l := range lb {
		if int(l) >= classes {
			return nil, fmt.Errorf("%w: %s: label %d of item %d is not below %d classes", ErrFormat, lblURI, l, i, classes)
		}
	}
	sum := sha256.Sum256([]byte(imd.SHA256 + lbd.SHA256))
	return &Split{Images: im, Labels: lb, Digest: "sha256:" + hex.EncodeToString(sum[:]), MD5: [2]string{imd.MD5, lbd.MD5}}, nil
}

// CheckKnown reports whether the split's md5s match the official files, and which do not.
func (s *Split) CheckKnown(split string) error {
	imgName, lblName := files(split)
	var bad []string
	if KnownMD5[imgName] != s.MD5[0] {
		bad = append(bad, imgName)
	}
	if KnownMD5[lblName] != s.MD5[1] {
		bad = append(bad, lblName)
	}
	if len(bad) > 0 {
		return fmt.Errorf("md5 of uncompressed %s does not match the official Fashion-MNIST files", strings.Join(bad, ", "))
	}
	return nil
}

// Subset returns the first n items (all when n <= 0 or n >= N).
func (s *Split) Subset(n int) *Split {
	if n <= 0 || n >= s.Images.N {
		return s
	}
	sz := s.Images.Rows * s.Images.Cols
	c := *s
	im := *s.Images
	im.N, im.Pixels = n, s.Images.Pixels[:n*sz]
	c.Images, c.Labels = &im, s.Labels[:n]
	return &c
}
