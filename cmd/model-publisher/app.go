package main

import (
	"context"
	"encoding/json"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/client-go/kubernetes"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/publish"
)

type clientFunc func(kubeconfig, namespace string) (kubernetes.Interface, string, error)

func flags(extra ...[]cli.Flag) []cli.Flag {
	var out []cli.Flag
	for _, e := range extra {
		out = append(out, e...)
	}
	return append(out, taskcli.CommonFlags()...)
}

var (
	e              = taskcli.Env
	modelNameFlag  = &cli.StringFlag{Name: "model-name", Value: "fashion-mnist", EnvVars: e("model-name"), Usage: "model name (a DNS label)"}
	registryFlag   = &cli.StringFlag{Name: "registry-uri", EnvVars: e("registry-uri"), Usage: "model registry prefix, e.g. s3://models; versions live at <registry>/<model>/<version>/"}
	envFlag        = &cli.StringFlag{Name: "environment", EnvVars: e("environment"), Usage: "staging or production"}
	serverImage    = &cli.StringFlag{Name: "server-image", EnvVars: e("server-image"), Usage: "model server image (pin it by digest)"}
	replicasFlag   = &cli.IntFlag{Name: "replicas", Value: 1, EnvVars: e("replicas"), Usage: "server replicas"}
	s3SecretFlag   = &cli.StringFlag{Name: "s3-secret", EnvVars: e("s3-secret"), Usage: "Secret with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY the server reads the model with (referenced, never copied)"}
	saFlag         = &cli.StringFlag{Name: "service-account", EnvVars: e("service-account"), Usage: "service account of the server pods"}
	runFlag        = &cli.StringFlag{Name: "run-name", EnvVars: e("run-name"), Usage: "the run doing this (Argo: {{workflow.name}}), recorded in manifests and history"}
	rolloutTimeout = &cli.DurationFlag{Name: "rollout-timeout", Value: 5 * time.Minute, EnvVars: e("rollout-timeout"), Usage: "how long the rollout may take"}
)

func newApp(newClient clientFunc) *cli.App {
	if newClient == nil {
		newClient = kube.Clientset
	}
	deployFlags := []cli.Flag{modelNameFlag, registryFlag, envFlag, serverImage, replicasFlag, s3SecretFlag, saFlag, runFlag, rolloutTimeout}
	deployOpts := func(c *cli.Context) publish.DeployOptions {
		return publish.DeployOptions{Environment: c.String("environment"), ModelName: c.String("model-name"), RegistryURI: c.String("registry-uri"),
			ServerImage: c.String("server-image"), Replicas: int32(c.Int("replicas")), S3Endpoint: c.String("s3-endpoint"), S3Secret: c.String("s3-secret"),
			ServiceAccount: c.String("service-account"), Run: c.String("run-name"), RolloutTimeout: c.Duration("rollout-timeout"),
			ModelURI: c.String("model-uri"), ModelDigest: c.String("model-digest")}
	}
	deployer := func(c *cli.Context, o *publish.DeployOptions) (*publish.Deployer, error) {
		log, err := taskcli.Logger(c)
		if err != nil {
			return nil, err
		}
		store, err := taskcli.Store(c)
		if err != nil {
			return nil, err
		}
		client, ns, err := newClient(c.String("kubeconfig"), c.String("namespace"))
		if err != nil {
			return nil, err
		}
		o.Namespace = ns
		return publish.NewDeployer(client, store, log), nil
	}
	// serve validates the deploy flags (before any client is built), runs op and writes its results.
	serve := func(op func(*publish.Deployer, context.Context, publish.DeployOptions) (*publish.Deployed, error), needModel bool) cli.ActionFunc {
		return func(c *cli.Context) error {
			o := deployOpts(c)
			if needModel && o.ModelURI == "" {
				return exitcode.Invalidf("--model-uri is required")
			}
			if err := o.Validate(); err != nil {
				return err
			}
			d, err := deployer(c, &o)
			if err != nil {
				return err
			}
			res, err := op(d, c.Context, o)
			if err != nil {
				return err
			}
			return taskcli.WriteResults(c, res.Values())
		}
	}
	return &cli.App{
		Name:  "model-publisher",
		Usage: "make a model an immutable version, push it as an OCI artifact, and serve it in staging or production",
		Description: "Exit codes: 0 ok, 1 failed, 2 bad input (never retried), 3 transient infrastructure error.\n" +
			"Versions live at <registry-uri>/<model-name>/<version>/ with manifest.json written last; a version without\n" +
			"a manifest does not exist. Environment history: <registry-uri>/<model-name>/environments/<env>.json.",
		Commands: []*cli.Command{
			{
				Name:  "publish",
				Usage: "copy trainer output into a new immutable version (server-side on S3); same content again is a no-op",
				Description: "Results: model-version, model-uri, model-digest, oci-digest.\n" +
					"Versions are named <UTC yyyymmddThhmmssZ>-<first 12 hex of the model digest> unless --version is given.",
				Flags: flags([]cli.Flag{
					&cli.StringFlag{Name: "source-uri", EnvVars: e("source-uri"), Usage: "trainer output prefix (file:// or s3://)"},
					modelNameFlag, registryFlag,
					&cli.StringFlag{Name: "version", EnvVars: e("version"), Usage: "explicit version name (default: time + content digest)"},
					&cli.StringFlag{Name: "training-image-digest", EnvVars: e("training-image-digest"), Usage: "training image reference recorded in the manifest"},
					runFlag,
					&cli.StringFlag{Name: "oci-ref", EnvVars: e("oci-ref"), Usage: "also push the model as an OCI artifact to this repository (KServe modelcar layout: /models)"},
					&cli.StringFlag{Name: "oci-base", EnvVars: e("oci-base"), Usage: "base image of the OCI artifact (a modelcar needs a shell, e.g. busybox); default: none"},
				}, taskcli.StoreFlags()),
				Action: func(c *cli.Context) error {
					log, err := taskcli.Logger(c)
					if err != nil {
						return err
					}
					o := publish.PublishOptions{SourceURI: c.String("source-uri"), RegistryURI: c.String("registry-uri"), ModelName: c.String("model-name"),
						Version: c.String("version"), TrainingImageDigest: c.String("training-image-digest"), Workflow: c.String("run-name"),
						OCIRef: c.String("oci-ref"), OCIBase: c.String("oci-base")}
					if err := o.Validate(); err != nil {
						return err
					}
					store, err := taskcli.Store(c)
					if err != nil {
						return err
					}
					p, err := publish.NewPublisher(store, publish.WithLogger(log)).Publish(c.Context, o)
					if err != nil {
						return err
					}
					return taskcli.WriteResults(c, p.Values())
				},
			},
			{
				Name:        "deploy",
				Usage:       "serve a published version in an environment (server-side apply), wait for the rollout, record history",
				Description: "Results: endpoint, previous-model-uri, model-uri.",
				Flags: flags(deployFlags, []cli.Flag{
					&cli.StringFlag{Name: "model-uri", EnvVars: e("model-uri"), Usage: "published version prefix (from publish's model-uri)"},
					&cli.StringFlag{Name: "model-digest", EnvVars: e("model-digest"), Usage: "expected model digest (from publish's model-digest)"},
				}, taskcli.StoreFlags(), taskcli.KubeFlags()),
				Action: serve((*publish.Deployer).Deploy, true),
			},
			{
				Name:        "rollback",
				Usage:       "return an environment to the model that was live before the current one",
				Description: "Results: endpoint, previous-model-uri (the model rolled back from), model-uri.",
				Flags:       flags(deployFlags, taskcli.StoreFlags(), taskcli.KubeFlags()),
				Action:      serve((*publish.Deployer).Rollback, false),
			},
			{
				Name:        "record",
				Usage:       "record how a pipeline run ended at <registry>/<model>/runs/<run>.json (the exit handler)",
				Description: "Results: record-uri.",
				Flags: flags([]cli.Flag{modelNameFlag, registryFlag, runFlag,
					&cli.StringFlag{Name: "status", EnvVars: e("status"), Usage: "the run's status (Argo: {{workflow.status}})"},
					&cli.StringFlag{Name: "failures", EnvVars: e("failures"), Usage: "JSON list of failed steps (Argo: {{workflow.failures}})"},
					&cli.StringFlag{Name: "model-version", EnvVars: e("model-version"), Usage: "the version the run published, if any"},
				}, taskcli.StoreFlags()),
				Action: func(c *cli.Context) error {
					store, err := taskcli.Store(c)
					if err != nil {
						return err
					}
					uri, err := publish.RecordRun(c.Context, store, c.String("registry-uri"), c.String("model-name"), publish.RunRecord{
						Run: c.String("run-name"), Status: c.String("status"), Failures: json.RawMessage(c.String("failures")),
						ModelVersion: c.String("model-version"), Finished: time.Now().UTC()})
					if err != nil {
						return err
					}
					return taskcli.WriteResults(c, map[string]string{"record-uri": uri})
				},
			},
			{
				Name:  "teardown",
				Usage: "delete an environment's Deployment and Service (idempotent)",
				Flags: flags([]cli.Flag{modelNameFlag, envFlag}, taskcli.KubeFlags()),
				Action: func(c *cli.Context) error {
					env := c.String("environment")
					if env != "staging" && env != "production" {
						return exitcode.Invalidf("--environment %q: want staging or production", env)
					}
					o := publish.DeployOptions{}
					d, err := deployer(c, &o)
					if err != nil {
						return err
					}
					return d.Teardown(c.Context, o.Namespace, c.String("model-name"), env)
				},
			},
		},
	}
}
