package pipeline

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
	"k8s.io/utils/ptr"

	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/taskcli"
	approvecmd "github.com/gantry-ml/gantry/tasks/approve/command"
	canarycmd "github.com/gantry-ml/gantry/tasks/canary/command"
	publishcmd "github.com/gantry-ml/gantry/tasks/publish/command"
	traincmd "github.com/gantry-ml/gantry/tasks/train/command"
)

// Apps are the task binaries' CLI definitions, the one place each flag is described. Nothing
// here runs them: the generator only reads their flags.
func Apps() map[string]*cli.App {
	return map[string]*cli.App{
		traincmd.Name:   traincmd.New(kube.Clients{}),
		publishcmd.Name: publishcmd.New(kube.Clients{}),
		canarycmd.Name:  canarycmd.New(),
		approvecmd.Name: approvecmd.New(kube.Clients{}),
	}
}

// AppNames lists Apps in the order of the binaries' templates.
var AppNames = []string{traincmd.Name, publishcmd.Name, canarycmd.Name, approvecmd.Name}

// resolve fills every parameter's description and default from the flag behind it, and checks
// that the flag exists on the binary's (sub)command and reads the parameter's env var.
func resolve(tasks []Task) ([]Task, error) {
	apps := Apps()
	out := make([]Task, len(tasks))
	for i, t := range tasks {
		app, ok := apps[t.Binary]
		if !ok {
			return nil, fmt.Errorf("template %s/%s: no binary %s", t.Binary, t.Template, t.Binary)
		}
		t.Params = append([]Param(nil), t.Params...)
		for j, p := range t.Params {
			if p.NotAFlag {
				continue
			}
			name := p.Flag
			if name == "" {
				name = p.Name
			}
			f, ok := taskcli.Lookup(app, t.Subcommand, name)
			if !ok {
				return nil, fmt.Errorf("template %s/%s passes --%s, which %s %s does not define", t.Binary, t.Template, name, t.Binary, strings.Join(t.Subcommand, " "))
			}
			doc := f.(cli.DocGenerationFlag)
			if p.Env != "" && !slices.Contains(doc.GetEnvVars(), p.Env) {
				return nil, fmt.Errorf("template %s/%s passes %s in $%s, which --%s does not read (%v)", t.Binary, t.Template, p.Name, p.Env, name, doc.GetEnvVars())
			}
			if p.SecretKey == "" { // a Secret's parameter describes the Secret
				p.Description = doc.GetUsage()
			}
			if p.FlagDefault {
				p.Default = ptr.To(FlagDefault(f))
			}
			t.Params[j] = p
		}
		out[i] = t
	}
	return out, nil
}

// FlagDefault is a flag's default as a template would pass it back: durations as Go parses them
// ("2h", "5m30s"), booleans as true/false, lists comma-separated.
func FlagDefault(f cli.Flag) string {
	switch x := f.(type) {
	case *cli.BoolFlag:
		return strconv.FormatBool(x.Value)
	case *cli.DurationFlag:
		return taskcli.ShortDuration(x.Value)
	case *cli.GenericFlag:
		if x.Value == nil {
			return ""
		}
		return x.Value.String()
	}
	if d, ok := f.(cli.DocGenerationFlag); ok {
		return d.GetValue()
	}
	return ""
}
