package results

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

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

// terminationMessage encodes results the way Tekton's entrypoint writes them into the pod's
// termination message (pkg/result.RunResult: key, value, type), with its start-time entry.
func terminationMessage(t *testing.T, values map[string]string) []byte {
	t.Helper()
	type runResult struct {
		Key   string `json:"key"`
		Value string `json:"value"`
		Type  int    `json:"type,omitempty"`
	}
	rs := []runResult{{Key: "StartedAt", Value: "2026-11-27T16:34:30.123456789Z", Type: 3}}
	for _, k := range sortedKeys(values) {
		rs = append(rs, runResult{Key: k, Value: values[k], Type: 1})
	}
	b, err := json.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A canary that fails on every gate writes a long reason beside its other results: the reason is
// shortened so that all of them still reach Tekton (the kubelet cuts a termination message at
// 4096 bytes, and a cut message loses every result).
func TestLongReasonIsShortenedToFitTektonsTerminationMessage(t *testing.T) {
	t.Parallel()
	values := map[string]string{"verdict": "fail", "accuracy": "0.1", "baseline-accuracy": "0.9",
		"baseline-digest": "sha256:" + strings.Repeat("a", 64), "p99-ms": "12", "report-uri": "s3://models/runs/" + strings.Repeat("r", 980) + "/canary/",
		"reason": strings.Repeat("<<p99>> é", 100)}
	if len(values["reason"]) > MaxSize || len(terminationMessage(t, values)) <= 4096 {
		t.Fatalf("the test's reason must be within MaxSize and the unshortened results over 4096 bytes (%d)", len(terminationMessage(t, values)))
	}
	dir := t.TempDir()
	if err := Write(dir, nil, values); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for k := range values {
		b, err := os.ReadFile(filepath.Join(dir, k))
		if err != nil {
			t.Fatal(err)
		}
		got[k] = string(b)
	}
	if n := len(terminationMessage(t, got)); n > 4096 {
		t.Errorf("termination message %d bytes, over 4096", n)
	}
	if r := got["reason"]; len(r) > FreeTextMax || !strings.HasSuffix(r, "…") || !strings.HasPrefix(values["reason"], strings.TrimSuffix(r, "…")) || !utf8.ValidString(r) {
		t.Errorf("reason %q: want a valid UTF-8 prefix of the original within %d bytes, ending in …", r, FreeTextMax)
	}
	if got["baseline-digest"] != values["baseline-digest"] || got["report-uri"] != values["report-uri"] {
		t.Errorf("only prose may be shortened: %v", got)
	}
}

// Results that are not prose are never cut: too many of them together is an error, and nothing
// is written.
func TestResultsOverTheBudgetAreRefused(t *testing.T) {
	t.Parallel()
	values := map[string]string{}
	for _, k := range []string{"a", "b", "c", "d"} {
		values[k] = strings.Repeat("<", 150) // JSON escapes < as \u003c: 6 bytes each
	}
	dir := t.TempDir()
	err := Write(dir, nil, values)
	if err == nil || !strings.Contains(err.Error(), "budget") {
		t.Fatalf("Write() = %v, want the budget refused", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("wrote %d files despite the error", len(entries))
	}
	delete(values, "d")
	if err := Write(dir, nil, values); err != nil {
		t.Errorf("three such results fit: %v", err)
	} else if n := len(terminationMessage(t, values)); n > 4096 {
		t.Errorf("accepted results make a %d-byte termination message", n)
	}
}
