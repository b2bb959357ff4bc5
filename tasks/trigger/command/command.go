// Package command is the `train-launcher trigger` subcommand: one pipeline run per pushed
// training-image digest (see tasks/trigger). It lives in the train-launcher binary — it launches
// training runs — and the generated gantry-trigger template reads its flags from here.
package command

import (
	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/trigger"
)

// New returns the trigger subcommand; it uses clients.Argo (nil: the real clients).
func New(clients kube.Clients) *cli.Command {
	clients = clients.OrReal()
	var (
		o       trigger.Options
		digests string
		common  taskcli.Common
		k       taskcli.Kube
	)
	flags := []cli.Flag{
		&cli.StringFlag{Name: "repository", Destination: &o.Repository, Usage: "the training image's repository as the cluster pulls it (host/path); each run gets <repository>@<digest>"},
		&cli.StringFlag{Name: "digests", Destination: &digests, Usage: "pushed digests, from a registry notification: a JSON list (what the event binding passes) or comma-separated"},
		&cli.BoolFlag{Name: "catch-up", Destination: &o.CatchUp, Usage: "also list the repository's tags and start a run for every digest they point to that has none (the first catch-up adopts what is there, starting nothing)"},
		&cli.StringFlag{Name: "catch-up-repository", Destination: &o.CatchUpRepository, Usage: "where --catch-up lists the tags, when the trigger reaches the registry by another name than the nodes do (default: --repository)"},
		&cli.StringFlag{Name: "template", Value: "ml-pipeline", Destination: &o.Template, Usage: "WorkflowTemplate each run is submitted from; runs are named <template>-<12 hex of the digest>"},
		&cli.StringFlag{Name: "parameter", Value: "train-image", Destination: &o.Parameter, Usage: "the template's parameter that receives <repository>@<digest>"},
		&cli.GenericFlag{Name: "param", Value: taskcli.KeyValues(&o.Params), Usage: "KEY=VALUE parameter for every run (repeatable; comma-separated pairs)"},
	}
	return &cli.Command{
		Name:  "trigger",
		Usage: "start exactly one pipeline run per pushed training-image digest (from a notification, or --catch-up)",
		Description: "Each digest gets the run <template>-<12 hex of the digest>, created from the WorkflowTemplate with\n" +
			"<parameter>=<repository>@<digest>: a notification delivered twice, or a digest seen by the\n" +
			"notification and the catch-up, starts one run (the second create is refused by name). A ledger\n" +
			"ConfigMap per digest (gantry-triggered-<run>) remembers it after the run is deleted.\n" +
			"Results: submitted (run names), existing, adopted. Exit codes: 0 ok, 2 bad input, 3 transient.",
		Flags: taskcli.Flags(flags, k.Flags(), common.Flags()),
		Action: func(c *cli.Context) error {
			log, err := common.Logger(c.App.ErrWriter)
			if err != nil {
				return err
			}
			if o.Digests, err = trigger.ParseDigests(digests); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			wf, kc, ns, err := clients.Argo(k.Kubeconfig, k.Namespace)
			if err != nil {
				return err
			}
			o.Namespace = ns
			res, err := trigger.New(wf, kc, trigger.WithLogger(log)).Run(c.Context, o)
			if err != nil {
				return err
			}
			return common.WriteResults(c.App.Writer, res.Values())
		},
	}
}
