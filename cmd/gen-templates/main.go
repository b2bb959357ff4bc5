// Command gen-templates writes gantry's generated files: the Argo
// WorkflowTemplates, RBAC, push trigger and Tekton catalog (--out), and the
// flag tables of the task READMEs (--readmes). hack/update-generated.sh runs
// it; hack/verify-generated.sh runs it into a temp dir and diffs.
package main

import (
	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/pipeline/argo"
)

func main() { taskcli.Main(newApp()) }

func newApp() *cli.App {
	var out, readmes, trainRepo, schedule string
	return &cli.App{
		Name:            "gen-templates",
		HideHelpCommand: true,
		Usage:           "write gantry's generated templates and README flag tables",
		UsageText:       "gen-templates [--out DIR] [--readmes ROOT] [--train-repository HOST/PATH] [--catch-up-schedule CRON]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Value: "templates", Destination: &out, Usage: "directory the templates are written to (created; files in it are overwritten)"},
			&cli.StringFlag{Name: "readmes", Destination: &readmes,
				Usage: "repository root whose tasks/<task>/README.md flag tables and docs/engines.md are regenerated in place (empty: leave them)"},
			&cli.StringFlag{Name: "train-repository", Value: argo.DefaultTrainRepository, Destination: &trainRepo,
				Usage: "the training image whose pushes start runs (push trigger), HOST/PATH as the nodes pull it"},
			&cli.StringFlag{Name: "catch-up-schedule", Value: argo.DefaultCatchUpSchedule, Destination: &schedule,
				Usage: "cron schedule of the push trigger's catch-up (lists the repository's tags; the longest a lost notification waits for its run)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return exitcode.Invalidf("unexpected argument %q (the output directory is --out DIR)", c.Args().First())
			}
			if _, _, err := argo.SplitRepository(trainRepo); err != nil {
				return exitcode.Invalidf("--train-repository: %v", err)
			}
			if err := argo.CheckSchedule(schedule); err != nil {
				return exitcode.Invalidf("--catch-up-schedule: %v", err)
			}
			if err := WriteTemplates(out, Options{TrainRepository: trainRepo, CatchUpSchedule: schedule}); err != nil {
				return err
			}
			if readmes != "" {
				if err := WriteEnginesDoc(readmes); err != nil {
					return err
				}
				return WriteReadmes(readmes)
			}
			return nil
		},
	}
}
