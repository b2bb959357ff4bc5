// Command follow shows an Argo run's steps as they change until it waits for a person or ends,
// for `make demo` (hack/cluster/demo.sh). When the deadline passes first it says which steps
// are still waiting and why — the pod's phase, its scheduling condition, a container's waiting
// reason — instead of just "not done".
//
//	follow -n NAMESPACE --deadline UNIX-SECONDS --until approval|done RUN
//
// --until approval returns when the run suspends (the approval asks a person); --until done when
// it ends (exit 0 if it Succeeded, 1 with its message otherwise). The deadline is absolute so
// that several calls share one budget, which demo.sh starts at submit: the cluster's bring-up
// does not spend the run's time. Exit 1 at the deadline, 2 for bad arguments.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/tasks/train"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout, nil)
	var bad badArgs
	switch {
	case err == nil:
	case errors.As(err, &bad):
		fmt.Fprintln(os.Stderr, "follow:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "follow:", err)
		os.Exit(1)
	}
}

type badArgs struct{ error }

// clients builds the Argo and Kubernetes clients; tests pass fakes.
type clients func(namespace string) (versioned.Interface, kubernetes.Interface, error)

func run(ctx context.Context, args []string, out io.Writer, mk clients) error {
	fs := flag.NewFlagSet("follow", flag.ContinueOnError)
	fs.SetOutput(out)
	ns := fs.String("n", "default", "namespace of the run")
	deadline := fs.Int64("deadline", 0, "give up at this Unix time (seconds); required")
	until := fs.String("until", "done", "approval: return when the run waits for a person; done: when it ends")
	every := fs.Duration("interval", 2*time.Second, "how often to read the run")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return badArgs{err}
	}
	if fs.NArg() != 1 || *deadline <= 0 || (*until != "approval" && *until != "done") {
		return badArgs{fmt.Errorf("usage: follow -n NAMESPACE --deadline UNIX-SECONDS --until approval|done RUN")}
	}
	if mk == nil {
		mk = func(namespace string) (versioned.Interface, kubernetes.Interface, error) {
			wf, kc, _, err := kube.ArgoClients("", namespace)
			return wf, kc, err
		}
	}
	wf, kc, err := mk(*ns)
	if err != nil {
		return err
	}
	f := &follower{wf: wf, kc: kc, ns: *ns, name: fs.Arg(0), out: out, seen: map[string]wfv1.NodePhase{}}
	return f.follow(ctx, time.Unix(*deadline, 0), *until, *every)
}

type follower struct {
	wf   versioned.Interface
	kc   kubernetes.Interface
	ns   string
	name string
	out  io.Writer
	seen map[string]wfv1.NodePhase
}

// errDeadline is returned when the deadline passes before the run gets where it was asked to.
var errDeadline = errors.New("deadline passed")

func (f *follower) follow(ctx context.Context, deadline time.Time, until string, every time.Duration) error {
	for {
		w, err := f.wf.ArgoprojV1alpha1().Workflows(f.ns).Get(ctx, f.name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading run %s: %w", f.name, err)
		}
		f.print(w)
		switch w.Status.Phase {
		case wfv1.WorkflowSucceeded:
			return nil
		case wfv1.WorkflowFailed, wfv1.WorkflowError:
			return fmt.Errorf("run %s %s: %s", f.name, w.Status.Phase, w.Status.Message)
		}
		if until == "approval" && suspended(w) {
			return nil
		}
		if !time.Now().Before(deadline) {
			fmt.Fprintf(f.out, "run %s is not done at its deadline (%s); still waiting:\n", f.name, deadline.UTC().Format(time.RFC3339))
			f.waiting(ctx, w)
			fmt.Fprintf(f.out, "it is still there: hack/cluster/exec.sh argo -n %s get %s\n", f.ns, f.name)
			return fmt.Errorf("run %s: %w", f.name, errDeadline)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(every, time.Until(deadline)+time.Millisecond)):
		}
	}
}

// steps are the nodes a person follows: pods, suspends and skipped steps, oldest first.
func steps(w *wfv1.Workflow) []wfv1.NodeStatus {
	var ns []wfv1.NodeStatus
	for _, n := range w.Status.Nodes {
		switch n.Type {
		case wfv1.NodeTypePod, wfv1.NodeTypeSuspend, wfv1.NodeTypeSkipped:
			ns = append(ns, n)
		}
	}
	sort.SliceStable(ns, func(i, j int) bool {
		a, b := ns[i].StartedAt, ns[j].StartedAt
		if a.Equal(&b) {
			return ns[i].ID < ns[j].ID
		}
		if a.IsZero() || b.IsZero() {
			return b.IsZero()
		}
		return a.Before(&b)
	})
	return ns
}

func suspended(w *wfv1.Workflow) bool {
	for _, n := range w.Status.Nodes {
		if n.Type == wfv1.NodeTypeSuspend && n.Phase == wfv1.NodeRunning {
			return true
		}
	}
	return false
}

func (f *follower) print(w *wfv1.Workflow) {
	for _, n := range steps(w) {
		if f.seen[n.ID] == n.Phase {
			continue
		}
		f.seen[n.ID] = n.Phase
		fmt.Fprintf(f.out, "   %-28s %s\n", n.DisplayName, n.Phase)
	}
}

// waiting prints each unfinished step with what holds it: its pod's state, and the training
// Job's pods for a step that launched one (they carry the run's gantry.dev/run label).
func (f *follower) waiting(ctx context.Context, w *wfv1.Workflow) {
	pods := map[string]corev1.Pod{} // by node ID
	var training []corev1.Pod
	if l, err := f.kc.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{LabelSelector: "workflows.argoproj.io/workflow=" + w.Name}); err == nil {
		for _, p := range l.Items {
			if id := p.Annotations["workflows.argoproj.io/node-id"]; id != "" {
				pods[id] = p
			}
		}
	}
	if l, err := f.kc.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{LabelSelector: "gantry.dev/run=" + train.RunLabel(w.Name)}); err == nil {
		training = l.Items
	}
	any := false
	for _, n := range steps(w) {
		if n.Fulfilled() {
			continue
		}
		any = true
		line := fmt.Sprintf("   %-28s %s", n.DisplayName, n.Phase)
		if n.Type == wfv1.NodeTypeSuspend {
			line += ": waits for a person (argo resume / argo stop)"
		} else if p, ok := pods[n.ID]; ok {
			line += ": pod " + p.Name + " " + podState(p)
		} else if n.Message != "" {
			line += ": " + n.Message
		}
		fmt.Fprintln(f.out, line)
		if n.Type == wfv1.NodeTypePod && strings.HasPrefix(n.DisplayName, "train") {
			for _, p := range training {
				if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
					fmt.Fprintf(f.out, "   %-28s training pod %s %s\n", "", p.Name, podState(p))
				}
			}
		}
	}
	if !any {
		fmt.Fprintf(f.out, "   (no step is running: the run is %s; the controller may be down: kubectl -n argo get pods)\n", w.Status.Phase)
	}
}

// podState is the pod's phase and what it waits on: an unmet condition's reason and message
// (Unschedulable: 0/2 nodes are available…), a container's waiting reason (ImagePullBackOff…).
func podState(p corev1.Pod) string {
	s := string(p.Status.Phase)
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Reason != "" && (c.Type == corev1.PodScheduled || p.Status.Phase != corev1.PodRunning) {
			s += fmt.Sprintf(", %s %s: %s", c.Type, c.Reason, strings.TrimSpace(c.Message))
		}
	}
	all := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, c := range all {
		switch {
		case c.State.Waiting != nil && c.State.Waiting.Reason != "":
			s += fmt.Sprintf(", container %s waiting: %s", c.Name, c.State.Waiting.Reason)
			if m := strings.TrimSpace(c.State.Waiting.Message); m != "" {
				s += " (" + m + ")"
			}
		case c.State.Terminated != nil && c.State.Terminated.ExitCode != 0:
			s += fmt.Sprintf(", container %s exited %d %s", c.Name, c.State.Terminated.ExitCode, c.State.Terminated.Reason)
		}
		if c.RestartCount > 0 {
			s += fmt.Sprintf(", container %s restarted %d×", c.Name, c.RestartCount)
		}
	}
	return s
}
