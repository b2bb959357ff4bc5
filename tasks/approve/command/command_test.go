package command

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	"github.com/urfave/cli/v2"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/approve"
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
		a := New(kube.Clients{Argo: func(string, string) (versioned.Interface, kubernetes.Interface, string, error) {
			return argofake.NewSimpleClientset(), fake.NewClientset(), "ml", nil
		}})
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

// approve|reject --tekton record the decision object for the PipelineRun the dynamic client
// reads (its UID), in the caller's name; a run that does not exist is bad input.
// Not parallel: two urfave/cli apps running at once race on the package's global help flag.
func TestTektonDecisionThroughTheCommand(t *testing.T) {
	pr := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
		"metadata": map[string]any{"name": "pr-1", "namespace": "ml", "uid": "uid-1"}}}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{approve.PipelineRunsResource: "PipelineRunList"}, pr)
	kc := fake.NewClientset()
	kc.PrependReactor("create", "selfsubjectreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, &authnv1.SelfSubjectReview{Status: authnv1.SelfSubjectReviewStatus{UserInfo: authnv1.UserInfo{Username: "alice"}}}, nil
	})
	app := func() *cli.App {
		return New(kube.Clients{Argo: func(string, string) (versioned.Interface, kubernetes.Interface, string, error) {
			return argofake.NewSimpleClientset(), kc, "ml", nil
		}, Dynamic: func(string, string) (dynamic.Interface, error) { return dyn, nil }})
	}
	var out, errb bytes.Buffer
	if code := taskcli.Run(context.Background(), app(), []string{"approver", "reject", "pr-1", "--tekton", "--reason", "drift"}, &out, &errb); code != 0 {
		t.Fatalf("reject --tekton: exit %d: %s", code, errb.String())
	}
	if got := strings.TrimSpace(out.String()); got != "pr-1 rejected by alice" {
		t.Errorf("output %q", got)
	}
	cm, err := kc.CoreV1().ConfigMaps("ml").Get(context.Background(), approve.DecisionConfigMapOf("pr-1", "alice"), metav1.GetOptions{})
	if err != nil || cm.Data["decision"] != approve.Rejected || cm.Data["runUID"] != "uid-1" || cm.Data["decidedBy"] != "alice" {
		t.Errorf("decision object %+v (%v): want rejected, run uid-1, by alice", cm, err)
	}
	if code := taskcli.Run(context.Background(), app(), []string{"approver", "approve", "pr-404", "--tekton"}, &out, &errb); code != exitcode.BadInput {
		t.Errorf("approve --tekton of a run that does not exist: exit %d, want 2", code)
	}
}
