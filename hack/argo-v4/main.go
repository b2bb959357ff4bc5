// Command argo-v4 validates gantry's generated Argo objects with Argo v4's own validation
// (strict lint included), so the same templates are known to work on a v4 controller. A module of
// its own: gantry itself stays on the v3 API it is built on. Run it with hack/verify-argo-v4.sh.
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	wfv1 "github.com/argoproj/argo-workflows/v4/pkg/apis/workflow/v1alpha1"
	"github.com/argoproj/argo-workflows/v4/util/logging"
	"github.com/argoproj/argo-workflows/v4/workflow/validate"
	"sigs.k8s.io/yaml"
)

type wftGetter map[string]*wfv1.WorkflowTemplate

func (g wftGetter) Get(_ context.Context, name string) (*wfv1.WorkflowTemplate, error) {
	if w, ok := g[name]; ok {
		return w, nil
	}
	return nil, fmt.Errorf("workflowtemplate %q not found", name)
}

type cwftGetter struct{}

func (cwftGetter) Get(_ context.Context, name string) (*wfv1.ClusterWorkflowTemplate, error) {
	return nil, fmt.Errorf("clusterworkflowtemplate %q not found", name)
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: argo-v4 TEMPLATES_DIR")
		os.Exit(2)
	}
	files, _ := filepath.Glob(filepath.Join(os.Args[1], "*.yaml"))
	sort.Strings(files)
	getter := wftGetter{}
	var crons []*wfv1.CronWorkflow
	var failed []string
	fail := func(format string, args ...any) { failed = append(failed, fmt.Sprintf(format, args...)) }
	bindings := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			fail("%v", err)
			continue
		}
		for _, doc := range bytes.Split(b, []byte("\n---\n")) {
			var meta struct{ Kind string }
			if err := yaml.Unmarshal(doc, &meta); err != nil || meta.Kind == "" {
				continue
			}
			switch meta.Kind {
			case "WorkflowTemplate":
				var w wfv1.WorkflowTemplate
				if err := yaml.UnmarshalStrict(doc, &w); err != nil {
					fail("%s: %v", f, err)
					continue
				}
				getter[w.Name] = &w
			case "CronWorkflow":
				var c wfv1.CronWorkflow
				if err := yaml.UnmarshalStrict(doc, &c); err != nil {
					fail("%s: %v", f, err)
					continue
				}
				crons = append(crons, &c)
			case "WorkflowEventBinding":
				var e wfv1.WorkflowEventBinding
				if err := yaml.UnmarshalStrict(doc, &e); err != nil {
					fail("%s: %v", f, err)
				}
				bindings++
			}
		}
	}
	// v4 validation logs through a logger it requires on the context.
	ctx := logging.WithLogger(context.Background(), logging.NewSlogLogger(logging.Warn, logging.Text))
	names := make([]string, 0, len(getter))
	for n := range getter {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, lint := range []bool{false, true} {
			if err := validate.ValidateWorkflowTemplate(ctx, getter, cwftGetter{}, getter[n], nil, validate.ValidateOpts{Lint: lint, WorkflowTemplateValidation: true}); err != nil {
				fail("WorkflowTemplate %s (lint=%t): %v", n, lint, err)
			}
		}
	}
	for _, c := range crons {
		if err := validate.ValidateCronWorkflow(ctx, getter, cwftGetter{}, c, nil); err != nil {
			fail("CronWorkflow %s: %v", c.Name, err)
		}
	}
	if len(getter) < 6 || len(crons) == 0 || bindings == 0 {
		fail("found %d WorkflowTemplates, %d CronWorkflows, %d bindings: not gantry's templates?", len(getter), len(crons), bindings)
	}
	if len(failed) > 0 {
		fmt.Fprintln(os.Stderr, "Argo v4 validation failed:\n  "+strings.Join(failed, "\n  "))
		os.Exit(1)
	}
	fmt.Printf("Argo v4: %d WorkflowTemplates (strict lint), %d CronWorkflows, %d WorkflowEventBindings valid\n", len(names), len(crons), bindings)
}
