package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/pipeline"
)

// WriteTemplates writes every generated template file under dir.
func WriteTemplates(dir string, o Options) error {
	files, err := FilesFor(o)
	if err != nil {
		return err
	}
	for _, name := range SortedNames(files) {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, files[name], 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ReadmeDirs maps each binary to its task's directory, which holds its README.
var ReadmeDirs = map[string]string{"train-launcher": "tasks/train", "model-publisher": "tasks/publish", "canary-evaluator": "tasks/canary", "approver": "tasks/approve"}

// Markers around the generated flag tables of a task README.
const (
	BeginFlags = "<!-- BEGIN GENERATED FLAGS: hack/update-generated.sh; edit the flags in command/command.go -->"
	EndFlags   = "<!-- END GENERATED FLAGS -->"
)

// WriteReadmes regenerates the flag tables between the markers of every task README under root.
func WriteReadmes(root string) error {
	apps := pipeline.Apps()
	for _, bin := range pipeline.AppNames {
		path := filepath.Join(root, ReadmeDirs[bin], "README.md")
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out, err := spliceFlags(b, FlagTables(apps[bin]))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := os.WriteFile(path, out, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func spliceFlags(doc, tables []byte) ([]byte, error) {
	i, j := bytes.Index(doc, []byte(BeginFlags)), bytes.Index(doc, []byte(EndFlags))
	if i < 0 || j < i {
		return nil, fmt.Errorf("no %q … %q markers", BeginFlags, EndFlags)
	}
	var b bytes.Buffer
	b.Write(doc[:i+len(BeginFlags)])
	b.WriteString("\n")
	b.Write(tables)
	b.Write(doc[j:])
	return b.Bytes(), nil
}

// commonFlags are on every binary (or every one that uses S3 / Kubernetes): one table lists them.
var commonFlags = func() map[string]bool {
	var c taskcli.Common
	var s taskcli.Store
	var k taskcli.Kube
	out := map[string]bool{}
	for _, f := range append(append(c.Flags(), s.Flags()...), k.Flags()...) {
		out[f.Names()[0]] = true
	}
	return out
}()

// FlagTables renders an app's flags as Markdown: one table per (sub)command without the
// common flags, then one table of the common flags it takes.
func FlagTables(app *cli.App) []byte {
	var b bytes.Buffer
	common := map[string]cli.Flag{}
	var order []string
	table := func(flags []cli.Flag) {
		b.WriteString("| flag | env | default | description |\n|---|---|---|---|\n")
		for _, f := range flags {
			name := f.Names()[0]
			if commonFlags[name] {
				if _, seen := common[name]; !seen {
					common[name] = f
					order = append(order, name)
				}
				continue
			}
			row(&b, f)
		}
	}
	if len(app.Commands) == 0 || app.Action != nil { // a root command of its own (train-launcher)
		if len(app.Commands) > 0 {
			fmt.Fprintf(&b, "\n`%s`\n\n", app.Name)
		}
		table(app.Flags)
	}
	for _, c := range app.Commands {
		fmt.Fprintf(&b, "\n`%s %s`%s\n\n", app.Name, c.Name, argsUsage(c))
		table(c.Flags)
	}
	if len(order) > 0 {
		b.WriteString("\nCommon flags (every subcommand that talks to the same service takes them):\n\n")
		b.WriteString("| flag | env | default | description |\n|---|---|---|---|\n")
		for _, name := range order {
			row(&b, common[name])
		}
	}
	return b.Bytes()
}

func argsUsage(c *cli.Command) string {
	if c.ArgsUsage == "" {
		return ""
	}
	return " `" + c.ArgsUsage + "`"
}

func row(b *bytes.Buffer, f cli.Flag) {
	doc := f.(cli.DocGenerationFlag)
	names := "`--" + f.Names()[0] + "`"
	for _, a := range f.Names()[1:] {
		names += " `-" + a + "`"
	}
	env := make([]string, len(doc.GetEnvVars()))
	for i, e := range doc.GetEnvVars() {
		env[i] = "`" + e + "`"
	}
	def := pipeline.FlagDefault(f)
	if _, isBool := f.(*cli.BoolFlag); (isBool && def == "false") || def == "0" || def == "0s" || def == "" {
		def = ""
	} else {
		def = "`" + def + "`"
	}
	usage := strings.NewReplacer("|", "\\|", "<", "&lt;").Replace(doc.GetUsage())
	fmt.Fprintf(b, "| %s | %s | %s | %s |\n", names, strings.Join(env, " "), def, usage)
}
