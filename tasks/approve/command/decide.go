package command

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/tasks/approve"
)

// decide: approver approve|reject RUN (people), as verb with the decision d.
func (a *app) decide(verb, d, usage string) *cli.Command {
	var (
		o      approve.DecideOptions
		tekton bool
	)
	return &cli.Command{
		Name: verb, Usage: usage, ArgsUsage: "RUN",
		Flags: a.flags(nodeFlag(&o.Node), &cli.StringFlag{Name: "reason", Destination: &o.Reason, Usage: "why (required to reject)"},
			&cli.BoolFlag{Name: "tekton", Destination: &tekton, Usage: "record the decision for a Tekton PipelineRun (approver wait) instead of resuming an Argo run"}),
		Action: func(c *cli.Context) error {
			o.Run, o.Decision = c.Args().First(), d
			if o.Run == "" || c.NArg() > 1 {
				return exitcode.Invalidf("usage: approver %s RUN [--reason TEXT]", c.Command.Name)
			}
			ap, ns, err := a.approver(c)
			if err != nil {
				return err
			}
			o.Namespace = ns
			if tekton {
				if err := a.withDynamic(ap); err != nil {
					return err
				}
				who, err := ap.Record(c.Context, o)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "%s %s by %s\n", o.Run, d, who)
				return nil
			}
			r, err := ap.Decide(c.Context, o)
			if err != nil {
				return err
			}
			if r.Resumed {
				fmt.Fprintf(c.App.Writer, "%s %s by %s\n", o.Run, d, r.By)
			} else {
				fmt.Fprintf(c.App.Writer, "%s: approval by %s recorded (%d of %d); waiting for more approvers\n", o.Run, r.By, r.Have, r.Need)
			}
			return nil
		},
	}
}
