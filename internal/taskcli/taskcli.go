// Package taskcli is the CLI glue every gantry binary shares: common flags
// with their GANTRY_* environment variables, the logger, object-store and
// Kubernetes flags, and running an app into an exit code.
package taskcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/results"
)

// Version is set at link time (-X) by .ko.yaml.
var Version = "dev"

// Env is the environment variable for a flag: results-dir → GANTRY_RESULTS_DIR.
func Env(flag string) []string {
	return []string{"GANTRY_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))}
}

// Common are the flags of every binary, bound to their values: each app owns its own.
type Common struct {
	LogFormat  string
	LogLevel   string
	ResultsDir string
}

// Flags of every task binary: the log flags and --results-dir.
func (o *Common) Flags() []cli.Flag {
	return append(o.LogFlags(), &cli.StringFlag{Name: "results-dir", Destination: &o.ResultsDir,
		Usage: "write one file per result here (Argo: /tmp/results, Tekton: /tekton/results); empty: stdout only"})
}

// LogFlags are the log flags alone, for binaries without results (the example images).
func (o *Common) LogFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-format", Value: "text", Destination: &o.LogFormat, Usage: "log format on stderr: text or json"},
		&cli.StringFlag{Name: "log-level", Value: "info", Destination: &o.LogLevel, Usage: "log level: debug, info, warn or error"},
	}
}

// Logger builds the slog logger the flags ask for, writing to w.
func (o *Common) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return nil, exitcode.Invalidf("--log-level %q: want debug, info, warn or error", o.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch o.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, exitcode.Invalidf("--log-format %q: want text or json", o.LogFormat)
	}
}

// WriteResults writes values to --results-dir and as one JSON line to stdout.
func (o *Common) WriteResults(stdout io.Writer, values map[string]string) error {
	return results.Write(o.ResultsDir, stdout, values)
}

// Store are the object-store flags of every binary that touches S3.
type Store struct {
	Endpoint string
	Region   string
}

// Flags of the object store.
func (o *Store) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "s3-endpoint", Destination: &o.Endpoint,
			Usage: "S3 API endpoint, e.g. http://minio.gantry:9000 (empty: AWS S3). Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"},
		&cli.StringFlag{Name: "s3-region", Destination: &o.Region, Usage: "S3 region"},
	}
}

// Open builds the object store from the flags and the standard credential variables.
func (o *Store) Open() (*objstore.Router, error) {
	return objstore.New(&objstore.S3Config{Endpoint: o.Endpoint, Region: o.Region})
}

// Signing is the flag of a step that signs the link of a model's evidence it establishes.
type Signing struct{ KeyFile string }

// Flags of the signing key, for role's step.
func (o *Signing) Flags(role attest.Role) []cli.Flag {
	return []cli.Flag{&cli.StringFlag{Name: "signing-key", Destination: &o.KeyFile,
		Usage: "file with the " + string(role) + " role's Ed25519 key (PKCS #8 PEM; in the pipeline the Secret " + attest.SigningSecret(role) +
			", mounted into this step only): sign the model's " + string(role) + " attestation and keep it beside the version. Empty or no such file: sign nothing"}}
}

// Signer is the key's signer; nil when there is no key (the step signs nothing).
func (o *Signing) Signer() (*attest.Signer, error) { return attest.LoadSigner(o.KeyFile) }

// Kube are the flags of every binary that talks to Kubernetes.
type Kube struct {
	Kubeconfig string
	Namespace  string
}

// Flags of the Kubernetes client.
func (o *Kube) Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "kubeconfig", EnvVars: []string{"GANTRY_KUBECONFIG", "KUBECONFIG"}, Destination: &o.Kubeconfig,
			Usage: "kubeconfig file (default: in-cluster config)"},
		&cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, Destination: &o.Namespace,
			Usage: "namespace (default: the pod's namespace, or the kubeconfig context's)"},
	}
}

// Flags joins flag lists and gives every flag without one its GANTRY_<FLAG> environment variable.
func Flags(lists ...[]cli.Flag) []cli.Flag {
	var out []cli.Flag
	for _, l := range lists {
		for _, f := range l {
			setEnv(f)
			out = append(out, f)
		}
	}
	return out
}

// setEnv fills the EnvVars field every urfave/cli flag type has.
func setEnv(f cli.Flag) {
	v := reflect.ValueOf(f)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return
	}
	ev := v.Elem().FieldByName("EnvVars")
	if !ev.IsValid() || ev.Len() > 0 {
		return
	}
	ev.Set(reflect.ValueOf(Env(f.Names()[0])))
}

// Run runs app with args (args[0] is the program name) and returns the exit
// code. Usage errors are bad input (2). The error is printed as one line on stderr.
func Run(ctx context.Context, app *cli.App, args []string, stdout, stderr io.Writer) int {
	app.Writer, app.ErrWriter = stdout, stderr
	app.Version = Version
	app.ExitErrHandler = func(*cli.Context, error) {}
	usage := func(_ *cli.Context, err error, _ bool) error { return exitcode.Invalid(err) }
	app.OnUsageError = usage
	for _, cmd := range app.Commands {
		setUsage(cmd, usage)
	}
	if app.Action != nil && app.ArgsUsage == "" {
		app.Action = noArgs(app.Action)
	}
	app.Suggest = true
	err := app.RunContext(ctx, Interspersed(app, args))
	if err == nil {
		return exitcode.OK
	}
	code := exitcode.Of(err)
	var ec cli.ExitCoder
	if errors.As(err, &ec) && code == exitcode.Failed {
		code = ec.ExitCode()
	}
	if code == exitcode.Failed && strings.Contains(err.Error(), "flag provided but not defined") {
		code = exitcode.BadInput
	}
	fmt.Fprintf(stderr, "%s: error: %v\n", app.Name, err)
	writeTerminationMessage(TerminationMessagePath, err.Error())
	return code
}

// TerminationMessagePath is where Kubernetes reads a container's termination message.
var TerminationMessagePath = "/dev/termination-log"

// writeTerminationMessage puts msg (at most 4 KiB, Kubernetes' limit) where Kubernetes reads
// the container's termination message, so that the step's message — what `argo get` shows for a
// failed node — is the one-line reason, not the tail of the log. Only into a file that exists
// (Kubernetes creates it): outside a pod nothing is written.
func writeTerminationMessage(path, msg string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return
	}
	defer f.Close()
	if len(msg) > 4096 {
		msg = msg[:4096]
	}
	f.WriteString(msg)
}

// noArgs refuses positional arguments where a command takes none: `train-launcher my-image`
// is a mistake to report (exit 2), not something to ignore.
func noArgs(action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() > 0 {
			return exitcode.Invalidf("unexpected argument %q (this command takes only flags; see --help)", c.Args().First())
		}
		return action(c)
	}
}

func setUsage(cmd *cli.Command, f cli.OnUsageErrorFunc) {
	cmd.OnUsageError = f
	if cmd.Action != nil && cmd.ArgsUsage == "" && len(cmd.Subcommands) == 0 {
		cmd.Action = noArgs(cmd.Action)
	}
	for _, sub := range cmd.Subcommands {
		setUsage(sub, f)
	}
}

// Main is the body of every cmd/*/main.go: signal-aware context, run, exit.
func Main(app *cli.App) {
	ctx, stop := signalContext()
	code := Run(ctx, app, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Lookup finds the flag name on the (sub)command path of app (the app's own flags included):
// the template generator reads a flag's description, default and environment variable from it.
func Lookup(app *cli.App, path []string, name string) (cli.Flag, bool) {
	find := func(fs []cli.Flag) cli.Flag {
		for _, f := range fs {
			if slices.Contains(f.Names(), name) {
				return f
			}
		}
		return nil
	}
	found := find(app.Flags)
	cmds := app.Commands
	for _, step := range path {
		var next *cli.Command
		for _, c := range cmds {
			if c.Name == step {
				next = c
			}
		}
		if next == nil {
			return nil, false
		}
		if f := find(next.Flags); f != nil {
			found = f
		}
		cmds = next.Subcommands
	}
	return found, found != nil
}

// Interspersed moves a command's flags in front of its positional arguments, so that
// `approver reject RUN --reason TEXT` means what it says: urfave/cli v2 stops parsing flags at
// the first positional argument and would hand "--reason" to the command as an argument.
// Everything after "--" stays positional; flags it does not know are left for cli to reject.
func Interspersed(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	rest := args[1:]
	flags, cmds := app.Flags, app.Commands
	// Walk down the command path: global/parent flags, then a command name.
	for len(rest) > 0 {
		n := flagLen(flags, rest)
		if n > 0 {
			out, rest = append(out, rest[:n]...), rest[n:]
			continue
		}
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(rest[0]) {
				next = c
			}
		}
		if next == nil {
			break
		}
		out, rest = append(out, rest[0]), rest[1:]
		flags, cmds = next.Flags, next.Subcommands
	}
	var pos []string
	for len(rest) > 0 {
		if rest[0] == "--" {
			pos = append(pos, rest...)
			break
		}
		if n := flagLen(flags, rest); n > 0 {
			out, rest = append(out, rest[:n]...), rest[n:]
			continue
		}
		pos, rest = append(pos, rest[0]), rest[1:]
	}
	return append(out, pos...)
}

// flagLen is how many tokens the flag at args[0] takes (0: not a known flag).
func flagLen(flags []cli.Flag, args []string) int {
	a := args[0]
	if len(a) < 2 || a[0] != '-' || a == "--" {
		return 0
	}
	name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if _, isBool := f.(*cli.BoolFlag); isBool || hasValue || len(args) < 2 {
				return 1
			}
			return 2
		}
	}
	if name == "help" || name == "h" {
		return 1
	}
	return 0
}
