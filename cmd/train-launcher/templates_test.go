package main

import (
	"testing"

	"github.com/gantry-ml/gantry/internal/pipeline"
	"github.com/gantry-ml/gantry/internal/taskcli"
)

// Every flag the generated templates pass exists on this binary.
func TestTemplateFlagsExist(t *testing.T) {
	t.Parallel()
	n, problems := pipeline.FlagProblems("train-launcher", func(sub, flags []string) []string { return taskcli.MissingFlags(newApp(nil), sub, flags) })
	for _, p := range problems {
		t.Error(p)
	}
	if n == 0 {
		t.Fatal("no template uses train-launcher")
	}
}
