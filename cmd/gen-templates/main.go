// Command gen-templates writes gantry's generated Argo WorkflowTemplates,
// RBAC, push trigger and Tekton catalog into a directory (default templates/).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/gantry-ml/gantry/internal/templategen"
)

func main() {
	dir := "templates"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	if err := write(dir); err != nil {
		fmt.Fprintf(os.Stderr, "gen-templates: error: %v\n", err)
		os.Exit(1)
	}
}

func write(dir string) error {
	files, err := templategen.Files()
	if err != nil {
		return err
	}
	for _, name := range templategen.SortedNames(files) {
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
