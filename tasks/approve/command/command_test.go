package command

import (
	"bytes"
	"context"
	"strings"
	"testing"

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
