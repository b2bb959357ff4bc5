package templategen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// A template parameter is a flag of its binary, described by it: a parameter the binary does not
// define, or an env var its flag does not read, stops the generator.
func TestParametersMustBeFlagsOfTheirBinary(t *testing.T) {
	t.Parallel()
	for name, task := range map[string]Task{
		"unknown flag":      {Binary: "approver", Template: "verify", Subcommand: []string{"verify"}, Params: []Param{req("no-such-flag")}},
		"flag of other cmd": {Binary: "approver", Template: "verify", Subcommand: []string{"verify"}, Params: []Param{req("notify-url")}},
		"env not read":      {Binary: "train-launcher", Template: "train", Params: []Param{{Name: "hp", Flag: "hyperparameter", Env: "GANTRY_HP"}}},
		"unknown binary":    {Binary: "trainer", Template: "train", Params: []Param{req("image")}},
	} {
		if _, err := resolve([]Task{task}); err == nil {
			t.Errorf("%s: resolved", name)
		}
	}
	got, err := resolve([]Task{{Binary: "train-launcher", Template: "train", Params: []Param{def("timeout"), set("cpu", "1"), req("image")}}})
	if err != nil {
		t.Fatal(err)
	}
	p := got[0].Params
	if *p[0].Default != "2h" || *p[1].Default != "1" || p[2].Default != nil || !strings.Contains(p[2].Description, "training image") {
		t.Errorf("resolved params %+v", p)
	}
}

func TestFlagTablesListEveryFlagOnce(t *testing.T) {
	t.Parallel()
	for name, app := range Apps() {
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
