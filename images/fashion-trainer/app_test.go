package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/internal/testenv"
)

func runApp(args ...string) (int, string) {
	var out, errb bytes.Buffer
	code := taskcli.Run(context.Background(), newApp(), append([]string{"fashion-trainer"}, args...), &out, &errb)
	return code, errb.String()
}

func TestTrainsSubsetAndWritesModel(t *testing.T) {
	data := testenv.FashionMNIST(t)
	out := t.TempDir()
	t.Setenv("GANTRY_HP_EPOCHS", "2") // what train-launcher --hyperparameter epochs=2 sets
	code, stderr := runApp("--dataset-uri="+data, "--output-uri=file://"+out, "--train-limit=3000", "--hidden=64")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, f := range []string{"model.safetensors", "config.json", "metrics.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	b, _ := os.ReadFile(filepath.Join(out, "metrics.json"))
	var m struct {
		TestAccuracy  float64 `json:"test_accuracy"`
		Epochs        []any   `json:"epochs"`
		DatasetDigest string  `json:"dataset_digest"`
		Official      bool    `json:"official_dataset"`
		TrainSamples  int     `json:"train_samples"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.TestAccuracy < 0.7 || len(m.Epochs) != 2 || m.DatasetDigest == "" || !m.Official || m.TrainSamples != 3000 {
		t.Errorf("metrics = %+v", m)
	}
}

func TestBadInputExit2(t *testing.T) {
	// Not parallel: every cli.App writes to urfave/cli's package-level help and version flags while
	// parsing, so two apps running at once in one test binary race (seen with -race).
	for name, args := range map[string][]string{
		"no dataset":   {"--output-uri=file:///tmp/x"},
		"bad hidden":   {"--dataset-uri=file:///d/", "--output-uri=file:///tmp/x", "--hidden=a,b"},
		"bad opt":      {"--dataset-uri=file:///d/", "--output-uri=file:///tmp/x", "--optimizer=rmsprop"},
		"zero epochs":  {"--dataset-uri=file:///d/", "--output-uri=file:///tmp/x", "--epochs=0"},
		"relative uri": {"--dataset-uri=data/", "--output-uri=file:///tmp/x"},
	} {
		if code, stderr := runApp(args...); code != exitcode.BadInput {
			t.Errorf("%s: exit %d (%s), want 2", name, code, stderr)
		}
	}
}

// --fail-attempts 2: the first two attempts fail (exit 1) before training, the third trains, and
// no marker is left in the output the pipeline publishes.
func TestFailAttemptsFailsTheFirstAttemptsOnly(t *testing.T) {
	data := testenv.FashionMNIST(t)
	out := t.TempDir()
	args := []string{"--dataset-uri=" + data, "--output-uri=file://" + out + "/", "--train-limit=500", "--hidden=16", "--epochs=1", "--fail-attempts=2"}
	for attempt := 1; attempt <= 2; attempt++ {
		if code, stderr := runApp(args...); code != 1 || !bytes.Contains([]byte(stderr), []byte("fails on purpose")) {
			t.Fatalf("attempt %d: exit %d (%s), want 1 on purpose", attempt, code, stderr)
		}
	}
	if code, stderr := runApp(args...); code != 0 {
		t.Fatalf("attempt 3: exit %d: %s", code, stderr)
	}
	entries, _ := os.ReadDir(out)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 3 {
		t.Errorf("output holds %v, want only the model, config and metrics", names)
	}
}

// --fail-exit-code=3 makes the attempts that fail on purpose transient failures (exit 3: the
// Job and the templates retry them); anything but 1 or 3 is bad input.
func TestFailExitCodeMakesTheFailureTransient(t *testing.T) {
	data := testenv.FashionMNIST(t)
	out := t.TempDir()
	args := []string{"--dataset-uri=" + data, "--output-uri=file://" + out + "/", "--train-limit=500", "--hidden=16", "--epochs=1", "--fail-attempts=1"}
	if code, stderr := runApp(append(args, "--fail-exit-code=3")...); code != 3 || !bytes.Contains([]byte(stderr), []byte("fails on purpose")) {
		t.Fatalf("exit %d (%s), want 3 on purpose", code, stderr)
	}
	if code, stderr := runApp(append(args, "--fail-exit-code=3")...); code != 0 {
		t.Fatalf("the retry: exit %d: %s", code, stderr)
	}
	if code, _ := runApp(append(args, "--fail-exit-code=7")...); code != 2 {
		t.Errorf("--fail-exit-code=7: exit %d, want 2", code)
	}
}
