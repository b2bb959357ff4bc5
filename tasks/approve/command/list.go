package command

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
)

// list: approver list (people: what waits for them).
func (a *app) list() *cli.Command {
	var (
		node string
		all  bool
	)
	return &cli.Command{
		Name: "list", Usage: "runs waiting for approval, with their canary numbers",
		Flags: a.flags(nodeFlag(&node),
			&cli.BoolFlag{Name: "all-namespaces", Aliases: []string{"A"}, Destination: &all, Usage: "list waiting runs in every namespace you may list workflows in"}),
		Action: func(c *cli.Context) error {
			ap, ns, err := a.approver(c)
			if err != nil {
				return err
			}
			if all {
				ns = ""
			}
			l, err := ap.List(c.Context, ns, node)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			if all {
				fmt.Fprint(tw, "NAMESPACE\t")
			}
			fmt.Fprintln(tw, "RUN\tMODEL\tVERSION\tACCURACY\tBASELINE\tP99 MS\tAPPROVALS\tWAITING")
			for _, w := range l {
				if all {
					fmt.Fprintf(tw, "%s\t", w.Namespace)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", w.Run, dash(w.Candidate.ModelName), dash(w.Candidate.ModelVersion), dash(w.Candidate.Accuracy),
					dash(w.Candidate.BaselineAccuracy), dash(w.Candidate.P99Ms), len(w.Have), w.Need, time.Since(w.Since).Round(time.Second))
			}
			return tw.Flush()
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
