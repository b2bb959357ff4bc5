package results

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWriteFilesAndJSONLine(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "results")
	var out bytes.Buffer
	want := map[string]string{"model-uri": "s3://b/m/", "accuracy": "0.8912", "reason": "line\n"}
	if err := Write(dir, &out, want); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got[e.Name()] = string(b)
	}
	wantFiles := map[string]string{"model-uri": "s3://b/m/", "accuracy": "0.8912", "reason": "line"}
	if diff := cmp.Diff(wantFiles, got); diff != "" {
		t.Errorf("result files (-want +got):\n%s", diff)
	}
	if !strings.HasSuffix(out.String(), "}\n") || strings.Count(out.String(), "\n") != 1 {
		t.Errorf("stdout is not one JSON line: %q", out.String())
	}
	var line map[string]string
	if err := json.Unmarshal(out.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, line); diff != "" {
		t.Errorf("json line (-want +got):\n%s", diff)
	}
}

func TestWriteRejectsOversizeWithoutWritingAnything(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var out bytes.Buffer
	err := Write(dir, &out, map[string]string{"a-ok": "x", "metrics": strings.Repeat("x", MaxSize+1)})
	if err == nil || !strings.Contains(err.Error(), "metrics") {
		t.Fatalf("Write() error = %v, want one naming the oversized result", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("wrote %d files despite the error", len(entries))
	}
	if out.Len() != 0 {
		t.Errorf("printed %q despite the error", out.String())
	}
	if err := Write(dir, nil, map[string]string{"exact": strings.Repeat("y", MaxSize)}); err != nil {
		t.Errorf("a value of exactly MaxSize must be accepted: %v", err)
	}
}

func TestWriteRejectsBadNames(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"Model", "model_uri", "../x", "", "-a", "a-"} {
		if err := Write(t.TempDir(), nil, map[string]string{name: "v"}); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
}

func TestWriteReplacesAtomically(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := Write(dir, nil, map[string]string{"verdict": "fail"}); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, nil, map[string]string{"verdict": "pass"}); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left temp files behind: %v", entries)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "verdict"))
	if string(b) != "pass" {
		t.Errorf("verdict = %q", b)
	}
}

// A reader (Argo's executor, Tekton's entrypoint) that opened a result while a retry rewrites it
// must read a whole value, never a truncated or half-written one: the new value arrives by
// rename, so a file already open keeps the old one. Writing in place (os.WriteFile truncates
// first) fails this.
func TestWriteNeverChangesAFileInPlace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := Write(dir, nil, map[string]string{"reason": "canary failed: accuracy 0.41"}); err != nil {
		t.Fatal(err)
	}
	old, err := os.Open(filepath.Join(dir, "reason"))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := Write(dir, nil, map[string]string{"reason": "ok"}); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(old)
	if err != nil || string(b) != "canary failed: accuracy 0.41" {
		t.Errorf("a reader of the old result read %q (%v): the file was rewritten in place", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "reason")); string(b) != "ok" {
		t.Errorf("new value %q", b)
	}
}
