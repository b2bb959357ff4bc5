package main

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	wffake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	kfake "k8s.io/client-go/kubernetes/fake"

	"github.com/gantry-ml/gantry/tasks/train"
)

const ns = "demo"

func workflow(phase wfv1.WorkflowPhase, nodes ...wfv1.NodeStatus) *wfv1.Workflow {
	w := &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: "ml-pipeline-abcde", Namespace: ns}}
	w.Status.Phase = phase
	w.Status.Nodes = wfv1.Nodes{}
	start := time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)
	for i, n := range nodes {
		n.StartedAt = metav1.NewTime(start.Add(time.Duration(i) * time.Second))
		w.Status.Nodes[n.ID] = n
	}
	return w
}

func fakes(objs []runtime.Object, w *wfv1.Workflow) clients {
	return func(string) (versioned.Interface, kubernetes.Interface, error) {
		return wffake.NewSimpleClientset(w), kfake.NewSimpleClientset(objs...), nil
	}
}

func deadlineArg(d time.Time) string { return strconv.FormatInt(d.Unix(), 10) }

// A step stuck at the deadline is named with what holds it: the launcher pod's phase and the
// training Job's pod, unschedulable, with the scheduler's message.
func TestDeadlineReportsWhatTheStuckStepWaitsFor(t *testing.T) {
	w := workflow(wfv1.WorkflowRunning,
		wfv1.NodeStatus{ID: "n-train", DisplayName: "train(0)", Type: wfv1.NodeTypePod, Phase: wfv1.NodeRunning},
	)
	launcher := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ml-pipeline-abcde-train-1", Namespace: ns,
			Labels:      map[string]string{"workflows.argoproj.io/workflow": w.Name},
			Annotations: map[string]string{"workflows.argoproj.io/node-id": "n-train"}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	job := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ml-pipeline-abcde-train-x7", Namespace: ns,
			Labels: map[string]string{"gantry.dev/run": train.RunLabel(w.Name)}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
			Message: "0/2 nodes are available: 2 Insufficient cpu.",
		}}},
	}
	var out bytes.Buffer
	err := run(context.Background(), []string{"-n", ns, "--deadline", deadlineArg(time.Now().Add(-time.Second)), "--until", "done", w.Name},
		&out, fakes([]runtime.Object{&launcher, &job}, w))
	if !errors.Is(err, errDeadline) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	for _, want := range []string{
		"train(0)", "pod ml-pipeline-abcde-train-1 Running",
		"training pod ml-pipeline-abcde-train-x7 Pending, PodScheduled Unschedulable: 0/2 nodes are available: 2 Insufficient cpu.",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestDeadlineReportsAnImagePullAndTheApprovalWait(t *testing.T) {
	w := workflow(wfv1.WorkflowRunning,
		wfv1.NodeStatus{ID: "n-canary", DisplayName: "canary(0)", Type: wfv1.NodeTypePod, Phase: wfv1.NodeSucceeded},
		wfv1.NodeStatus{ID: "n-approval", DisplayName: "approval", Type: wfv1.NodeTypeSuspend, Phase: wfv1.NodeRunning},
		wfv1.NodeStatus{ID: "n-smoke", DisplayName: "smoke(0)", Type: wfv1.NodeTypePod, Phase: wfv1.NodePending},
	)
	pod := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p-smoke", Namespace: ns,
			Labels:      map[string]string{"workflows.argoproj.io/workflow": w.Name},
			Annotations: map[string]string{"workflows.argoproj.io/node-id": "n-smoke"}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "main", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "not found"}},
		}}},
	}
	var out bytes.Buffer
	err := run(context.Background(), []string{"-n", ns, "--deadline", deadlineArg(time.Now()), "--until", "done", w.Name},
		&out, fakes([]runtime.Object{&pod}, w))
	if !errors.Is(err, errDeadline) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	s := out.String()
	if !strings.Contains(s, "approval") || !strings.Contains(s, "waits for a person") {
		t.Errorf("the waiting approval is not reported:\n%s", s)
	}
	if !strings.Contains(s, "p-smoke Pending, container main waiting: ImagePullBackOff (not found)") {
		t.Errorf("the image pull is not reported:\n%s", s)
	}
	if strings.Contains(s[strings.Index(s, "still waiting"):], "canary(0)") {
		t.Errorf("a finished step is reported as waiting:\n%s", s)
	}
}

// --until approval returns as soon as the run suspends, well before the deadline; --until done
// turns a failed run into an error with its message and a succeeded one into success.
func TestUntil(t *testing.T) {
	later := deadlineArg(time.Now().Add(time.Hour))
	waiting := workflow(wfv1.WorkflowRunning,
		wfv1.NodeStatus{ID: "a", DisplayName: "approval", Type: wfv1.NodeTypeSuspend, Phase: wfv1.NodeRunning})
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, []string{"-n", ns, "--deadline", later, "--until", "approval", waiting.Name}, &out, fakes(nil, waiting)); err != nil {
		t.Fatalf("until approval: %v", err)
	}
	if !strings.Contains(out.String(), "approval                     Running") {
		t.Errorf("the step's change is not shown:\n%s", out.String())
	}
	failed := workflow(wfv1.WorkflowFailed)
	failed.Status.Message = "canary failed: accuracy 0.10 vs min 0.85"
	err := run(ctx, []string{"-n", ns, "--deadline", later, "--until", "done", failed.Name}, &out, fakes(nil, failed))
	if err == nil || !strings.Contains(err.Error(), "canary failed: accuracy 0.10") {
		t.Errorf("failed run: err = %v", err)
	}
	if err := run(ctx, []string{"-n", ns, "--deadline", later, "--until", "done", "x"}, &out, fakes(nil, workflow(wfv1.WorkflowSucceeded))); err == nil {
		t.Errorf("a run that does not exist: no error")
	}
	ok := workflow(wfv1.WorkflowSucceeded)
	if err := run(ctx, []string{"-n", ns, "--deadline", later, "--until", "done", ok.Name}, &out, fakes(nil, ok)); err != nil {
		t.Errorf("succeeded run: %v", err)
	}
}

func TestBadArguments(t *testing.T) {
	var bad badArgs
	for _, args := range [][]string{
		{"run"}, // no deadline
		{"--deadline", "1", "--until", "x", "run"}, // unknown until
		{"--deadline", "1"},                        // no run
		{"--deadline", "soon", "run"},              // not a number
	} {
		if err := run(context.Background(), args, &bytes.Buffer{}, fakes(nil, workflow(wfv1.WorkflowRunning))); !errors.As(err, &bad) {
			t.Errorf("%q: err = %v, want bad arguments (exit 2)", args, err)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out, nil); err != nil || !strings.Contains(out.String(), "-deadline") {
		t.Errorf("-h: err = %v, output %q; want the help", err, out.String())
	}
}
