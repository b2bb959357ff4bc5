package command

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/approve"
)

// wait: approver wait (Tekton, which has no suspend).
func (a *app) wait() *cli.Command {
	var (
		o            = approve.WaitOptions{Timeout: 24 * time.Hour}
		store        taskcli.Store
		failOnReject bool
		at           attestation
		digest       string
	)
	return &cli.Command{
		Name: "wait", Usage: "Tekton (no suspend): block until `approver approve|reject --tekton` records a decision, or time out (rejected)",
		Description: "Results: decision (approved|rejected), approved-by, reason, waited-seconds. A rejection exits 0\n" +
			"unless --fail-on-reject: then exit 1 with \"not promoted: <reason>\", after the results and the audit record.\n" +
			"With --signing-key an approval is signed as the model's approval attestation, kept beside the version.",
		Flags: a.flags(append(append([]cli.Flag{runFlag(&o.Run), approversFlag(&o.Approvers),
			&cli.StringFlag{Name: "run-uid", Destination: &o.RunUID, Usage: "the PipelineRun's UID ($(context.pipelineRun.uid)): a decision on another run of the same name never counts"},
			&cli.IntFlag{Name: "min-approvals", Value: 1, Destination: &o.MinApprovals, Usage: "distinct approvers needed (approver approve RUN --tekton by each; a rejection by any one ends the wait)"},
			&cli.BoolFlag{Name: "forbid-self-approval", Destination: &o.ForbidSelf, Usage: "whoever submitted the PipelineRun (its label gantry.dev/submitted-by) cannot approve it"},
			&cli.GenericFlag{Name: "timeout", Value: suspendDuration{&o.Timeout}, Usage: "how long to wait (seconds or e.g. 24h); silence rejects"},
			auditFlag(&o.AuditURI),
			&cli.BoolFlag{Name: "fail-on-reject", Destination: &failOnReject, Usage: "exit 1 with \"not promoted: <reason>\" (the step's message) when the decision is rejected"},
			&cli.StringFlag{Name: "model-digest", Destination: &digest, Usage: "with --signing-key: the candidate's digest (publish's model-digest), the approval attestation's subject"},
		}, candidateFlags(&o.Candidate)...), append(at.flags(), store.Flags()...)...)...),
		Action: func(c *cli.Context) error {
			if o.Timeout <= 0 {
				return exitcode.Invalidf("--timeout must be positive")
			}
			if o.MinApprovals < 1 {
				return exitcode.Invalidf("--min-approvals %d: want at least 1", o.MinApprovals)
			}
			if err := at.load(o.Candidate, digest); err != nil {
				return err
			}
			ap, ns, err := a.approver(c)
			if err != nil {
				return err
			}
			if o.ForbidSelf { // the PipelineRun's submitter
				if err := a.withDynamic(ap); err != nil {
					return err
				}
			}
			var s objstore.Store
			if o.AuditURI != "" || at.signer != nil {
				if s, err = store.Open(); err != nil {
					return err
				}
			}
			o.Namespace = ns
			v, err := ap.Wait(c.Context, s, o)
			if err != nil {
				return err
			}
			if err := a.sign(c, &at, s, v, approve.Bound{Namespace: ns, ModelDigest: digest}); err != nil {
				return err
			}
			return a.writeDecision(c, v.Values(), failOnReject)
		},
	}
}
