package taskcli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/internal/exitcode"
)

func TestEnvNames(t *testing.T) {
	t.Parallel()
	if got := Env("results-dir")[0]; got != "GANTRY_RESULTS_DIR" {
		t.Errorf("Env = %s", got)
	}
}

func TestBoundFlagsFromArgsAndEnvironment(t *testing.T) {
	var (
		kv    [][2]string
		list  []string
		strs  []string
		name  string
		extra = &cli.StringFlag{Name: "own-env", EnvVars: []string{"OTHER"}, Destination: new(string)}
	)
	flags := Flags([]cli.Flag{
		&cli.GenericFlag{Name: "hyperparameter", Value: KeyValues(&kv)},
		&cli.GenericFlag{Name: "approvers", Value: List(&list)},
		&cli.GenericFlag{Name: "args", Value: Strings(&strs)},
		&cli.StringFlag{Name: "model-name", Value: "fashion-mnist", Destination: &name},
		extra,
	})
	if got := extra.EnvVars; len(got) != 1 || got[0] != "OTHER" {
		t.Errorf("an explicit env var was replaced: %v", got)
	}
	t.Setenv("GANTRY_HYPERPARAMETER", "epochs=2, lr=0.1")
	t.Setenv("GANTRY_MODEL_NAME", "from-env")
	app := &cli.App{Name: "t", Flags: flags, Action: func(*cli.Context) error { return nil }}
	if code := Run(context.Background(), app, []string{"t", "--approvers", " alice, ,bob", "--args=a,b", "--args", "c"}, io.Discard, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	want := [][2]string{{"epochs", "2"}, {"lr", "0.1"}}
	if diff := cmp.Diff(want, kv); diff != "" {
		t.Errorf("hyperparameters (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"alice", "bob"}, list); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a", "b", "c"}, strs); diff != "" {
		t.Errorf("strings (-want +got):\n%s", diff)
	}
	if name != "from-env" {
		t.Errorf("model-name = %q, want the GANTRY_MODEL_NAME value", name)
	}
}

func TestKeyValuesRefusesMalformedPairsAsBadInput(t *testing.T) {
	// Not parallel: every cli.App writes to urfave/cli's package-level help and version flags while
	// parsing, so two apps running at once in one test binary race (seen with -race).
	for _, bad := range [][]string{{"--env=A"}, {"--env==1"}, {"--env=A=1", "--env=A=2"}} {
		var kv [][2]string
		app := &cli.App{Name: "t", Flags: []cli.Flag{&cli.GenericFlag{Name: "env", Value: KeyValues(&kv)}}, Action: func(*cli.Context) error { return nil }}
		var errb bytes.Buffer
		if code := Run(context.Background(), app, append([]string{"t"}, bad...), io.Discard, &errb); code != exitcode.BadInput || !strings.Contains(errb.String(), "env") {
			t.Errorf("%v: exit %d, %q", bad, code, errb.String())
		}
	}
}

// An empty value — what a template passes for its default "" — means no pairs, not a bad one.
func TestKeyValuesEmptyMeansNone(t *testing.T) {
	for _, args := range [][]string{{"--env="}, {"--env= "}, {"--env=A=1,", "--env="}} {
		var kv [][2]string
		app := &cli.App{Name: "t", Flags: []cli.Flag{&cli.GenericFlag{Name: "env", Value: KeyValues(&kv)}}, Action: func(*cli.Context) error { return nil }}
		var errb bytes.Buffer
		if code := Run(context.Background(), app, append([]string{"t"}, args...), io.Discard, &errb); code != 0 {
			t.Errorf("%v: exit %d, %q", args, code, errb.String())
		}
		if want := strings.Contains(strings.Join(args, " "), "A=1"); want != (len(kv) == 1) {
			t.Errorf("%v: parsed %v", args, kv)
		}
	}
}

func TestRunMapsErrorsToExitCodes(t *testing.T) {
	// Not parallel: every cli.App writes to urfave/cli's package-level help and version flags while
	// parsing, so two apps running at once in one test binary race (seen with -race).
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
		{"stray argument", nil, []string{"oops"}, 2},
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

func TestLookupFindsTheFlagOnTheCommandPath(t *testing.T) {
	t.Parallel()
	app := &cli.App{Flags: []cli.Flag{&cli.StringFlag{Name: "a", Aliases: []string{"x"}, Usage: "top"}},
		Commands: []*cli.Command{{Name: "sub", Flags: []cli.Flag{&cli.StringFlag{Name: "b"}, &cli.StringFlag{Name: "a", Usage: "sub"}}}}}
	for _, tc := range []struct {
		path  []string
		name  string
		usage string
		found bool
	}{
		{nil, "a", "top", true}, {nil, "x", "top", true}, {[]string{"sub"}, "a", "sub", true}, {[]string{"sub"}, "b", "", true},
		{[]string{"sub"}, "c", "", false}, {[]string{"nosuch"}, "a", "", false},
	} {
		f, ok := Lookup(app, tc.path, tc.name)
		if ok != tc.found || (ok && f.(*cli.StringFlag).Usage != tc.usage) {
			t.Errorf("Lookup(%v, %s) = %v %v", tc.path, tc.name, f, ok)
		}
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

// A failing task leaves its reason as the container's termination message (what Argo shows as
// the failed node's message), only where Kubernetes created the file.
func TestFailureReasonIsTheTerminationMessage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "termination-log")
	old := TerminationMessagePath
	TerminationMessagePath = path
	t.Cleanup(func() { TerminationMessagePath = old })
	app := &cli.App{Name: "t", Action: func(*cli.Context) error {
		return exitcode.With(exitcode.Failed, errors.New("canary failed: accuracy 0.41 vs min 0.85"))
	}}
	Run(context.Background(), app, []string{"t"}, io.Discard, io.Discard)
	if _, err := os.Stat(path); err == nil {
		t.Fatal("created a termination-log that Kubernetes had not")
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := Run(context.Background(), app, []string{"t"}, io.Discard, io.Discard); code != exitcode.Failed {
		t.Fatalf("exit %d", code)
	}
	if b, _ := os.ReadFile(path); string(b) != "canary failed: accuracy 0.41 vs min 0.85" {
		t.Errorf("termination message %q", b)
	}
}
