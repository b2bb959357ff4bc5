// Package command is the train-launcher CLI: its flags bind straight into
// train.Options, and the generated templates and tasks/train/README.md read
// their descriptions and defaults from here.
package command

import (
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/train"
	triggercmd "github.com/gantry-ml/gantry/tasks/trigger/command"
)

// Name is the binary's name (and image and template name).
const Name = "train-launcher"

// New returns the train-launcher app: clients.Kube for the Job, clients.Dynamic for the Argo run
// behind --delete-on-cancel, clients.Argo for the trigger subcommand (nil: the real clients).
func New(clients kube.Clients) *cli.App {
	clients = clients.OrReal()
	var (
		o      train.Options
		common taskcli.Common
		store  taskcli.Store
		k      taskcli.Kube
		sts    train.STSMinter
	)
	flags := []cli.Flag{
		&cli.StringFlag{Name: "image", Destination: &o.Image, Usage: "training image (pin it by digest)"},
		&cli.GenericFlag{Name: "command", Value: taskcli.Strings(&o.Command), Usage: "container command (repeat for each element)"},
		&cli.GenericFlag{Name: "args", Value: taskcli.Strings(&o.Args), Usage: "container args (repeat for each element)"},
		&cli.GenericFlag{Name: "env", Value: taskcli.KeyValues(&o.Env), Usage: "KEY=VALUE environment variable for the trainer (repeatable)"},
		&cli.GenericFlag{Name: "hyperparameter", Value: taskcli.KeyValues(&o.Hyperparameters),
			Usage: "KEY=VALUE hyperparameter, passed as GANTRY_HP_<KEY> and in GANTRY_HYPERPARAMETERS (repeatable; comma-separated pairs)"},
		&cli.StringFlag{Name: "dataset-uri", Destination: &o.DatasetURI, Usage: "dataset prefix handed to the trainer as GANTRY_DATASET_URI"},
		&cli.StringFlag{Name: "output-uri", Destination: &o.OutputURI, Usage: "where the trainer writes its model and metrics.json (GANTRY_OUTPUT_URI); verified after success"},
		&cli.StringFlag{Name: "job-name", Destination: &o.JobName, Usage: "Job name; the same name re-attaches to the same Job (default: <run-name>-train)"},
		&cli.StringFlag{Name: "run-name", Destination: &o.Run, Usage: "the run this training belongs to (Argo: the workflow name); labels the Job and derives --job-name"},
		&cli.StringFlag{Name: "cpu", Destination: &o.CPU, Usage: "CPU request, e.g. 2"},
		&cli.StringFlag{Name: "memory", Destination: &o.Memory, Usage: "memory request and limit, e.g. 2Gi"},
		&cli.IntFlag{Name: "gpus", Destination: &o.GPUs, Usage: "nvidia.com/gpu limit"},
		&cli.StringFlag{Name: "service-account", Destination: &o.ServiceAccount, Usage: "service account of the training pod"},
		&cli.StringFlag{Name: "env-from-secret", Destination: &o.EnvFromSecret, Usage: "Secret whose keys become the trainer's environment (e.g. S3 credentials; not with --scoped-credentials)"},
		&cli.BoolFlag{Name: "scoped-credentials", Destination: &o.ScopedCredentials,
			Usage: "give the Job temporary S3 credentials that may only read --dataset-uri and write --output-uri (STS AssumeRole with a session policy, " +
				"from the launcher's own AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), in the Secret <job>-s3 that the Job owns"},
		&cli.StringFlag{Name: "sts-endpoint", Destination: &sts.Endpoint, Usage: "STS endpoint for --scoped-credentials (default: --s3-endpoint, as MinIO serves STS; AWS: https://sts.amazonaws.com)"},
		&cli.StringFlag{Name: "sts-role-arn", Destination: &sts.RoleARN, Usage: "role to assume for --scoped-credentials (AWS; MinIO ignores it)"},
		&cli.DurationFlag{Name: "timeout", Value: 2 * time.Hour, Destination: &o.Timeout, Usage: "Job deadline (activeDeadlineSeconds)"},
		&cli.DurationFlag{Name: "unschedulable-timeout", Value: 10 * time.Minute, Destination: &o.UnschedulableTimeout, Usage: "fail when a training pod stays unschedulable this long"},
		&cli.IntFlag{Name: "backoff-limit", Destination: &o.BackoffLimit, Usage: "Job backoffLimit: pod retries inside the Job"},
		&cli.BoolFlag{Name: "delete-on-cancel", Destination: &o.DeleteOnCancel, Usage: "delete the Job when the launcher is cancelled (SIGTERM/SIGINT) — with --run-name, " +
			"only when that Argo run itself is stopping (argo stop/terminate, deleted, finished): a launcher pod killed mid-run keeps the Job and exits 3 for the retry to re-attach"},
	}
	return &cli.App{
		Name:      Name,
		Usage:     "run one training Job to completion, re-attaching after restarts, and verify its model",
		UsageText: "train-launcher --image IMAGE --output-uri s3://bucket/run/ --run-name RUN [flags]",
		Description: "Creates a batch/v1 Job with a deterministic name (or re-attaches to it), watches it and its pods,\n" +
			"streams the training logs, fails fast with the reason (image pull, config error, OOMKilled,\n" +
			"unschedulable, deadline), and after success verifies that the model and metrics.json exist at\n" +
			"--output-uri. Results: job-name, model-uri, metrics, duration-seconds.\n" +
			"Exit codes: 0 ok, 1 training failed, 2 bad input, 3 transient infrastructure error.",
		Flags:    taskcli.Flags(flags, k.Flags(), store.Flags(), common.Flags()),
		Commands: []*cli.Command{triggercmd.New(clients)},
		Action: func(c *cli.Context) error {
			log, err := common.Logger(c.App.ErrWriter)
			if err != nil {
				return err
			}
			o.S3Endpoint = store.Endpoint
			if err := o.Validate(); err != nil { // before any client is built (the namespace comes with it)
				return err
			}
			s, err := store.Open()
			if err != nil {
				return err
			}
			client, ns, err := clients.Kube(k.Kubeconfig, k.Namespace)
			if err != nil {
				return err
			}
			o.Namespace = ns
			opts := []train.Option{train.WithLogger(log), train.WithPodLogs(c.App.ErrWriter)}
			if o.ScopedCredentials {
				if sts.Endpoint == "" {
					sts.Endpoint = store.Endpoint
				}
				if sts.Endpoint == "" {
					return exitcode.Invalidf("--scoped-credentials needs --sts-endpoint (or --s3-endpoint)")
				}
				sts.AccessKey, sts.SecretKey = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
				opts = append(opts, train.WithMinter(sts))
			}
			if o.Run != "" {
				dyn, err := clients.Dynamic(k.Kubeconfig, k.Namespace)
				if err != nil {
					return err
				}
				// The run owns its Job: deleting the run garbage-collects it.
				opts = append(opts, train.WithOwner(train.RunOwner(dyn, ns, o.Run)))
				if o.DeleteOnCancel {
					opts = append(opts, train.WithRunStopping(train.RunStopping(dyn, ns, o.Run)))
				}
			}
			res, err := train.NewLauncher(client, s, opts...).Run(c.Context, o)
			if err != nil {
				return err
			}
			return common.WriteResults(c.App.Writer, res.Values())
		},
	}
}
