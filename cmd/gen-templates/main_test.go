package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-ml/gantry/internal/exitcode"
)

// --train-repository sets both what the push binding matches (the registry's repository path)
// and what the trigger's runs pull (host and path).
func TestTrainRepositoryFlag(t *testing.T) {
	dir := t.TempDir()
	if err := newApp().Run([]string{"gen-templates", "--out", dir, "--train-repository", "registry.example.com:5000/ml/trainer"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "push-trigger.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`.target.repository == "ml/trainer"`, "value: registry.example.com:5000/ml/trainer"} {
		if !strings.Contains(s, want) {
			t.Errorf("push-trigger.yaml lacks %q", want)
		}
	}
	if strings.Contains(s, "gantry/fashion-trainer") {
		t.Errorf("push-trigger.yaml still names the default repository")
	}
	for _, bad := range []string{"fashion-trainer", "gantry/fashion-trainer", "registry.example.com/", "registry.example.com/ml/trainer:v1", "registry.example.com/ML/trainer"} {
		err := newApp().Run([]string{"gen-templates", "--out", t.TempDir(), "--train-repository", bad})
		if exitcode.Of(err) != exitcode.BadInput {
			t.Errorf("--train-repository %q: err = %v, want bad input (exit 2)", bad, err)
		}
	}
}

// --catch-up-schedule sets the catch-up CronWorkflow's schedule; one Argo would not run is bad input.
func TestCatchUpScheduleFlag(t *testing.T) {
	dir := t.TempDir()
	if err := newApp().Run([]string{"gen-templates", "--out", dir, "--catch-up-schedule", "@hourly"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "push-trigger.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "- '@hourly'") || strings.Contains(string(b), "*/5 * * * *") {
		t.Errorf("push-trigger.yaml does not run the catch-up @hourly:\n%s", b)
	}
	for _, bad := range []string{"every 5 minutes", "*/5 * * *", "61 * * * *"} {
		err := newApp().Run([]string{"gen-templates", "--out", t.TempDir(), "--catch-up-schedule", bad})
		if exitcode.Of(err) != exitcode.BadInput {
			t.Errorf("--catch-up-schedule %q: err = %v, want bad input (exit 2)", bad, err)
		}
	}
}
