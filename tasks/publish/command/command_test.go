package command

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/taskcli"
)

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	app := New(kube.Clients{Kube: func(string, string) (kubernetes.Interface, string, error) { return fake.NewClientset(), "ml", nil }})
	code := taskcli.Run(context.Background(), app, append([]string{"model-publisher"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestPublishFromFilesystemAndBadInput(t *testing.T) {
	t.Parallel()
	src, reg := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(src, "model.safetensors"), []byte("w"), 0o644)
	os.WriteFile(filepath.Join(src, "metrics.json"), []byte(`{"test_accuracy":0.9}`), 0o644)
	code, out, stderr := run("publish", "--source-uri=file://"+src, "--registry-uri=file://"+reg, "--results-dir="+t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res map[string]string
	if err := json.Unmarshal([]byte(out), &res); err != nil || res["model-digest"] == "" || res["model-version"] == "" {
		t.Fatalf("results %q: %v", out, err)
	}
	if _, err := os.Stat(filepath.Join(reg, "fashion-mnist", res["model-version"], "manifest.json")); err != nil {
		t.Error(err)
	}
	for name, args := range map[string][]string{
		"bad name":     {"publish", "--source-uri=file://" + src, "--registry-uri=file://" + reg, "--model-name=Fashion_MNIST"},
		"no source":    {"publish", "--registry-uri=file://" + reg},
		"empty source": {"publish", "--source-uri=file://" + t.TempDir() + "/", "--registry-uri=file://" + reg},
		"bad env":      {"deploy", "--environment=qa", "--model-uri=file:///x/", "--server-image=s", "--registry-uri=file:///r"},
		"no model uri": {"deploy", "--environment=staging", "--server-image=s", "--registry-uri=file:///r"},
		"bad oci ref":  {"publish", "--source-uri=file://" + src, "--registry-uri=file://" + reg, "--oci-ref=UPPER//bad"},
		"teardown env": {"teardown", "--environment=dev"},
		"unknown flag": {"publish", "--sauce-uri=x"},
		"bad replicas": {"deploy", "--environment=staging", "--model-uri=file:///x/", "--server-image=s", "--registry-uri=file:///r", "--replicas=0"},
	} {
		if code, _, stderr := run(args...); code != exitcode.BadInput {
			t.Errorf("%s: exit %d (%s), want 2", name, code, stderr)
		}
	}
	// Production is replaced only by compare-and-swap: no baseline digest, or the canary's
	// "unknown", is refused before anything is touched, never taken as "don't check".
	prod := []string{"deploy", "--environment=production", "--model-uri=file:///x/", "--server-image=s", "--registry-uri=file:///r"}
	for _, tc := range []struct{ extra, says string }{
		{"", "needs --expect-live-digest"},
		{"--expect-live-digest=unknown", "could not tell which model"},
		{"--expect-live-digest=latest", "want sha256:"},
	} {
		args := prod
		if tc.extra != "" {
			args = append(append([]string{}, prod...), tc.extra)
		}
		if code, _, stderr := run(args...); code != exitcode.BadInput || !strings.Contains(stderr, tc.says) {
			t.Errorf("production deploy %q: exit %d (%s), want 2 saying %q", tc.extra, code, stderr, tc.says)
		}
	}
}
