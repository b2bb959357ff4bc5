package objstore

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// FileStore serves file:// URIs from the local file system.
type FileStore struct{}

func filePath(uri string) (string, error) {
	u, err := Parse(uri)
	if err != nil {
		return "", err
	}
	if u.Scheme != "file" {
		return "", fmt.Errorf("%s is not a file:// URI", uri)
	}
	return u.Key, nil
}

func (FileStore) Open(_ context.Context, uri string) (io.ReadCloser, error) {
	p, err := filePath(uri)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", uri, err)
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("opening %s: is a directory: %w", uri, fs.ErrNotExist)
	}
	return f, nil
}

func (FileStore) Put(_ context.Context, uri string, r io.Reader, _ int64) error {
	p, err := filePath(uri)
	if err != nil {
		return err
	}
	if strings.HasSuffix(p, "/") {
		return fmt.Errorf("writing %s: URI names a directory", uri)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("writing %s: %w", uri, err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", uri, err)
	}
	_, werr := io.Copy(f, r)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(f.Name(), 0o644)
	}
	if werr == nil {
		werr = os.Rename(f.Name(), p)
	}
	if werr != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing %s: %w", uri, werr)
	}
	return nil
}

func (FileStore) Stat(_ context.Context, uri string) (Info, error) {
	p, err := filePath(uri)
	if err != nil {
		return Info{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return Info{}, fmt.Errorf("stat %s: %w", uri, err)
	}
	if st.IsDir() {
		return Info{}, fmt.Errorf("stat %s: is a directory: %w", uri, fs.ErrNotExist)
	}
	return Info{URI: uri, Size: st.Size(), ModTime: st.ModTime()}, nil
}

func (FileStore) List(_ context.Context, prefix string) ([]Info, error) {
	p, err := filePath(prefix)
	if err != nil {
		return nil, err
	}
	root := p
	if !strings.HasSuffix(root, "/") {
		root = filepath.Dir(root)
	}
	var out []Info
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && path == root {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".") || !strings.HasPrefix(path, p) {
			return nil
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, Info{URI: "file://" + path, Size: st.Size(), ModTime: st.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].URI < out[j].URI })
	return out, nil
}

func (s FileStore) Copy(ctx context.Context, src, dst string) error {
	rc, err := s.Open(ctx, src)
	if err != nil {
		return err
	}
	defer rc.Close()
	return s.Put(ctx, dst, rc, -1)
}

func (FileStore) Delete(_ context.Context, uri string) error {
	p, err := filePath(uri)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("deleting %s: %w", uri, err)
	}
	return nil
}
