package command_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	wffake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	kfake "k8s.io/client-go/kubernetes/fake"

	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/train/command"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// train-launcher trigger, as the gantry-trigger template runs it: the binding's JSON list of
// digests becomes one run each; bad input is exit 2 before any client is built.
func TestTriggerCommand(t *testing.T) {
	wf, kc := wffake.NewSimpleClientset(), kfake.NewSimpleClientset()
	built := 0
	app := command.New(kube.Clients{Argo: func(string, string) (versioned.Interface, kubernetes.Interface, string, error) {
		built++
		return wf, kc, "ml", nil
	}})
	run := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := taskcli.Run(context.Background(), app, append([]string{"train-launcher", "trigger"}, args...), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := run("--repository", "127.0.0.1:5000/gantry/fashion-trainer", "--digests", `["`+digest+`"]`, "--param", "epochs=3"); code != 0 || !strings.Contains(out, `"submitted":"ml-pipeline-0123456789ab"`) {
		t.Fatalf("exit %d: %s", code, out)
	}
	w, err := wf.ArgoprojV1alpha1().Workflows("ml").Get(context.Background(), "ml-pipeline-0123456789ab", metav1.GetOptions{})
	if err != nil || w.Spec.Arguments.GetParameterByName("train-image").Value.String() != "127.0.0.1:5000/gantry/fashion-trainer@"+digest {
		t.Fatalf("run: %v %+v", err, w)
	}
	before := built
	for _, args := range [][]string{
		{"--repository", "127.0.0.1:5000/x", "--digests", "latest"},
		{"--repository", "127.0.0.1:5000/x"},
		{"--digests", digest},
		{"--repository", "127.0.0.1:5000/x", "--catch-up", "stray"},
	} {
		if code, out := run(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", args, code, out)
		}
	}
	if built != before {
		t.Errorf("bad input built clients")
	}
}
