package command

import (
	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/tasks/approve"
)

// request: approver request (the pipeline's request-approval step).
func (a *app) request() *cli.Command {
	var o approve.RequestOptions
	return &cli.Command{
		Name: "request", Usage: "post the candidate's numbers and the commands to decide to --notify-url (and log them); results: message, notified, candidate (JSON, shown by list)",
		Flags: a.flags(append([]cli.Flag{runFlag(&o.Run),
			&cli.StringFlag{Name: "notify-url", Destination: &o.NotifyURL, Usage: "webhook receiving JSON with a Slack-compatible text field (empty: log only); a secret, never logged — pipelines pass it from a Secret in GANTRY_NOTIFY_URL. Delivery is best effort: after the retries the result notified is false and the command still succeeds"},
			&cli.IntFlag{Name: "retries", Value: 5, Destination: &o.Retries, Usage: "webhook retries"},
		}, candidateFlags(&o.Candidate)...)...),
		Action: func(c *cli.Context) error {
			ap, ns, err := a.approver(c)
			if err != nil {
				return err
			}
			o.Namespace = ns
			n, err := ap.Request(c.Context, o)
			if err != nil {
				return err
			}
			return a.common.WriteResults(c.App.Writer, n.Values())
		},
	}
}
