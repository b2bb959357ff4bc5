package command

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/publish"
)

// readFile reads a flag's file ("-": stdin); a missing or unreadable file is bad input.
func readFile(flag, p string, stdin io.Reader) ([]byte, error) {
	if p == "" {
		return nil, exitcode.Invalidf("--%s is required", flag)
	}
	var b []byte
	var err error
	if p == "-" {
		b, err = io.ReadAll(io.LimitReader(stdin, 1<<20))
	} else {
		b, err = os.ReadFile(p)
	}
	if err != nil {
		return nil, exitcode.Invalidf("--%s: %v", flag, err)
	}
	return b, nil
}

func roleOf(s string) (attest.Role, error) {
	for _, r := range attest.Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", exitcode.Invalidf("--role %q: want one of %v", s, attest.Roles)
}

// attestCommands are `attest` (sign a statement about a version, keep it beside the version) and
// `verify` (print and check a version's chain against a trust policy).
func attestCommands(common *taskcli.Common, store *taskcli.Store) []*cli.Command {
	var (
		model, registry, version, digest string
		role, keyFile, predicateFile     string
		policyFile, output, ociRef       string
	)
	var oci publish.RemotePusher
	where := func() []cli.Flag {
		return []cli.Flag{modelNameFlag(&model), registryFlag(&registry),
			&cli.StringFlag{Name: "version", Destination: &version, Usage: "the published version"}}
	}
	return []*cli.Command{
		{
			Name:  "attest",
			Usage: "sign an in-toto statement about a published version as one role and keep it beside the version (<registry>/<model>/attestations/<version>/<role>/)",
			Description: "The subject is the version's model digest and its manifest.json's digest; the predicate (JSON) is\n" +
				"the role's: SLSA v1 provenance (training), gantry's evaluation or approval predicate. The envelope is\n" +
				"DSSE, signed with an Ed25519 key (PKCS #8 PEM); with --oci-ref also an OCI 1.1 referrer of the model's artifact.\n" +
				"Results: attestation-uri, keyid, oci-attestation.",
			Flags: taskcli.Flags(append(where(),
				&cli.StringFlag{Name: "role", Destination: &role, Usage: "training, evaluation or approval"},
				&cli.StringFlag{Name: "signing-key", EnvVars: []string{"GANTRY_SIGNING_KEY"}, Destination: &keyFile, Usage: "file with the role's Ed25519 private key (PKCS #8 PEM; a Secret mounted into the step)"},
				&cli.StringFlag{Name: "predicate", Destination: &predicateFile, Usage: "file with the predicate, a JSON object (-: stdin)"},
				&cli.StringFlag{Name: "oci-ref", Destination: &ociRef, Usage: "the model's OCI artifact, REPO@sha256:… (publish's oci-digest): also push the attestation as an OCI 1.1 referrer of it"},
			), store.Flags(), common.Flags()),
			Action: func(c *cli.Context) error {
				r, err := roleOf(role)
				if err != nil {
					return err
				}
				if version == "" {
					return exitcode.Invalidf("--version is required")
				}
				keyPEM, err := readFile("signing-key", keyFile, c.App.Reader)
				if err != nil {
					return err
				}
				signer, err := attest.ParseSigner(keyPEM)
				if err != nil {
					return exitcode.Invalidf("--signing-key: %v", err)
				}
				raw, err := readFile("predicate", predicateFile, c.App.Reader)
				if err != nil {
					return err
				}
				var predicate map[string]any
				if err := json.Unmarshal(raw, &predicate); err != nil {
					return exitcode.Invalidf("--predicate: not a JSON object: %v", err)
				}
				s, err := store.Open()
				if err != nil {
					return err
				}
				env, uri, err := signer.SignVersion(c.Context, s, attest.Version{Registry: registry, Model: model, Version: version, Artifact: ociRef}, r, predicate)
				if err != nil {
					return err
				}
				res := map[string]string{"attestation-uri": uri, "keyid": signer.KeyID(), "oci-attestation": ""}
				if ociRef != "" {
					if res["oci-attestation"], err = oci.PushAttestation(c.Context, ociRef, r, env); err != nil {
						return err
					}
				}
				return common.WriteResults(c.App.Writer, res)
			},
		},
		{
			Name:  "trust-policy",
			Usage: "write the trust policy (JSON) naming each role's public keys, for the ConfigMap gantry-trust-policy or --trust-policy",
			Description: "Each flag takes PEM files, public (openssl pkey -pubout) or private (only the public half is used),\n" +
				"and may repeat: to rotate a role's key, list the old and the new key, then the new one alone.",
			Flags: taskcli.Flags([]cli.Flag{
				&cli.StringSliceFlag{Name: string(attest.Training), Usage: "training role's key files (signed by publish)"},
				&cli.StringSliceFlag{Name: string(attest.Evaluation), Usage: "evaluation role's key files (signed by the canary)"},
				&cli.StringSliceFlag{Name: string(attest.Approval), Usage: "approval role's key files (signed by approver verify/wait)"},
			}),
			Action: func(c *cli.Context) error {
				keys := map[attest.Role][][]byte{}
				for _, r := range attest.Roles {
					for _, f := range c.StringSlice(string(r)) {
						b, err := readFile(string(r), f, c.App.Reader)
						if err != nil {
							return err
						}
						keys[r] = append(keys[r], b)
					}
				}
				if len(keys) == 0 {
					return exitcode.Invalidf("name at least one key: --training, --evaluation, --approval")
				}
				b, err := attest.PolicyFromPEM(keys)
				if err != nil {
					return exitcode.Invalidf("%v", err)
				}
				fmt.Fprintln(c.App.Writer, string(b))
				return nil
			},
		},
		{
			Name:  "verify",
			Usage: "print a version's attestation chain (training → evaluation → approval) and check it against a trust policy",
			Description: "--version or --digest names the model. Exit 0: every role has an attestation about this model signed\n" +
				"by one of the role's keys; 1: a link is missing or fails (each reason is printed); 2: bad input.",
			Flags: taskcli.Flags(append(where(),
				&cli.StringFlag{Name: "digest", Destination: &digest, Usage: "the model digest (sha256:…), instead of --version: which version is it, and why may it serve"},
				&cli.StringFlag{Name: "trust-policy", Destination: &policyFile, Usage: "file with the trust policy: {\"roles\": {\"training\": [{\"keyid\", \"publicKey\"}], …}}"},
				&cli.StringFlag{Name: "output", Value: "text", Destination: &output, Usage: "text or json"},
				&cli.StringFlag{Name: "oci-ref", Destination: &ociRef, Usage: "verify a model in an OCI registry instead, REPO@sha256:… of its artifact: the chain from its referrers (the model digest from the artifact's annotations)"},
			), store.Flags(), common.Flags()),
			Action: func(c *cli.Context) error {
				if n := btoi(version != "") + btoi(digest != "") + btoi(ociRef != ""); n != 1 {
					return exitcode.Invalidf("give one of --version, --digest, --oci-ref")
				}
				if output != "text" && output != "json" {
					return exitcode.Invalidf("--output %q: want text or json", output)
				}
				raw, err := readFile("trust-policy", policyFile, c.App.Reader)
				if err != nil {
					return err
				}
				policy, err := attest.ParsePolicy(raw)
				if err != nil {
					return exitcode.Invalidf("--trust-policy: %v", err)
				}
				var subject attest.Subject
				var envs map[attest.Role][]*dsse.Envelope
				if ociRef != "" {
					if subject, err = oci.ModelOf(c.Context, ociRef); err != nil {
						return err
					}
					if envs, err = oci.PullAttestations(c.Context, ociRef); err != nil {
						return err
					}
				} else {
					s, err := store.Open()
					if err != nil {
						return err
					}
					if version == "" {
						if version, err = attest.FindVersion(c.Context, s, registry, model, digest); err != nil {
							return err
						}
					}
					if subject, err = attest.AttestationSubject(c.Context, s, registry, model, version); err != nil {
						return err
					}
					if envs, err = attest.ReadAttestations(c.Context, s, registry, model, version); err != nil {
						return err
					}
				}
				chain, verr := policy.VerifyChain(c.Context, envs, subject)
				if output == "json" {
					out := map[string]any{"model": subject.Name, "version": subject.Version, "modelDigest": subject.ModelDigest,
						"manifestDigest": subject.ManifestDigest, "chain": chain, "complete": verr == nil}
					if verr != nil {
						out["reason"] = verr.Error()
					}
					b, _ := json.MarshalIndent(out, "", "  ")
					fmt.Fprintln(c.App.Writer, string(b))
				} else {
					fmt.Fprintf(c.App.Writer, "%s %s (%s; manifest %s)\n", subject.Name, subject.Version, subject.ModelDigest, subject.ManifestDigest)
					verified := map[attest.Role]*attest.Verified{}
					for _, v := range chain {
						verified[v.Role] = v
					}
					for _, r := range attest.Roles {
						if v, ok := verified[r]; ok {
							fmt.Fprintf(c.App.Writer, "  %-10s verified  key %s  %s\n", r, v.KeyID[:min(16, len(v.KeyID))], summary(v.Predicate))
						} else {
							fmt.Fprintf(c.App.Writer, "  %-10s MISSING OR INVALID\n", r)
						}
					}
				}
				if verr != nil {
					return exitcode.With(exitcode.Failed, errors.New(verr.Error()))
				}
				return nil
			},
		},
	}
}

// summary is a predicate's first-level scalars, sorted, for one line of text.
func summary(p map[string]any) string {
	var parts []string
	for k, v := range p {
		switch v.(type) {
		case string, float64, bool:
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
