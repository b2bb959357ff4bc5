package command

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/taskcli"
)

func TestBadInputExit2(t *testing.T) {
	t.Parallel()
	for name, args := range map[string][]string{
		"approve without run":     {"approve"},
		"reject without reason":   {"reject", "r1"},
		"approve unknown run":     {"approve", "nope"},
		"verify without run":      {"verify"},
		"verify without timeout":  {"verify", "--run-name=r1"},
		"verify bad timeout":      {"verify", "--run-name=r1", "--timeout=soon"},
		"wait zero timeout":       {"wait", "--run-name=r1", "--timeout=0"},
		"bad notify url":          {"request", "--run-name=r1", "--notify-url=ftp://x"},
		"unknown subcommand flag": {"list", "--all"},
	} {
		var out, errb bytes.Buffer
		a := New(func(string, string) (versioned.Interface, kubernetes.Interface, string, error) {
			return argofake.NewSimpleClientset(), fake.NewClientset(), "ml", nil
		})
		code := taskcli.Run(context.Background(), a, append([]string{"approver"}, args...), &out, &errb)
		if code != exitcode.BadInput {
			t.Errorf("%s: exit %d (%s), want 2", name, code, strings.TrimSpace(errb.String()))
		}
	}
}

// The suspend and verify read one parameter: Argo's suspend takes seconds or a duration, so does
// --timeout (86400 once made verify exit 2 while the suspend accepted it).
func TestTimeoutTakesTheSuspendsFormat(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{"86400": 24 * time.Hour, "24h": 24 * time.Hour, "90": 90 * time.Second, "1h30m": 90 * time.Minute} {
		var d time.Duration
		if err := (suspendDuration{&d}).Set(in); err != nil || d != want {
			t.Errorf("%q → %v %v, want %v", in, d, err, want)
		}
	}
	for _, bad := range []string{"soon", "1d", "-5"} {
		var d time.Duration
		if err := (suspendDuration{&d}).Set(bad); err == nil {
			t.Errorf("%q accepted as %v", bad, d)
		}
	}
}
