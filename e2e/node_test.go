//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Names of the local cluster's nodes (hack/cluster/lib.sh, node.sh): the e2e runs on two.
const (
	firstNode  = "gantry-node"
	secondNode = "gantry-node-2"
	// outOfService is Kubernetes' taint for a node known to be gone (non-graceful node
	// shutdown, GA in 1.28): what an operator, or a cloud's node lifecycle, sets.
	outOfService = "node.kubernetes.io/out-of-service"
)

// nodeLossBound is how long the test allows from the node's loss to the run waiting for
// approval again: Kubernetes marks the node NotReady after its grace period (40 s), the pod
// garbage collector then deletes the pods of an out-of-service node (every 20 s), the Job
// replaces its training pod and Argo retries the launcher (10 s backoff), and training runs
// again from the start (≈40 s with 2 epochs here).
const nodeLossBound = 5 * time.Minute

// The node running the training pod and its launcher is lost mid-training (its kubelet,
// containerd and every container on it killed, as a machine that dies). The run still ends
// promoted, with exactly one training Job whose one successful pod ran on the surviving node.
// Not parallel: it cordons the first node to place the run on the second.
func TestRunSurvivesTheLossOfItsTrainingNode(t *testing.T) {
	f := given(t)
	nodes, err := kube.CoreV1().Nodes().List(f.ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) < 2 {
		t.Fatalf("needs a second node (hack/cluster/up.sh --nodes 2; hack/e2e.sh brings it up): %d nodes, %v", len(nodes.Items), err)
	}
	cordon := func(node string, on bool) {
		t.Helper()
		patch := `{"spec":{"unschedulable":` + map[bool]string{true: "true", false: "false"}[on] + `}}`
		if _, err := kube.CoreV1().Nodes().Patch(f.ctx, node, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cordon(firstNode, true)
	t.Cleanup(func() {
		cordon(firstNode, false)
		// The second node comes back (as a repaired machine).
		f.sh(nil, "hack/cluster/node.sh", "2")
		// Its out-of-service taint goes with it (node.sh: a node brought back is repaired).
		if n, err := kube.CoreV1().Nodes().Get(context.Background(), secondNode, metav1.GetOptions{}); err != nil {
			t.Error(err)
		} else {
			for _, tn := range n.Spec.Taints {
				if tn.Key == outOfService {
					t.Errorf("%s is back but keeps its %s taint: later pods cannot run there", secondNode, outOfService)
				}
			}
		}
	})
	jobs := f.countJobs()
	run := f.submit("hyperparameters=epochs=3,learning-rate=0.001,batch-size=128")
	trainer := f.waitPod("batch.kubernetes.io/job-name", 4*time.Minute, "training running on the second node", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && p.Spec.NodeName == secondNode
	})
	w := f.waitRun(run, time.Minute, "launcher running", nodeIs("train(0)", wfv1.NodeRunning))
	if n := w.Status.Nodes.FindByDisplayName("train(0)"); n == nil || n.HostNodeName != secondNode {
		t.Fatalf("the launcher is not on %s: %+v", secondNode, n)
	}
	cordon(firstNode, false)
	lost := time.Now()
	f.sh(nil, "hack/cluster/node.sh", "2", "stop")
	t.Logf("stopped %s while %s trains", secondNode, trainer.Name)
	taint := `{"spec":{"taints":[{"key":"` + outOfService + `","value":"nodeshutdown","effect":"NoExecute"}]}}`
	if _, err := kube.CoreV1().Nodes().Patch(f.ctx, secondNode, types.StrategicMergePatchType, []byte(taint), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitRun(run, nodeLossBound, "approval waiting after the node loss", awaitingApproval)
	t.Logf("node loss → awaiting approval again: %s", time.Since(lost).Round(time.Second))
	f.approveAsAdmin(run)
	w = f.waitRun(run, toEnd, "run succeeded", phaseIs(wfv1.WorkflowSucceeded))
	t.Logf("node loss → promoted: %s", time.Since(lost).Round(time.Second))
	if n := jobs(); n != 1 {
		t.Errorf("%d training Jobs were created, want exactly 1", n)
	}
	job, err := kube.BatchV1().Jobs(f.ns).Get(f.ctx, output(w, "train(0)", "job-name"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if job.Status.Succeeded != 1 || !hasCondition(job, batchv1.JobComplete) {
		t.Errorf("training Job %s: succeeded %d, conditions %+v: want exactly one successful pod", job.Name, job.Status.Succeeded, job.Status.Conditions)
	}
	pods, err := kube.CoreV1().Pods(f.ns).List(f.ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + job.Name})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodSucceeded && p.Spec.NodeName != firstNode {
			t.Errorf("training pod %s succeeded on %s, want %s", p.Name, p.Spec.NodeName, firstNode)
		}
	}
	// The launcher's pod went with the node; Argo replaced it (v3.7 recreates a step's pod that
	// was deleted before it finished; older versions fail the attempt and the retry strategy
	// starts the next one), and the replacement re-attached to the Job on the first node.
	var attempts []string
	for _, n := range w.Status.Nodes {
		if strings.HasPrefix(n.DisplayName, "train(") {
			attempts = append(attempts, n.DisplayName+"="+string(n.Phase)+"@"+n.HostNodeName)
			if n.Phase == wfv1.NodeSucceeded && n.HostNodeName != firstNode {
				t.Errorf("the launcher finished on %s, want %s (the lost node's pod was not replaced)", n.HostNodeName, firstNode)
			}
		}
	}
	t.Logf("launcher attempts: %v", attempts)
}

func hasCondition(j *batchv1.Job, c batchv1.JobConditionType) bool {
	for _, x := range j.Status.Conditions {
		if x.Type == c && x.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}
