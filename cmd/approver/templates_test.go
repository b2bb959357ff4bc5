package main

import (
	"testing"

	"github.com/gantry-ml/gantry/internal/pipeline"
	"github.com/gantry-ml/gantry/internal/taskcli"
)

// Every flag the generated templates pass exists on this binary.
func TestTemplateFlagsExist(t *testing.T) {
	t.Parallel()
	n := 0
	for _, task := range append(pipeline.Tasks(), pipeline.TektonOnlyTasks()...) {
		if task.Binary != "approver" {
			continue
		}
		n++
		if missing := taskcli.MissingFlags(newApp(nil), task.Subcommand, task.Flags()); len(missing) > 0 {
			t.Errorf("template %s/%s passes %v, which approver does not define", task.Binary, task.Template, missing)
		}
	}
	if n == 0 {
		t.Fatal("no template uses approver")
	}
}
