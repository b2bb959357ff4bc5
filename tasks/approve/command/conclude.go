package command

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/approve"
)

// conclude: approver conclude (how a pipeline turns a verdict into its outcome).
func (a *app) conclude() *cli.Command {
	var decision, reason string
	return &cli.Command{
		Name: "conclude", Usage: "end the run as Failed with --reason unless --decision is approved or pass (how the pipeline turns a verdict into its outcome)",
		Flags: taskcli.Flags([]cli.Flag{
			&cli.StringFlag{Name: "decision", Destination: &decision, Usage: "approved|rejected (approval) or pass|fail (canary verdict)"},
			&cli.StringFlag{Name: "reason", Destination: &reason, Usage: "the message the failed run shows"}}, a.common.Flags()),
		Action: func(c *cli.Context) error {
			if err := approve.Conclude(decision, reason); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "concluded: %s\n", decision)
			return nil
		},
	}
}
