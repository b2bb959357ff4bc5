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
	"strings"

	"github.com/urfave/cli/v2"

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

// Common flags of every binary.
var (
	LogFormatFlag = &cli.StringFlag{Name: "log-format", Value: "text", EnvVars: Env("log-format"),
		Usage: "log format on stderr: text or json"}
	LogLevelFlag = &cli.StringFlag{Name: "log-level", Value: "info", EnvVars: Env("log-level"),
		Usage: "log level: debug, info, warn or error"}
	ResultsDirFlag = &cli.StringFlag{Name: "results-dir", EnvVars: Env("results-dir"),
		Usage: "write one file per result here (Argo: /tmp/results, Tekton: /tekton/results); empty: stdout only"}
	S3EndpointFlag = &cli.StringFlag{Name: "s3-endpoint", EnvVars: Env("s3-endpoint"),
		Usage: "S3 API endpoint, e.g. http://minio.gantry:9000 (empty: AWS S3). Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"}
	S3RegionFlag   = &cli.StringFlag{Name: "s3-region", EnvVars: Env("s3-region"), Usage: "S3 region"}
	KubeconfigFlag = &cli.StringFlag{Name: "kubeconfig", EnvVars: []string{"GANTRY_KUBECONFIG", "KUBECONFIG"},
		Usage: "kubeconfig file (default: in-cluster config)"}
	NamespaceFlag = &cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, EnvVars: Env("namespace"),
		Usage: "namespace (default: the pod's namespace, or the kubeconfig context's)"}
)

// CommonFlags are on every binary.
func CommonFlags() []cli.Flag { return []cli.Flag{LogFormatFlag, LogLevelFlag, ResultsDirFlag} }

// StoreFlags are on every binary that touches object storage.
func StoreFlags() []cli.Flag { return []cli.Flag{S3EndpointFlag, S3RegionFlag} }

// KubeFlags are on every binary that talks to Kubernetes.
func KubeFlags() []cli.Flag { return []cli.Flag{KubeconfigFlag, NamespaceFlag} }

// Logger builds the slog logger the flags ask for, writing to c.App.ErrWriter.
func Logger(c *cli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String(LogLevelFlag.Name))); err != nil {
		return nil, exitcode.Invalidf("--log-level %q: want debug, info, warn or error", c.String(LogLevelFlag.Name))
	}
	opts := &slog.HandlerOptions{Level: level}
	w := c.App.ErrWriter
	switch f := c.String(LogFormatFlag.Name); f {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, exitcode.Invalidf("--log-format %q: want text or json", f)
	}
}

// Store builds the object store from the flags and the standard credential variables.
func Store(c *cli.Context) (*objstore.Router, error) {
	return objstore.New(&objstore.S3Config{Endpoint: c.String(S3EndpointFlag.Name), Region: c.String(S3RegionFlag.Name)})
}

// WriteResults writes results to --results-dir and as a JSON line to stdout.
func WriteResults(c *cli.Context, values map[string]string) error {
	return results.Write(c.String(ResultsDirFlag.Name), c.App.Writer, values)
}

// KeyValues parses repeated K=V flags, in order. Errors are bad input naming the flag.
func KeyValues(flag string, in []string) ([][2]string, error) {
	out := make([][2]string, 0, len(in))
	seen := map[string]bool{}
	for _, kv := range in {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, exitcode.Invalidf("--%s %q: want KEY=VALUE", flag, kv)
		}
		if seen[k] {
			return nil, exitcode.Invalidf("--%s: %s given twice", flag, k)
		}
		seen[k] = true
		out = append(out, [2]string{k, v})
	}
	return out, nil
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
	return code
}

func setUsage(cmd *cli.Command, f cli.OnUsageErrorFunc) {
	cmd.OnUsageError = f
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

// MissingFlags returns the flags not defined on the (sub)command path of app:
// the templates' tests use it so a renamed flag breaks the build of the pipeline.
func MissingFlags(app *cli.App, path []string, flags []string) []string {
	defined := map[string]bool{}
	add := func(fs []cli.Flag) {
		for _, f := range fs {
			for _, n := range f.Names() {
				defined[n] = true
			}
		}
	}
	add(app.Flags)
	cmds := app.Commands
	for _, name := range path {
		var next *cli.Command
		for _, c := range cmds {
			if c.Name == name {
				next = c
			}
		}
		if next == nil {
			return append([]string{"subcommand " + name}, flags...)
		}
		add(next.Flags)
		cmds = next.Subcommands
	}
	var missing []string
	for _, f := range flags {
		if !defined[f] {
			missing = append(missing, f)
		}
	}
	return missing
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
