// Package manifest defines a published model version's manifest.json and the
// model digest: a content address over a model's files that the publisher
// records and the model server verifies.
package manifest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/gantry-ml/gantry/internal/objstore"
)

// FileName is the manifest's name inside a version; it is written last.
const FileName = "manifest.json"

// File is one model file.
type File struct {
	Path   string `json:"path"` // relative to the version
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // hex
}

// Manifest describes one immutable model version.
type Manifest struct {
	SchemaVersion int    `json:"schemaVersion"`
	ModelName     string `json:"modelName"`
	Version       string `json:"version"`
	Digest        string `json:"digest"` // Digest(Files)
	Files         []File `json:"files"`
	SourceURI     string `json:"sourceURI"`
	// SourceETags are the source objects' entity tags when published (path → ETag): a
	// re-publish of the same, unchanged source is recognised from a listing, without copying.
	SourceETags         map[string]string `json:"sourceETags,omitempty"`
	TrainingImageDigest string            `json:"trainingImageDigest,omitempty"`
	DatasetDigest       string            `json:"datasetDigest,omitempty"`
	Metrics             map[string]any    `json:"metrics,omitempty"`
	Workflow            string            `json:"workflow,omitempty"`
	Created             time.Time         `json:"created"`
	Labels              map[string]string `json:"labels,omitempty"`
}

// Digest is "sha256:" + the sha256 of the sorted lines "<sha256>  <path>\n"
// (the sha256sum format) over the model's files.
func Digest(files []File) string {
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	h := sha256.New()
	for _, f := range sorted {
		fmt.Fprintf(h, "%s  %s\n", f.SHA256, f.Path)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Scan hashes every file under dir (except a manifest) and returns them sorted by path.
// When keep is not nil, it receives each file's bytes (for callers that load them anyway).
func Scan(ctx context.Context, s objstore.Store, dir string, keep func(path string, b []byte)) ([]File, error) {
	u, err := objstore.Parse(dir)
	if err != nil {
		return nil, err
	}
	prefix := u.Dir().String()
	list, err := s.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var files []File
	for _, info := range list {
		rel := strings.TrimPrefix(info.URI, prefix)
		if rel == FileName || rel == "" {
			continue
		}
		f, b, err := hashObject(ctx, s, info.URI, keep != nil)
		if err != nil {
			return nil, err
		}
		f.Path = rel
		if keep != nil {
			keep(rel, b)
		}
		files = append(files, f)
	}
	return files, nil
}

func hashObject(ctx context.Context, s objstore.Store, uri string, keepBytes bool) (File, []byte, error) {
	rc, err := s.Open(ctx, uri)
	if err != nil {
		return File{}, nil, err
	}
	defer rc.Close()
	h := sha256.New()
	var buf strings.Builder
	var w io.Writer = h
	if keepBytes {
		w = io.MultiWriter(h, &buf)
	}
	n, err := io.Copy(w, rc)
	if err != nil {
		return File{}, nil, fmt.Errorf("reading %s: %w", uri, err)
	}
	return File{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, []byte(buf.String()), nil
}
