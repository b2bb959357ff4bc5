package command

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/kube"
)

func TestBadFlagsExit2WithoutClient(t *testing.T) {
	// Not parallel: every cli.App writes to urfave/cli's package-level help and version flags while
	// parsing, so two apps running at once in one test binary race (seen with -race).
	out := "file://" + t.TempDir()
	for name, args := range map[string][]string{
		"unknown flag":    {"--imagee=x"},
		"no image":        {"--run-name=r1", "--output-uri=" + out},
		"no run or job":   {"--image=i", "--output-uri=" + out},
		"bad env":         {"--image=i", "--run-name=r1", "--output-uri=" + out, "--env=NOVALUE"},
		"bad uri":         {"--image=i", "--run-name=r1", "--output-uri=/tmp/x"},
		"bad duration":    {"--image=i", "--run-name=r1", "--output-uri=" + out, "--timeout=soon"},
		"bad log format":  {"--image=i", "--run-name=r1", "--output-uri=" + out, "--log-format=xml"},
		"bad s3 endpoint": {"--image=i", "--run-name=r1", "--output-uri=" + out, "--s3-endpoint=minio:9000"},
	} {
		called := false
		app := New(kube.Clients{Kube: func(string, string) (kubernetes.Interface, string, error) {
			called = true
			return fake.NewClientset(), "ml", nil
		}})
		var stdout, stderr bytes.Buffer
		code := taskcliRun(app, args, &stdout, &stderr)
		if code != exitcode.BadInput {
			t.Errorf("%s: exit %d, want 2 (stderr %q)", name, code, stderr.String())
		}
		if called {
			t.Errorf("%s: a Kubernetes client was built before the input was validated", name)
		}
		if lines := strings.Count(stderr.String(), "\n"); lines != 1 || !strings.Contains(stderr.String(), "error:") {
			t.Errorf("%s: want one error line on stderr, got %q", name, stderr.String())
		}
	}
}

func TestEndToEndAgainstFakeCluster(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	outDir, resDir := t.TempDir(), t.TempDir()
	app := New(kube.Clients{Kube: func(string, string) (kubernetes.Interface, string, error) { return client, "ml", nil },
		// No Argo run of that name: the Job has no owner to follow.
		Dynamic: func(string, string) (dynamic.Interface, error) {
			return dynamicfake.NewSimpleDynamicClient(runtime.NewScheme()), nil
		}})
	// The trainer's work, done by the test: write outputs and complete the Job once it exists.
	go func() {
		w, err := client.BatchV1().Jobs("ml").Watch(context.Background(), metav1.ListOptions{})
		if err != nil {
			return
		}
		defer w.Stop()
		for ev := range w.ResultChan() {
			j := ev.Object.(*batchv1.Job)
			if len(j.Status.Conditions) > 0 {
				continue
			}
			os.WriteFile(filepath.Join(outDir, "model.safetensors"), []byte("w"), 0o644)
			os.WriteFile(filepath.Join(outDir, "metrics.json"), []byte(`{"test_accuracy":0.88}`), 0o644)
			time.Sleep(50 * time.Millisecond) // let the launcher's informer start watching
			j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
			client.BatchV1().Jobs("ml").UpdateStatus(context.Background(), j, metav1.UpdateOptions{})
			return
		}
	}()
	var stdout, stderr bytes.Buffer
	code := taskcliRun(app, []string{"--image=trainer@sha256:1", "--run-name=ml-pipeline-abc12", "--output-uri=file://" + outDir,
		"--results-dir=" + resDir, "--hyperparameter=epochs=3"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var got map[string]string
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("stdout is not one JSON line: %q", stdout.String())
	}
	delete(got, "duration-seconds")
	want := map[string]string{"job-name": "ml-pipeline-abc12-train", "model-uri": "file://" + outDir + "/", "metrics": `{"test_accuracy":0.88}`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	b, err := os.ReadFile(filepath.Join(resDir, "job-name"))
	if err != nil || string(b) != "ml-pipeline-abc12-train" {
		t.Errorf("results file job-name = %q, %v", b, err)
	}
	j, err := client.BatchV1().Jobs("ml").Get(context.Background(), "ml-pipeline-abc12-train", metav1.GetOptions{})
	if err != nil || j.Labels["gantry.dev/run"] != "ml-pipeline-abc12" {
		t.Errorf("job labels = %v, %v", j.Labels, err)
	}
}
