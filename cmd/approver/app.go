package main

import (
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	"github.com/urfave/cli/v2"
	"k8s.io/client-go/kubernetes"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/approve"
)

// clients builds the Argo and Kubernetes clients; tests replace it.
type clients func(kubeconfig, namespace string) (versioned.Interface, kubernetes.Interface, string, error)

func realClients(kubeconfig, namespace string) (versioned.Interface, kubernetes.Interface, string, error) {
	cfg, ns, err := kube.Config(kubeconfig, namespace)
	if err != nil {
		return nil, nil, "", err
	}
	wf, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, nil, "", err
	}
	kc, err := kubernetes.NewForConfig(cfg)
	return wf, kc, ns, err
}

func newApp(newClients clients) *cli.App {
	if newClients == nil {
		newClients = realClients
	}
	e := taskcli.Env
	gate := func(c *cli.Context) (*approve.Gate, string, error) {
		log, err := taskcli.Logger(c)
		if err != nil {
			return nil, "", err
		}
		wf, kc, ns, err := newClients(c.String("kubeconfig"), c.String("namespace"))
		if err != nil {
			return nil, "", err
		}
		return approve.NewGate(wf, kc, log), ns, nil
	}
	base := func(extra ...cli.Flag) []cli.Flag {
		f := append(extra, taskcli.KubeFlags()...)
		return append(f, taskcli.CommonFlags()...)
	}
	runFlag := &cli.StringFlag{Name: "run-name", EnvVars: e("run-name"), Usage: "the run (Argo: {{workflow.name}})"}
	nodeFlag := &cli.StringFlag{Name: "node", Value: "approval", EnvVars: e("node"), Usage: "display name of the approval suspend node"}
	candidateFlags := []cli.Flag{
		&cli.StringFlag{Name: "model-name", EnvVars: e("model-name"), Usage: "model name"},
		&cli.StringFlag{Name: "model-version", EnvVars: e("model-version"), Usage: "candidate version"},
		&cli.StringFlag{Name: "model-uri", EnvVars: e("model-uri"), Usage: "candidate version URI"},
		&cli.StringFlag{Name: "accuracy", EnvVars: e("accuracy"), Usage: "canary accuracy"},
		&cli.StringFlag{Name: "baseline-accuracy", EnvVars: e("baseline-accuracy"), Usage: "production accuracy on the same samples"},
		&cli.StringFlag{Name: "p99-ms", EnvVars: e("p99-ms"), Usage: "canary p99 latency"},
		&cli.StringFlag{Name: "report-uri", EnvVars: e("report-uri"), Usage: "canary report"},
	}
	candidate := func(c *cli.Context) approve.Candidate {
		return approve.Candidate{ModelName: c.String("model-name"), ModelVersion: c.String("model-version"), ModelURI: c.String("model-uri"),
			Accuracy: c.String("accuracy"), BaselineAccuracy: c.String("baseline-accuracy"), P99Ms: c.String("p99-ms"), ReportURI: c.String("report-uri")}
	}
	approvers := func(c *cli.Context) []string {
		var out []string
		for _, a := range strings.Split(c.String("approvers"), ",") {
			if a = strings.TrimSpace(a); a != "" {
				out = append(out, a)
			}
		}
		return out
	}
	approversFlag := &cli.StringFlag{Name: "approvers", EnvVars: e("approvers"), Usage: "comma-separated usernames allowed to approve (empty: anyone)"}
	decide := func(decision string) cli.ActionFunc {
		return func(c *cli.Context) error {
			run := c.Args().First()
			if run == "" || c.NArg() > 1 {
				return exitcode.Invalidf("usage: approver %s RUN [--reason TEXT]", c.Command.Name)
			}
			g, ns, err := gate(c)
			if err != nil {
				return err
			}
			var who string
			if c.Bool("tekton") {
				who, err = g.Record(c.Context, ns, run, decision, c.String("reason"), "")
			} else {
				who, err = g.Decide(c.Context, approve.DecideOptions{Namespace: ns, Run: run, Node: c.String("node"), Decision: decision, Reason: c.String("reason")})
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "%s %s by %s\n", run, decision, who)
			return nil
		}
	}
	decideFlags := base(nodeFlag, &cli.StringFlag{Name: "reason", Usage: "why (required to reject)"},
		&cli.BoolFlag{Name: "tekton", Usage: "record the decision for a Tekton PipelineRun (approver wait) instead of resuming an Argo run"})
	return &cli.App{
		Name:  "approver",
		Usage: "gantry's manual approval gate: request, decide, verify",
		Description: "In a pipeline: `request` notifies people, the run suspends on its approval node, `verify` reads the\n" +
			"decision (an expired suspend is a rejection). People: `list`, `approve RUN`, `reject RUN --reason`, or\n" +
			"plain `argo resume RUN`, which approves. Exit codes: 0 ok (a rejection is a result), 2 bad input, 3 transient.",
		Commands: []*cli.Command{
			{
				Name: "request", Usage: "post the candidate's numbers and the commands to decide to --notify-url (and log them)",
				Flags: base(append([]cli.Flag{runFlag,
					&cli.StringFlag{Name: "notify-url", EnvVars: e("notify-url"), Usage: "webhook receiving JSON with a Slack-compatible text field (empty: log only)"},
					&cli.IntFlag{Name: "retries", Value: 5, EnvVars: e("retries"), Usage: "webhook retries"},
				}, candidateFlags...)...),
				Action: func(c *cli.Context) error {
					g, ns, err := gate(c)
					if err != nil {
						return err
					}
					o := approve.RequestOptions{Namespace: ns, Run: c.String("run-name"), NotifyURL: c.String("notify-url"), Candidate: candidate(c), Retries: c.Int("retries")}
					log, _ := taskcli.Logger(c)
					m, err := approve.Request(c.Context, &http.Client{Timeout: 30 * time.Second}, o, log)
					if err != nil {
						return err
					}
					if err := g.Annotate(c.Context, ns, o.Run, o.Candidate); err != nil {
						log.Warn("could not record the candidate on the run", "error", err)
					}
					return taskcli.WriteResults(c, map[string]string{"message": truncate(m.Text)})
				},
			},
			{
				Name: "verify", Usage: "after the suspend: read the decision, enforce --approvers, write the audit record",
				Description: "Results: decision (approved|rejected), approved-by, reason, waited-seconds. A rejection exits 0.",
				Flags: base(append([]cli.Flag{runFlag, nodeFlag, approversFlag,
					&cli.DurationFlag{Name: "timeout", EnvVars: e("timeout"), Usage: "the approval suspend's duration; a node that ended at it expired (rejected)"},
					&cli.StringFlag{Name: "audit-uri", EnvVars: e("audit-uri"), Usage: "prefix for the audit record <run>.json"},
				}, append(candidateFlags, taskcli.StoreFlags()...)...)...),
				Action: func(c *cli.Context) error {
					if c.String("run-name") == "" {
						return exitcode.Invalidf("--run-name is required")
					}
					g, ns, err := gate(c)
					if err != nil {
						return err
					}
					store, err := taskcli.Store(c)
					if err != nil {
						return err
					}
					v, err := g.Verify(c.Context, store, approve.VerifyOptions{Namespace: ns, Run: c.String("run-name"), Node: c.String("node"),
						Timeout: c.Duration("timeout"), Approvers: approvers(c), AuditURI: c.String("audit-uri"), Candidate: candidate(c)})
					if err != nil {
						return err
					}
					return taskcli.WriteResults(c, v.Values())
				},
			},
			{
				Name: "wait", Usage: "Tekton (no suspend): block until `approver approve|reject --tekton` records a decision, or time out (rejected)",
				Flags: base(runFlag, approversFlag, &cli.DurationFlag{Name: "timeout", Value: 24 * time.Hour, EnvVars: e("timeout"), Usage: "how long to wait"}),
				Action: func(c *cli.Context) error {
					g, ns, err := gate(c)
					if err != nil {
						return err
					}
					v, err := g.Wait(c.Context, ns, c.String("run-name"), c.Duration("timeout"), approvers(c))
					if err != nil {
						return err
					}
					return taskcli.WriteResults(c, v.Values())
				},
			},
			{
				Name: "list", Usage: "runs waiting for approval, with their canary numbers",
				Flags: base(nodeFlag),
				Action: func(c *cli.Context) error {
					g, ns, err := gate(c)
					if err != nil {
						return err
					}
					l, err := g.List(c.Context, ns, c.String("node"))
					if err != nil {
						return err
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "RUN\tMODEL\tVERSION\tACCURACY\tBASELINE\tP99 MS\tWAITING")
					for _, w := range l {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", w.Run, dash(w.Candidate.ModelName), dash(w.Candidate.ModelVersion), dash(w.Candidate.Accuracy),
							dash(w.Candidate.BaselineAccuracy), dash(w.Candidate.P99Ms), time.Since(w.Since).Round(time.Second))
					}
					return tw.Flush()
				},
			},
			{
				Name: "gate", Usage: "end the run as Failed with --reason unless --decision is approved or pass (the pipeline's gates)",
				Flags: base(&cli.StringFlag{Name: "decision", EnvVars: e("decision"), Usage: "approved|rejected (approval) or pass|fail (canary verdict)"},
					&cli.StringFlag{Name: "reason", EnvVars: e("reason"), Usage: "the message the failed run shows"}),
				Action: func(c *cli.Context) error {
					if err := approve.Conclude(c.String("decision"), c.String("reason")); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "gate passed: %s\n", c.String("decision"))
					return nil
				},
			},
			{Name: "approve", Usage: "approve a waiting run as yourself (identity from your kube credentials)", ArgsUsage: "RUN", Flags: decideFlags, Action: decide(approve.Approved)},
			{Name: "reject", Usage: "reject a waiting run as yourself; --reason is required", ArgsUsage: "RUN", Flags: decideFlags, Action: decide(approve.Rejected)},
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func truncate(s string) string {
	if len(s) > 1000 {
		return s[:1000]
	}
	return s
}
