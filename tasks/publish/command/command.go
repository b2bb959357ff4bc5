// Package command is the model-publisher CLI: its flags bind straight into
// the publish package's Options structs, and the generated templates and
// tasks/publish/README.md read their descriptions and defaults from here.
package command

import (
	"log/slog"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/client-go/kubernetes"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/approve"
	"github.com/gantry-ml/gantry/tasks/publish"
)

// Name is the binary's name (and image and template name).
const Name = "model-publisher"

// Flags that several subcommands share, each described here once.
func modelNameFlag(p *string) cli.Flag {
	return &cli.StringFlag{Name: "model-name", Value: "fashion-mnist", Destination: p, Usage: "model name (a DNS label)"}
}

func registryFlag(p *string) cli.Flag {
	return &cli.StringFlag{Name: "registry-uri", Destination: p, Usage: "model registry prefix, e.g. s3://models; versions live at <registry>/<model>/<version>/"}
}

func runFlag(p *string) cli.Flag {
	return &cli.StringFlag{Name: "run-name", Destination: p, Usage: "the run doing this (Argo: the workflow name), recorded in manifests, history and run records"}
}

func environmentFlag(p *string) cli.Flag {
	return &cli.StringFlag{Name: "environment", Destination: p, Usage: "staging or production"}
}

func serveFlags(o *publish.DeployOptions) []cli.Flag {
	return []cli.Flag{modelNameFlag(&o.ModelName), registryFlag(&o.RegistryURI), environmentFlag(&o.Environment),
		&cli.StringFlag{Name: "server-image", Destination: &o.ServerImage, Usage: "model server image (pin it by digest)"},
		&cli.IntFlag{Name: "replicas", Value: 1, Destination: &o.Replicas, Usage: "server replicas"},
		&cli.StringFlag{Name: "server-s3-secret", Destination: &o.S3Secret, Usage: "Secret with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY the server reads the model with (referenced, never copied); give it read-only credentials"},
		&cli.StringFlag{Name: "service-account", Destination: &o.ServiceAccount, Usage: "service account of the server pods"},
		runFlag(&o.Run),
		&cli.DurationFlag{Name: "rollout-timeout", Value: 5 * time.Minute, Destination: &o.RolloutTimeout, Usage: "how long the rollout may take"},
	}
}

// approvalGate is the approver's release gate over the clients.
func approvalGate(clients kube.Clients, kubeconfig, namespace string, client kubernetes.Interface, log *slog.Logger) (publish.ReleaseGate, error) {
	wf, _, _, err := clients.Argo(kubeconfig, namespace)
	if err != nil {
		return nil, err
	}
	dyn, err := clients.Dynamic(kubeconfig, namespace)
	if err != nil {
		return nil, err
	}
	return approve.NewApprover(wf, client, approve.WithDynamic(dyn), approve.WithLogger(log)), nil
}

// New returns the model-publisher app: clients.Kube for the environments, clients.Argo and
// clients.Dynamic for promote's release gate (nil: the real clients).
func New(clients kube.Clients) *cli.App {
	clients = clients.OrReal()
	var (
		common taskcli.Common
		store  taskcli.Store
		k      taskcli.Kube
		po     publish.PublishOptions
		do     publish.DeployOptions
		// trustPolicy is deploy --trust-policy: the file a production deploy verifies the chain with.
		trustPolicy string
		ro          publish.RecordOptions
		// signing is publish --signing-key: the training role's key.
		signing taskcli.Signing
	)
	publisher := func(c *cli.Context) (*publish.Publisher, error) {
		log, err := common.Logger(c.App.ErrWriter)
		if err != nil {
			return nil, err
		}
		s, err := store.Open()
		if err != nil {
			return nil, err
		}
		signer, err := signing.Signer()
		if err != nil {
			return nil, err
		}
		opts := []publish.Option{publish.WithLogger(log)}
		if signer != nil {
			opts = append(opts, publish.WithSigner(signer))
		}
		return publish.NewPublisher(s, opts...), nil
	}
	// deployer validates the options before building any client.
	deployer := func(c *cli.Context, validate func() error) (*publish.Deployer, error) {
		log, err := common.Logger(c.App.ErrWriter)
		if err != nil {
			return nil, err
		}
		do.S3Endpoint = store.Endpoint
		if err := validate(); err != nil {
			return nil, err
		}
		s, err := store.Open()
		if err != nil {
			return nil, err
		}
		client, ns, err := clients.Kube(k.Kubeconfig, k.Namespace)
		if err != nil {
			return nil, err
		}
		do.Namespace = ns
		opts := []publish.Option{publish.WithLogger(log)}
		if do.Environment == "production" {
			gate, err := approvalGate(clients, k.Kubeconfig, ns, client, log)
			if err != nil {
				return nil, err
			}
			opts = append(opts, publish.WithReleaseGate(gate))
			if trustPolicy != "" {
				raw, err := readFile("trust-policy", trustPolicy, c.App.Reader)
				if err != nil {
					return nil, err
				}
				p, err := attest.ParsePolicy(raw)
				if err != nil {
					return nil, exitcode.Invalidf("--trust-policy: %v", err)
				}
				opts = append(opts, publish.WithTrustPolicy(p))
			}
		}
		return publish.NewDeployer(client, s, opts...), nil
	}
	roll := func(deploy bool) cli.ActionFunc {
		return func(c *cli.Context) error {
			validate := do.Validate
			if deploy {
				// Production is replaced only by compare-and-swap: a deploy that does not say which
				// model it replaces (the canary's baseline-digest, "none" for a first model) is
				// refused, never taken as "don't check" — an empty value is what a lost result gives.
				validate = func() error {
					if do.Environment == "production" && do.ExpectLive == "" {
						return exitcode.Invalidf("--environment production needs --expect-live-digest: the digest production serves now (the canary's baseline-digest), or \"none\" where nothing is served; production is only replaced by compare-and-swap")
					}
					return do.Validate()
				}
			}
			d, err := deployer(c, validate)
			if err != nil {
				return err
			}
			var res *publish.Deployed
			if deploy {
				res, err = d.Deploy(c.Context, do)
			} else {
				res, err = d.Rollback(c.Context, do)
			}
			if err != nil {
				return err
			}
			return common.WriteResults(c.App.Writer, res.Values())
		}
	}
	storeFlags, kubeFlags := store.Flags(), k.Flags()
	return &cli.App{
		Name:  Name,
		Usage: "make a model an immutable version, push it as an OCI artifact, and serve it in staging or production",
		Description: "Exit codes: 0 ok, 1 failed, 2 bad input (never retried), 3 transient infrastructure error.\n" +
			"Versions live at <registry-uri>/<model-name>/<version>/ with manifest.json written last; a version without\n" +
			"a manifest does not exist. Environment history: <registry-uri>/<model-name>/environments/<namespace>/<env>.json.",
		Commands: append([]*cli.Command{
			{
				Name:  "publish",
				Usage: "copy trainer output into a new immutable version (server-side on S3); same content again is a no-op",
				Description: "Results: model-version, model-uri, model-digest, oci-digest.\n" +
					"With --signing-key, the version's training provenance (SLSA v1) is signed and kept beside it (and pushed as a referrer of the OCI artifact).\n" +
					"Versions are named <UTC yyyymmddThhmmssZ>-<first 12 hex of the model digest> unless --version is given.",
				Flags: taskcli.Flags([]cli.Flag{
					&cli.StringFlag{Name: "source-uri", Destination: &po.SourceURI, Usage: "trainer output prefix (file:// or s3://)"},
					modelNameFlag(&po.ModelName), registryFlag(&po.RegistryURI),
					&cli.StringFlag{Name: "version", Destination: &po.Version, Usage: "explicit version name (default: time + content digest)"},
					&cli.StringFlag{Name: "training-image-digest", Destination: &po.TrainingImageDigest, Usage: "training image reference recorded in the manifest"},
					runFlag(&po.Run),
					&cli.StringFlag{Name: "oci-ref", Destination: &po.OCIRef, Usage: "also push the model to this OCI repository, tagged with the version"},
					&cli.StringFlag{Name: "oci-format", Value: "artifact", Destination: &po.OCIFormat, Usage: "artifact: an OCI v1.1 artifact, one raw layer per file titled with its path (oras pull gives the files back); modelcar: an image KServe runs as a modelcar, files under /models"},
					&cli.StringFlag{Name: "oci-base", Destination: &po.OCIBase, Usage: "base image of a modelcar (it needs a shell, e.g. busybox); default: none"},
				}, signing.Flags(attest.Training), storeFlags, common.Flags()),
				Action: func(c *cli.Context) error {
					if err := po.Validate(); err != nil {
						return err
					}
					p, err := publisher(c)
					if err != nil {
						return err
					}
					res, err := p.Publish(c.Context, po)
					if err != nil {
						return err
					}
					return common.WriteResults(c.App.Writer, res.Values())
				},
			},
			{
				Name:  "deploy",
				Usage: "serve a published version in an environment (server-side apply), wait for the rollout, record history",
				Description: "Production is one server per model (<model>-production); staging one per run (<model>-stg-<8 hex of\n" +
					"sha256(--run-name)>), so overlapping runs never replace or remove each other's candidate.\n" +
					"Results: endpoint, previous-model-uri, model-uri, production-endpoint.",
				Flags: taskcli.Flags(serveFlags(&do), []cli.Flag{
					&cli.StringFlag{Name: "expect-live-digest", Destination: &do.ExpectLive,
						Usage: "deploy only over the model with this digest (\"none\": only where nothing is served): the canary's baseline-digest, so an older approval never replaces a newer production (required for production; empty: not checked, staging only)"},
					&cli.StringFlag{Name: "model-uri", Destination: &do.ModelURI, Usage: "published version prefix (from publish's model-uri)"},
					&cli.StringFlag{Name: "model-digest", Destination: &do.ModelDigest, Usage: "expected model digest (from publish's model-digest)"},
					&cli.StringFlag{Name: "trust-policy", Destination: &trustPolicy,
						Usage: "production: file with the trust policy (model-publisher verify's); the model's attestation chain must verify under it, or nothing is deployed (exit 2). Empty: not required"},
				}, storeFlags, kubeFlags, common.Flags()),
				Action: roll(true),
			},
			{
				Name:  "rollback",
				Usage: "return an environment to the model that was live before the current one (idempotent)",
				Description: "A deploy that failed after changing the Deployment is undone; the first model of an environment\n" +
					"is removed (nothing unverified stays serving); a second rollback applies the first one's outcome again.\n" +
					"Results: endpoint, previous-model-uri (the model rolled back from), model-uri, outcome (what it did).",
				Flags: taskcli.Flags(serveFlags(&do), []cli.Flag{&cli.StringFlag{Name: "undo-run", Destination: &do.UndoRun,
					Usage: "undo only this run's deploy: when the environment serves a model another run deployed, change nothing (the outcome says so)"}},
					storeFlags, kubeFlags, common.Flags()),
				Action: roll(false),
			},
			{
				Name:        "record",
				Usage:       "record how a pipeline run ended at <registry>/<model>/runs/<run>.json (the exit handler)",
				Description: "Results: record-uri. With --oci-digest, the evidence the run's steps signed goes with the OCI artifact too.",
				Flags: taskcli.Flags([]cli.Flag{modelNameFlag(&ro.ModelName), registryFlag(&ro.RegistryURI), runFlag(&ro.Run),
					&cli.StringFlag{Name: "status", Destination: &ro.Status, Usage: "the run's status (Argo: workflow.status)"},
					&cli.StringFlag{Name: "failures", Destination: &ro.Failures, Usage: "JSON list of failed steps (Argo: workflow.failures, in the exit handler)"},
					&cli.StringFlag{Name: "model-version", Destination: &ro.ModelVersion, Usage: "the version the run published, if any"},
					&cli.StringFlag{Name: "oci-digest", Destination: &ro.OCIDigest, Usage: "the version's OCI artifact, REPO@sha256:… (publish's oci-digest; empty: none): the version's attestations are attached to it as referrers (and where cosign verify-attestation looks)"},
				}, storeFlags, common.Flags()),
				Action: func(c *cli.Context) error {
					p, err := publisher(c)
					if err != nil {
						return err
					}
					uri, err := p.Record(c.Context, ro)
					if err != nil {
						return err
					}
					return common.WriteResults(c.App.Writer, map[string]string{"record-uri": uri})
				},
			},
			{
				Name:  "teardown",
				Usage: "delete an environment's Deployment and Service (idempotent); staging: the run's own (--run-name)",
				Flags: taskcli.Flags([]cli.Flag{modelNameFlag(&do.ModelName), environmentFlag(&do.Environment), runFlag(&do.Run)}, kubeFlags, common.Flags()),
				Action: func(c *cli.Context) error {
					d, err := deployer(c, do.ValidateTeardown)
					if err != nil {
						return err
					}
					return d.Teardown(c.Context, do)
				},
			},
		}, attestCommands(&common, &store)...),
	}
}
