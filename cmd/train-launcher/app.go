package main

import (
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/train"
)

func dynamicClient(kubeconfig, namespace string) (dynamic.Interface, error) {
	cfg, _, err := kube.Config(kubeconfig, namespace)
	if err != nil {
		return nil, err
	}
	return dynamic.NewForConfig(cfg)
}

// clientFunc builds the Kubernetes client; tests replace it.
type clientFunc func(kubeconfig, namespace string) (kubernetes.Interface, string, error)

func newApp(newClient clientFunc) *cli.App {
	// The Workflow lookup behind --delete-on-cancel uses the dynamic client; tests with a fake
	// clientset leave it out (tasks/train tests cover it with a fake dynamic client).
	var newDynamic func(kubeconfig, namespace string) (dynamic.Interface, error)
	if newClient == nil {
		newClient, newDynamic = kube.Clientset, dynamicClient
	}
	flags := []cli.Flag{
		&cli.StringFlag{Name: "image", EnvVars: taskcli.Env("image"), Usage: "training image (pin it by digest)"},
		&cli.StringSliceFlag{Name: "command", EnvVars: taskcli.Env("command"), Usage: "container command (repeat for each element)"},
		&cli.StringSliceFlag{Name: "args", EnvVars: taskcli.Env("args"), Usage: "container args (repeat for each element)"},
		&cli.StringSliceFlag{Name: "env", EnvVars: taskcli.Env("env"), Usage: "KEY=VALUE environment variable for the trainer (repeatable)"},
		&cli.StringSliceFlag{Name: "hyperparameter", EnvVars: taskcli.Env("hyperparameter"), Usage: "KEY=VALUE hyperparameter, passed as GANTRY_HP_<KEY> and in GANTRY_HYPERPARAMETERS (repeatable)"},
		&cli.StringFlag{Name: "dataset-uri", EnvVars: taskcli.Env("dataset-uri"), Usage: "dataset prefix handed to the trainer as GANTRY_DATASET_URI"},
		&cli.StringFlag{Name: "output-uri", EnvVars: taskcli.Env("output-uri"), Usage: "where the trainer writes its model and metrics.json (GANTRY_OUTPUT_URI); verified after success"},
		&cli.StringFlag{Name: "job-name", EnvVars: taskcli.Env("job-name"), Usage: "Job name; the same name re-attaches to the same Job (default: <run-name>-train)"},
		&cli.StringFlag{Name: "run-name", EnvVars: taskcli.Env("run-name"), Usage: "the run this training belongs to (Argo: {{workflow.name}}); labels the Job and derives --job-name"},
		&cli.StringFlag{Name: "cpu", EnvVars: taskcli.Env("cpu"), Usage: "CPU request, e.g. 2"},
		&cli.StringFlag{Name: "memory", EnvVars: taskcli.Env("memory"), Usage: "memory request and limit, e.g. 2Gi"},
		&cli.IntFlag{Name: "gpus", EnvVars: taskcli.Env("gpus"), Usage: "nvidia.com/gpu limit"},
		&cli.StringFlag{Name: "service-account", EnvVars: taskcli.Env("service-account"), Usage: "service account of the training pod"},
		&cli.StringFlag{Name: "env-from-secret", EnvVars: taskcli.Env("env-from-secret"), Usage: "Secret whose keys become the trainer's environment (e.g. S3 credentials)"},
		&cli.DurationFlag{Name: "timeout", Value: 2 * time.Hour, EnvVars: taskcli.Env("timeout"), Usage: "Job deadline (activeDeadlineSeconds)"},
		&cli.DurationFlag{Name: "unschedulable-timeout", Value: 10 * time.Minute, EnvVars: taskcli.Env("unschedulable-timeout"), Usage: "fail when a training pod stays unschedulable this long"},
		&cli.IntFlag{Name: "backoff-limit", EnvVars: taskcli.Env("backoff-limit"), Usage: "Job backoffLimit: pod retries inside the Job"},
		&cli.BoolFlag{Name: "delete-on-cancel", EnvVars: taskcli.Env("delete-on-cancel"), Usage: "delete the Job when the launcher is cancelled (SIGTERM/SIGINT) — with --run-name, only when that Argo run itself is stopping (argo stop/terminate, deleted, finished): a launcher pod killed mid-run keeps the Job and exits 3 for the retry to re-attach"},
	}
	flags = append(flags, taskcli.KubeFlags()...)
	flags = append(flags, taskcli.StoreFlags()...)
	flags = append(flags, taskcli.CommonFlags()...)
	return &cli.App{
		Name:      "train-launcher",
		Usage:     "run one training Job to completion, re-attaching after restarts, and verify its model",
		UsageText: "train-launcher --image IMAGE --output-uri s3://bucket/run/ --run-name RUN [flags]",
		Description: "Creates a batch/v1 Job with a deterministic name (or re-attaches to it), watches it and its pods,\n" +
			"streams the training logs, fails fast with the reason (image pull, config error, OOMKilled,\n" +
			"unschedulable, deadline), and after success verifies that the model and metrics.json exist at\n" +
			"--output-uri. Results: job-name, model-uri, metrics, duration-seconds.\n" +
			"Exit codes: 0 ok, 1 training failed, 2 bad input, 3 transient infrastructure error.",
		Flags: flags,
		Action: func(c *cli.Context) error {
			log, err := taskcli.Logger(c)
			if err != nil {
				return err
			}
			env, err := taskcli.KeyValues("env", c.StringSlice("env"))
			if err != nil {
				return err
			}
			hp, err := taskcli.KeyValues("hyperparameter", c.StringSlice("hyperparameter"))
			if err != nil {
				return err
			}
			o := train.Options{
				JobName: c.String("job-name"), Image: c.String("image"),
				Command: c.StringSlice("command"), Args: c.StringSlice("args"), Env: env, Hyperparameters: hp,
				EnvFromSecret: c.String("env-from-secret"), CPU: c.String("cpu"), Memory: c.String("memory"), GPUs: c.Int("gpus"),
				ServiceAccount: c.String("service-account"), Timeout: c.Duration("timeout"),
				UnschedulableTimeout: c.Duration("unschedulable-timeout"), BackoffLimit: int32(c.Int("backoff-limit")),
				DatasetURI: c.String("dataset-uri"), OutputURI: c.String("output-uri"), S3Endpoint: c.String("s3-endpoint"),
				DeleteOnCancel: c.Bool("delete-on-cancel"),
			}
			if run := c.String("run-name"); run != "" {
				if o.JobName == "" {
					o.JobName = train.JobNameFor(run)
				}
				o.Labels = map[string]string{"gantry.dev/run": train.RunLabel(run)}
			}
			if err := o.Validate(); err != nil { // before any client is built (the namespace comes with it)
				return err
			}
			store, err := taskcli.Store(c)
			if err != nil {
				return err
			}
			client, ns, err := newClient(c.String("kubeconfig"), c.String("namespace"))
			if err != nil {
				return err
			}
			o.Namespace = ns
			opts := []train.Option{train.WithLogger(log), train.WithPodLogs(c.App.ErrWriter)}
			if run := c.String("run-name"); run != "" && o.DeleteOnCancel && newDynamic != nil {
				dyn, err := newDynamic(c.String("kubeconfig"), c.String("namespace"))
				if err != nil {
					return err
				}
				opts = append(opts, train.WithRunStopping(train.ArgoRunStopping(dyn, ns, run)))
			}
			res, err := train.NewLauncher(client, store, opts...).Run(c.Context, o)
			if err != nil {
				return err
			}
			return taskcli.WriteResults(c, res.Values())
		},
	}
}
