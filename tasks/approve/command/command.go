// Package command is the approver CLI, one file per subcommand (as crane's): request, verify,
// wait, list, approve/reject (decide.go), conclude. Its flags bind straight into the approve
// package's Options structs; the generated templates and tasks/approve/README.md read their
// descriptions and defaults from here (docs/architecture.md: why the CLIs are packages of their
// own).
package command

import (
	"errors"
	"fmt"
	"strings"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/approve"
)

// Name is the binary's name (and image and template name).
const Name = "approver"

// New returns the approver app: clients.Argo for the runs, clients.Dynamic for Tekton's
// PipelineRuns (nil: the real clients).
func New(clients kube.Clients) *cli.App {
	a := &app{clients: clients.OrReal()}
	return &cli.App{
		Name:  Name,
		Usage: "gantry's manual approval: request, decide, verify",
		Description: "In a pipeline: `request` notifies people, the run suspends on its approval node, `verify` reads the\n" +
			"decision (an expired suspend is a rejection). People: `list`, `approve RUN`, `reject RUN --reason`, or\n" +
			"plain `argo resume RUN`, which approves. Exit codes: 0 ok (a rejection is a result), 2 bad input, 3 transient.",
		Commands: []*cli.Command{
			a.request(), a.verify(), a.wait(), a.list(), a.conclude(),
			a.decide("approve", approve.Approved, "approve a waiting run as yourself (identity from your kube credentials); it resumes once min-approvals approvers agree"),
			a.decide("reject", approve.Rejected, "reject a waiting run as yourself; --reason is required"),
		},
	}
}

// app is what the subcommands share: the clients and the flags every one of them has.
type app struct {
	clients kube.Clients
	common  taskcli.Common
	k       taskcli.Kube
}

// flags are a subcommand's own flags, then the Kubernetes and the common ones.
func (a *app) flags(own ...cli.Flag) []cli.Flag {
	return taskcli.Flags(own, a.k.Flags(), a.common.Flags())
}

// approver builds the approver over the clients, in the namespace the flags name.
func (a *app) approver(c *cli.Context) (*approve.Approver, string, error) {
	log, err := a.common.Logger(c.App.ErrWriter)
	if err != nil {
		return nil, "", err
	}
	wf, kc, ns, err := a.clients.Argo(a.k.Kubeconfig, a.k.Namespace)
	if err != nil {
		return nil, "", err
	}
	return approve.NewApprover(wf, kc, approve.WithLogger(log)), ns, nil
}

// withDynamic gives the approver a dynamic client (Tekton's PipelineRuns).
func (a *app) withDynamic(ap *approve.Approver) error {
	dyn, err := a.clients.Dynamic(a.k.Kubeconfig, a.k.Namespace)
	if err != nil {
		return err
	}
	approve.WithDynamic(dyn)(ap)
	return nil
}

// attestation binds the approval attestation's flags: the role's key and where the version lives.
type attestation struct {
	signing            taskcli.Signing
	registry, artifact string
	signer             *attest.Signer
}

func (at *attestation) flags() []cli.Flag {
	return append(at.signing.Flags(attest.Approval),
		&cli.StringFlag{Name: "registry-uri", Destination: &at.registry, Usage: "with --signing-key: the model registry prefix the candidate (--model-name, --model-version) lives in"},
		&cli.StringFlag{Name: "oci-digest", Destination: &at.artifact,
			Usage: "with --signing-key: the candidate's OCI artifact, REPO@sha256:… (publish's oci-digest; empty: none) — also a subject of the attestation, the one cosign verify-attestation matches"})
}

// load reads the key before anything waits or is read: a bad key is bad input at once.
func (at *attestation) load(c approve.Candidate, digest string) error {
	var err error
	if at.signer, err = at.signing.Signer(); err != nil || at.signer == nil {
		return err
	}
	if at.registry == "" || c.ModelName == "" || c.ModelVersion == "" || digest == "" {
		return exitcode.Invalidf("--signing-key needs --registry-uri, --model-name, --model-version and --model-digest: the attestation is about that version")
	}
	return nil
}

// sign signs an approval (a rejection is in the audit record and the results, not evidence).
func (a *app) sign(c *cli.Context, at *attestation, s objstore.Store, v *approve.Verdict, b approve.Bound) error {
	if at.signer == nil || v.Decision != approve.Approved {
		return nil
	}
	_, uri, err := at.signer.SignVersion(c.Context, s, attest.Version{Registry: at.registry, Model: v.Candidate.ModelName, Version: v.Candidate.ModelVersion, Artifact: at.artifact},
		attest.Approval, v.Approval(b))
	if err != nil {
		return err
	}
	if log, err := a.common.Logger(c.App.ErrWriter); err == nil {
		log.Info("signed the approval", "attestation", uri, "keyid", at.signer.KeyID())
	}
	return nil
}

// writeDecision writes a decision's results and, with failOnReject, ends the step on a rejection.
func (a *app) writeDecision(c *cli.Context, vals map[string]string, failOnReject bool) error {
	if err := a.common.WriteResults(c.App.Writer, vals); err != nil {
		return err
	}
	if failOnReject && vals["decision"] != approve.Approved {
		return exitcode.With(exitcode.Failed, errors.New("not promoted: "+vals["reason"]))
	}
	return nil
}

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

func auditFlag(p *string) cli.Flag {
	return &cli.StringFlag{Name: "audit-uri", Destination: p, Usage: "prefix for the audit record <run>.json"}
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
