// Package command is the approver CLI: its flags bind straight into the
// approve package's Options structs, and the generated templates and
// tasks/approve/README.md read their descriptions and defaults from here.
package command

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/approve"
)

// Name is the binary's name (and image and template name).
const Name = "approver"

// ClientsFunc builds the Argo and Kubernetes clients and returns the namespace to use.
type ClientsFunc = kube.ArgoClientsFunc

// RealClients are the in-cluster / kubeconfig clients.
var RealClients ClientsFunc = kube.ArgoClients

// Option configures the app (tests hand in fakes).
type Option func(*options)

type options struct{ newDynamic kube.DynamicFunc }

// WithDynamic sets how the dynamic client `approve|reject --tekton` reads the PipelineRun with is
// built (default: kube.Dynamic).
func WithDynamic(f kube.DynamicFunc) Option { return func(o *options) { o.newDynamic = f } }

// suspendDuration binds a timeout in the format of Argo's suspend duration (seconds, or a Go
// duration like 24h), so the suspend and verify read one parameter the same way.
type suspendDuration struct{ p *time.Duration }

func (v suspendDuration) Set(s string) error {
	d, err := wfv1.ParseStringToDuration(strings.TrimSpace(s))
	if err != nil || d < 0 {
		return fmt.Errorf("%q: want seconds (86400) or a duration (24h), as Argo's suspend takes", s)
	}
	*v.p = d
	return nil
}

func (v suspendDuration) String() string {
	if *v.p == 0 {
		return ""
	}
	return taskcli.ShortDuration(*v.p)
}

// Flags that several subcommands share, each described here once.
func runFlag(p *string) cli.Flag {
	return &cli.StringFlag{Name: "run-name", Destination: p, Usage: "the run (Argo: the workflow name; Tekton: the PipelineRun)"}
}

func nodeFlag(p *string) cli.Flag {
	return &cli.StringFlag{Name: "node", Value: "approval", Destination: p, Usage: "display name of the approval suspend node"}
}

func approversFlag(p *[]string) cli.Flag {
	return &cli.GenericFlag{Name: "approvers", Value: taskcli.List(p), Usage: "comma-separated exact usernames, as the API server authenticates them (alice@example.com, system:serviceaccount:ns:alice), allowed to approve (empty: any holder of the approve verb)"}
}

func candidateFlags(c *approve.Candidate) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "model-name", Destination: &c.ModelName, Usage: "model name"},
		&cli.StringFlag{Name: "model-version", Destination: &c.ModelVersion, Usage: "candidate version"},
		&cli.StringFlag{Name: "model-uri", Destination: &c.ModelURI, Usage: "candidate version URI"},
		&cli.StringFlag{Name: "accuracy", Destination: &c.Accuracy, Usage: "canary accuracy"},
		&cli.StringFlag{Name: "baseline-accuracy", Destination: &c.BaselineAccuracy, Usage: "production accuracy on the same samples"},
		&cli.StringFlag{Name: "p99-ms", Destination: &c.P99Ms, Usage: "canary p99 latency"},
		&cli.StringFlag{Name: "report-uri", Destination: &c.ReportURI, Usage: "canary report"},
	}
}

// New returns the approver app; newClients nil: RealClients.
func New(newClients ClientsFunc, opts ...Option) *cli.App {
	if newClients == nil {
		newClients = RealClients
	}
	o := options{newDynamic: kube.Dynamic}
	for _, f := range opts {
		f(&o)
	}
	var (
		common   taskcli.Common
		store    taskcli.Store
		k        taskcli.Kube
		request  approve.RequestOptions
		verify   approve.VerifyOptions
		wait     = approve.WaitOptions{Timeout: 24 * time.Hour}
		decision approve.DecideOptions
		tekton   bool
		listNode string
		listAll  bool
		conclude struct{ decision, reason string }
		// verifyFailOnReject makes verify end the run on a rejection (the pipeline, without a gate pod).
		verifyFailOnReject bool
		// waitFailOnReject: the same for the Tekton wait.
		waitFailOnReject bool
	)
	approver := func(c *cli.Context) (*approve.Approver, string, error) {
		log, err := common.Logger(c.App.ErrWriter)
		if err != nil {
			return nil, "", err
		}
		wf, kc, ns, err := newClients(k.Kubeconfig, k.Namespace)
		if err != nil {
			return nil, "", err
		}
		return approve.NewApprover(wf, kc, approve.WithLogger(log)), ns, nil
	}
	base := func(extra ...cli.Flag) []cli.Flag { return taskcli.Flags(extra, k.Flags(), common.Flags()) }
	decide := func(d string) cli.ActionFunc {
		return func(c *cli.Context) error {
			decision.Run, decision.Decision = c.Args().First(), d
			if decision.Run == "" || c.NArg() > 1 {
				return exitcode.Invalidf("usage: approver %s RUN [--reason TEXT]", c.Command.Name)
			}
			a, ns, err := approver(c)
			if err != nil {
				return err
			}
			decision.Namespace = ns
			if tekton {
				dyn, err := o.newDynamic(k.Kubeconfig, k.Namespace)
				if err != nil {
					return err
				}
				approve.WithDynamic(dyn)(a)
				who, err := a.Record(c.Context, decision)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "%s %s by %s\n", decision.Run, d, who)
				return nil
			}
			r, err := a.Decide(c.Context, decision)
			if err != nil {
				return err
			}
			if r.Resumed {
				fmt.Fprintf(c.App.Writer, "%s %s by %s\n", decision.Run, d, r.By)
			} else {
				fmt.Fprintf(c.App.Writer, "%s: approval by %s recorded (%d of %d); waiting for more approvers\n", decision.Run, r.By, r.Have, r.Need)
			}
			return nil
		}
	}
	decideFlags := func() []cli.Flag {
		return base(nodeFlag(&decision.Node), &cli.StringFlag{Name: "reason", Destination: &decision.Reason, Usage: "why (required to reject)"},
			&cli.BoolFlag{Name: "tekton", Destination: &tekton, Usage: "record the decision for a Tekton PipelineRun (approver wait) instead of resuming an Argo run"})
	}
	return &cli.App{
		Name:  Name,
		Usage: "gantry's manual approval: request, decide, verify",
		Description: "In a pipeline: `request` notifies people, the run suspends on its approval node, `verify` reads the\n" +
			"decision (an expired suspend is a rejection). People: `list`, `approve RUN`, `reject RUN --reason`, or\n" +
			"plain `argo resume RUN`, which approves. Exit codes: 0 ok (a rejection is a result), 2 bad input, 3 transient.",
		Commands: []*cli.Command{
			{
				Name: "request", Usage: "post the candidate's numbers and the commands to decide to --notify-url (and log them); results: message, notified, candidate (JSON, shown by list)",
				Flags: base(append([]cli.Flag{runFlag(&request.Run),
					&cli.StringFlag{Name: "notify-url", Destination: &request.NotifyURL, Usage: "webhook receiving JSON with a Slack-compatible text field (empty: log only); a secret, never logged — pipelines pass it from a Secret in GANTRY_NOTIFY_URL. Delivery is best effort: after the retries the result notified is false and the command still succeeds"},
					&cli.IntFlag{Name: "retries", Value: 5, Destination: &request.Retries, Usage: "webhook retries"},
				}, candidateFlags(&request.Candidate)...)...),
				Action: func(c *cli.Context) error {
					a, ns, err := approver(c)
					if err != nil {
						return err
					}
					request.Namespace = ns
					n, err := a.Request(c.Context, request)
					if err != nil {
						return err
					}
					return common.WriteResults(c.App.Writer, n.Values())
				},
			},
			{
				Name: "verify", Usage: "after the suspend: read the decision, enforce --approvers, write the audit record",
				Description: "Results: decision (approved|rejected), approved-by, reason, waited-seconds. A rejection exits 0\n" +
					"unless --fail-on-reject: then exit 1 with \"not promoted: <reason>\", after the results and the audit record.",
				Flags: base(append(append([]cli.Flag{runFlag(&verify.Run), nodeFlag(&verify.Node), approversFlag(&verify.Approvers),
					&cli.GenericFlag{Name: "timeout", Value: suspendDuration{&verify.Timeout},
						Usage: "the approval suspend's duration, as the suspend has it (seconds or e.g. 24h); a node that ran this long expired: rejected, whatever else it says"},
					&cli.StringFlag{Name: "audit-uri", Destination: &verify.AuditURI, Usage: "prefix for the audit record <run>.json"},
					&cli.StringFlag{Name: "model-digest", Destination: &verify.ModelDigest, Usage: "the candidate's digest (publish's model-digest): decisions made on another candidate do not count"},
					&cli.BoolFlag{Name: "fail-on-reject", Destination: &verifyFailOnReject, Usage: "exit 1 with \"not promoted: <reason>\" (the step's message) when the decision is rejected; never retried"},
				}, candidateFlags(&verify.Candidate)...), store.Flags()...)...),
				Action: func(c *cli.Context) error {
					if verify.Run == "" {
						return exitcode.Invalidf("--run-name is required")
					}
					if verify.Timeout <= 0 {
						return exitcode.Invalidf("--timeout is required: the approval suspend's duration, so that an expired suspend is a rejection")
					}
					a, ns, err := approver(c)
					if err != nil {
						return err
					}
					s, err := store.Open()
					if err != nil {
						return err
					}
					verify.Namespace = ns
					v, err := a.Verify(c.Context, s, verify)
					if err != nil {
						return err
					}
					vals := v.Values()
					if err := common.WriteResults(c.App.Writer, vals); err != nil {
						return err
					}
					if verifyFailOnReject && vals["decision"] != approve.Approved {
						return exitcode.With(exitcode.Failed, errors.New("not promoted: "+vals["reason"]))
					}
					return nil
				},
			},
			{
				Name: "wait", Usage: "Tekton (no suspend): block until `approver approve|reject --tekton` records a decision, or time out (rejected)",
				Description: "Results: decision (approved|rejected), approved-by, reason, waited-seconds. A rejection exits 0\n" +
					"unless --fail-on-reject: then exit 1 with \"not promoted: <reason>\", after the results and the audit record.",
				Flags: base(append(append([]cli.Flag{runFlag(&wait.Run), approversFlag(&wait.Approvers),
					&cli.StringFlag{Name: "run-uid", Destination: &wait.RunUID, Usage: "the PipelineRun's UID ($(context.pipelineRun.uid)): a decision on another run of the same name never counts"},
					&cli.IntFlag{Name: "min-approvals", Value: 1, Destination: &wait.MinApprovals, Usage: "distinct approvers needed (approver approve RUN --tekton by each; a rejection by any one ends the wait)"},
					&cli.BoolFlag{Name: "forbid-self-approval", Destination: &wait.ForbidSelf, Usage: "whoever submitted the PipelineRun (its label gantry.dev/submitted-by) cannot approve it"},
					&cli.GenericFlag{Name: "timeout", Value: suspendDuration{&wait.Timeout}, Usage: "how long to wait (seconds or e.g. 24h); silence rejects"},
					&cli.StringFlag{Name: "audit-uri", Destination: &wait.AuditURI, Usage: "prefix for the audit record <run>.json"},
					&cli.BoolFlag{Name: "fail-on-reject", Destination: &waitFailOnReject, Usage: "exit 1 with \"not promoted: <reason>\" (the step's message) when the decision is rejected"},
				}, candidateFlags(&wait.Candidate)...), store.Flags()...)...),
				Action: func(c *cli.Context) error {
					if wait.Timeout <= 0 {
						return exitcode.Invalidf("--timeout must be positive")
					}
					if wait.MinApprovals < 1 {
						return exitcode.Invalidf("--min-approvals %d: want at least 1", wait.MinApprovals)
					}
					a, ns, err := approver(c)
					if err != nil {
						return err
					}
					if wait.ForbidSelf { // the PipelineRun's submitter
						dyn, err := o.newDynamic(k.Kubeconfig, k.Namespace)
						if err != nil {
							return err
						}
						approve.WithDynamic(dyn)(a)
					}
					var s objstore.Store
					if wait.AuditURI != "" {
						if s, err = store.Open(); err != nil {
							return err
						}
					}
					wait.Namespace = ns
					v, err := a.Wait(c.Context, s, wait)
					if err != nil {
						return err
					}
					vals := v.Values()
					if err := common.WriteResults(c.App.Writer, vals); err != nil {
						return err
					}
					if waitFailOnReject && vals["decision"] != approve.Approved {
						return exitcode.With(exitcode.Failed, errors.New("not promoted: "+vals["reason"]))
					}
					return nil
				},
			},
			{
				Name: "list", Usage: "runs waiting for approval, with their canary numbers",
				Flags: base(nodeFlag(&listNode),
					&cli.BoolFlag{Name: "all-namespaces", Aliases: []string{"A"}, Destination: &listAll, Usage: "list waiting runs in every namespace you may list workflows in"}),
				Action: func(c *cli.Context) error {
					a, ns, err := approver(c)
					if err != nil {
						return err
					}
					if listAll {
						ns = ""
					}
					l, err := a.List(c.Context, ns, listNode)
					if err != nil {
						return err
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					if listAll {
						fmt.Fprint(tw, "NAMESPACE\t")
					}
					fmt.Fprintln(tw, "RUN\tMODEL\tVERSION\tACCURACY\tBASELINE\tP99 MS\tAPPROVALS\tWAITING")
					for _, w := range l {
						if listAll {
							fmt.Fprintf(tw, "%s\t", w.Namespace)
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", w.Run, dash(w.Candidate.ModelName), dash(w.Candidate.ModelVersion), dash(w.Candidate.Accuracy),
							dash(w.Candidate.BaselineAccuracy), dash(w.Candidate.P99Ms), len(w.Have), w.Need, time.Since(w.Since).Round(time.Second))
					}
					return tw.Flush()
				},
			},
			{
				Name: "conclude", Usage: "end the run as Failed with --reason unless --decision is approved or pass (how the pipeline turns a verdict into its outcome)",
				Flags: taskcli.Flags([]cli.Flag{
					&cli.StringFlag{Name: "decision", Destination: &conclude.decision, Usage: "approved|rejected (approval) or pass|fail (canary verdict)"},
					&cli.StringFlag{Name: "reason", Destination: &conclude.reason, Usage: "the message the failed run shows"}}, common.Flags()),
				Action: func(c *cli.Context) error {
					if err := approve.Conclude(conclude.decision, conclude.reason); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "concluded: %s\n", conclude.decision)
					return nil
				},
			},
			{Name: "approve", Usage: "approve a waiting run as yourself (identity from your kube credentials); it resumes once min-approvals approvers agree", ArgsUsage: "RUN", Flags: decideFlags(), Action: decide(approve.Approved)},
			{Name: "reject", Usage: "reject a waiting run as yourself; --reason is required", ArgsUsage: "RUN", Flags: decideFlags(), Action: decide(approve.Rejected)},
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
