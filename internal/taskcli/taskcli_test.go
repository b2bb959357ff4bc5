package taskcli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/internal/exitcode"
)

func TestEnvNames(t *testing.T) {
	t.Parallel()
	if got := Env("results-dir")[0]; got != "GANTRY_RESULTS_DIR" {
		t.Errorf("Env = %s", got)
	}
}

func TestKeyValues(t *testing.T) {
	t.Parallel()
	kv, err := KeyValues("env", []string{"A=1", "B=x=y", "C="})
	if err != nil || len(kv) != 3 || kv[1] != [2]string{"B", "x=y"} || kv[2] != [2]string{"C", ""} {
		t.Errorf("KeyValues = %v %v", kv, err)
	}
	for _, bad := range [][]string{{"A"}, {"=1"}, {"A=1", "A=2"}} {
		if _, err := KeyValues("env", bad); exitcode.Of(err) != exitcode.BadInput || !strings.Contains(err.Error(), "--env") {
			t.Errorf("%v: %v", bad, err)
		}
	}
}

func TestRunMapsErrorsToExitCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		args []string
		want int
	}{
		{"ok", nil, nil, 0},
		{"failed", errors.New("boom"), nil, 1},
		{"transient", exitcode.Retryable(errors.New("down")), nil, 3},
		{"bad input", exitcode.Invalidf("bad"), nil, 2},
		{"unknown flag", nil, []string{"--nope"}, 2},
		{"bad flag value", nil, []string{"--n=x"}, 2},
	} {
		app := &cli.App{Name: "t", Flags: []cli.Flag{&cli.IntFlag{Name: "n"}}, Action: func(*cli.Context) error { return tc.err }}
		var out, errb bytes.Buffer
		if got := Run(context.Background(), app, append([]string{"t"}, tc.args...), &out, &errb); got != tc.want {
			t.Errorf("%s: exit %d, want %d (%s)", tc.name, got, tc.want, errb.String())
		}
		if tc.want != 0 && (strings.Count(errb.String(), "\n") != 1 || !strings.HasPrefix(errb.String(), "t: error: ")) {
			t.Errorf("%s: stderr %q, want one error line", tc.name, errb.String())
		}
	}
}

func TestMissingFlags(t *testing.T) {
	t.Parallel()
	app := &cli.App{Flags: []cli.Flag{&cli.StringFlag{Name: "a", Aliases: []string{"x"}}},
		Commands: []*cli.Command{{Name: "sub", Flags: []cli.Flag{&cli.StringFlag{Name: "b"}}}}}
	if m := MissingFlags(app, []string{"sub"}, []string{"a", "x", "b", "c"}); len(m) != 1 || m[0] != "c" {
		t.Errorf("missing = %v", m)
	}
	if m := MissingFlags(app, []string{"nosuch"}, []string{"a"}); len(m) == 0 {
		t.Error("unknown subcommand not reported")
	}
}

func TestInterspersedFlagsAfterPositionalArguments(t *testing.T) {
	app := &cli.App{Name: "approver",
		Flags: []cli.Flag{&cli.StringFlag{Name: "kubeconfig"}},
		Commands: []*cli.Command{{Name: "reject", ArgsUsage: "RUN", Flags: []cli.Flag{
			&cli.StringFlag{Name: "reason"}, &cli.StringFlag{Name: "namespace", Aliases: []string{"n"}}, &cli.BoolFlag{Name: "tekton"}}}}}
	for _, tc := range []struct{ in, want string }{
		{"approver reject RUN --reason why -n ns", "approver reject --reason why -n ns RUN"},
		{"approver --kubeconfig k reject RUN --tekton --reason=x", "approver --kubeconfig k reject --tekton --reason=x RUN"},
		{"approver reject --reason why RUN", "approver reject --reason why RUN"},
		{"approver reject RUN -- --reason", "approver reject RUN -- --reason"},
		{"approver reject RUN --unknown", "approver reject RUN --unknown"},
		{"approver reject RUN --tekton OTHER", "approver reject --tekton RUN OTHER"},
	} {
		if got := strings.Join(Interspersed(app, strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("%q → %q, want %q", tc.in, got, tc.want)
		}
	}
	// And through Run: the flag after the argument is seen as a flag.
	var reason string
	var args []string
	app.Commands[0].Action = func(c *cli.Context) error { reason, args = c.String("reason"), c.Args().Slice(); return nil }
	if code := Run(context.Background(), app, strings.Fields("approver reject RUN --reason why"), io.Discard, io.Discard); code != 0 || reason != "why" || len(args) != 1 || args[0] != "RUN" {
		t.Errorf("code %d reason %q args %q", code, reason, args)
	}
}
