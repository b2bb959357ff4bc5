package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/pipeline"
)

// docs are the pages whose commands and names must be real.
func docs(t *testing.T) map[string]string {
	t.Helper()
	root := filepath.Join("..", "..")
	var paths []string
	for _, glob := range []string{"README.md", "docs/*.md", "tasks/*/README.md", "images/*/README.md"} {
		m, err := filepath.Glob(filepath.Join(root, glob))
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, m...)
	}
	out := map[string]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = string(b)
	}
	if len(out) < 12 {
		t.Fatalf("only %d docs found", len(out))
	}
	return out
}

// flagNames are every flag of an app, its commands and theirs.
func flagNames(app *cli.App) map[string]bool {
	names := map[string]bool{"help": true}
	add := func(fs []cli.Flag) {
		for _, f := range fs {
			for _, n := range f.Names() {
				names[n] = true
			}
		}
	}
	add(app.Flags)
	var walk func([]*cli.Command)
	walk = func(cs []*cli.Command) {
		for _, c := range cs {
			add(c.Flags)
			walk(c.Subcommands)
		}
	}
	walk(app.Commands)
	return names
}

// codeLines are the inline code spans and code-block lines of a page.
func codeLines(doc string) []string {
	var out []string
	inBlock := false
	span := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inBlock = !inBlock
			continue
		}
		if inBlock {
			out = append(out, line)
			continue
		}
		for _, m := range span.FindAllStringSubmatch(line, -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// The docs name only what exists: every gantry binary's flag they show in a command, every make
// target, script, e2e or unit test, and every ml-pipeline parameter set with -p.
func TestDocsNameWhatExists(t *testing.T) {
	t.Parallel()
	apps := pipeline.Apps()
	apps["gen-templates"] = newApp()
	flags := map[string]map[string]bool{}
	for name, app := range apps {
		flags[name] = flagNames(app)
	}
	makefile, err := os.ReadFile(filepath.Join("..", "..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z][a-z0-9-]*):`).FindAllStringSubmatch(string(makefile), -1) {
		targets[m[1]] = true
	}
	tests := map[string]bool{}
	filepath.WalkDir(filepath.Join("..", ".."), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() && (d.Name() == ".git" || d.Name() == "_output") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(p, "_test.go") {
			b, _ := os.ReadFile(p)
			for _, m := range regexp.MustCompile(`(?m)^func (Test\w+|Benchmark\w+)\(`).FindAllStringSubmatch(string(b), -1) {
				tests[m[1]] = true
			}
		}
		return nil
	})
	params := map[string]bool{}
	for _, p := range pipeline.PipelineParams() {
		params[p.Name] = true
	}
	binaryRE := regexp.MustCompile(`(?:^|[\s/$(])(approver|model-publisher|canary-evaluator|train-launcher|gen-templates)((?:\s+[^|;&]*)?)`)
	flagRE := regexp.MustCompile(`(?:^|\s)--([a-z][a-z0-9-]*)`)
	makeRE := regexp.MustCompile(`\bmake ([a-z][a-z0-9-]*)`)
	scriptRE := regexp.MustCompile(`\bhack/[a-z0-9/_-]+\.sh\b`)
	testRE := regexp.MustCompile(`\b((?:Test|Benchmark)[A-Z]\w+)`)
	paramRE := regexp.MustCompile(`\s-p\s+([a-z][a-z0-9-]*)=`)
	checked := 0
	for page, doc := range docs(t) {
		for _, s := range scriptRE.FindAllString(doc, -1) {
			if _, err := os.Stat(filepath.Join("..", "..", s)); err != nil {
				t.Errorf("%s: %s does not exist", page, s)
			}
			checked++
		}
		for _, m := range testRE.FindAllStringSubmatch(doc, -1) {
			if !tests[m[1]] {
				t.Errorf("%s: %s: no such test", page, m[1])
			}
			checked++
		}
		for _, line := range codeLines(doc) {
			for _, m := range makeRE.FindAllStringSubmatch(line, -1) {
				if !targets[m[1]] {
					t.Errorf("%s: make %s: no such target in the Makefile", page, m[1])
				}
				checked++
			}
			if m := binaryRE.FindStringSubmatch(line); m != nil {
				for _, f := range flagRE.FindAllStringSubmatch(m[2], -1) {
					if !flags[m[1]][f[1]] {
						t.Errorf("%s: %q: %s has no flag --%s", page, strings.TrimSpace(line), m[1], f[1])
					}
					checked++
				}
			}
			if strings.Contains(line, "ml-pipeline") {
				for _, p := range paramRE.FindAllStringSubmatch(line, -1) {
					if !params[p[1]] {
						t.Errorf("%s: %q: ml-pipeline has no parameter %s", page, strings.TrimSpace(line), p[1])
					}
					checked++
				}
			}
		}
	}
	t.Logf("%d names checked", checked)
	if checked < 100 {
		t.Errorf("only %d names checked: the check reads nothing", checked)
	}
}
