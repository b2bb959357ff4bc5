package command

import (
	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/approve"
)

// verify: approver verify (Argo: after the approval node).
func (a *app) verify() *cli.Command {
	var (
		o            approve.VerifyOptions
		store        taskcli.Store
		failOnReject bool
		at           attestation
	)
	return &cli.Command{
		Name: "verify", Usage: "after the suspend: read the decision, enforce --approvers, write the audit record",
		Description: "Results: decision (approved|rejected), approved-by, reason, waited-seconds. A rejection exits 0\n" +
			"unless --fail-on-reject: then exit 1 with \"not promoted: <reason>\", after the results and the audit record.\n" +
			"With --signing-key an approval is signed as the model's approval attestation, kept beside the version.",
		Flags: a.flags(append(append([]cli.Flag{runFlag(&o.Run), nodeFlag(&o.Node), approversFlag(&o.Approvers),
			&cli.GenericFlag{Name: "timeout", Value: suspendDuration{&o.Timeout},
				Usage: "the approval suspend's duration, as the suspend has it (seconds or e.g. 24h); a node that ran this long expired: rejected, whatever else it says"},
			auditFlag(&o.AuditURI),
			&cli.StringFlag{Name: "model-digest", Destination: &o.ModelDigest, Usage: "the candidate's digest (publish's model-digest): decisions made on another candidate do not count"},
			&cli.BoolFlag{Name: "fail-on-reject", Destination: &failOnReject, Usage: "exit 1 with \"not promoted: <reason>\" (the step's message) when the decision is rejected; never retried"},
		}, candidateFlags(&o.Candidate)...), append(at.flags(), store.Flags()...)...)...),
		Action: func(c *cli.Context) error {
			if o.Run == "" {
				return exitcode.Invalidf("--run-name is required")
			}
			if o.Timeout <= 0 {
				return exitcode.Invalidf("--timeout is required: the approval suspend's duration, so that an expired suspend is a rejection")
			}
			if err := at.load(o.Candidate, o.ModelDigest); err != nil {
				return err
			}
			ap, ns, err := a.approver(c)
			if err != nil {
				return err
			}
			s, err := store.Open()
			if err != nil {
				return err
			}
			o.Namespace = ns
			v, err := ap.Verify(c.Context, s, o)
			if err != nil {
				return err
			}
			if err := a.sign(c, &at, s, v, approve.Bound{Namespace: ns, Node: o.Node, ModelDigest: o.ModelDigest}); err != nil {
				return err
			}
			return a.writeDecision(c, v.Values(), failOnReject)
		},
	}
}
