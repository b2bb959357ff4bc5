package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/pipeline"
)

func TestFlagTablesListEveryFlagOnce(t *testing.T) {
	t.Parallel()
	for name, app := range pipeline.Apps() {
		tables := string(FlagTables(app))
		check := func(path string, flags []cli.Flag) {
			for _, f := range flags {
				row := "| `--" + f.Names()[0] + "`"
				if !strings.Contains(tables, row) {
					t.Errorf("%s%s: --%s is missing from the flag tables", name, path, f.Names()[0])
				}
				if commonFlags[f.Names()[0]] && strings.Count(tables, row) != 1 {
					t.Errorf("%s: common flag --%s listed %d times", name, f.Names()[0], strings.Count(tables, row))
				}
			}
		}
		check("", app.Flags)
		for _, c := range app.Commands {
			check(" "+c.Name, c.Flags)
		}
	}
}

func TestCommittedReadmesAreCurrent(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, dir := range ReadmeDirs {
		b, err := os.ReadFile(filepath.Join("..", "..", dir, "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(root, dir), 0o755)
		os.WriteFile(filepath.Join(root, dir, "README.md"), b, 0o644)
	}
	if err := WriteReadmes(root); err != nil {
		t.Fatal(err)
	}
	for _, dir := range ReadmeDirs {
		want, _ := os.ReadFile(filepath.Join(root, dir, "README.md"))
		got, _ := os.ReadFile(filepath.Join("..", "..", dir, "README.md"))
		if string(got) != string(want) {
			t.Errorf("%s/README.md: flag tables are stale (run hack/update-generated.sh)", dir)
		}
	}
}

func TestCommittedEnginesDocIsCurrent(t *testing.T) {
	t.Parallel()
	want, err := enginesDoc()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("..", "..", EnginesDoc))
	if err != nil || string(got) != string(want) {
		t.Errorf("%s is stale (run hack/update-generated.sh): %v", EnginesDoc, err)
	}
}
