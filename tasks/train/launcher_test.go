package train

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
)

const ns = "ml"

// fixture is a fake cluster plus a file:// output dir.
type fixture struct {
	t       *testing.T
	client  *fake.Clientset
	out     string // output dir path
	watches chan string
	logs    bytes.Buffer
	mu      sync.Mutex
	store   *objstore.Router // default: file:// only
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	f := &fixture{t: t, client: fake.NewClientset(objs...), out: t.TempDir(), watches: make(chan string, 16)}
	apiCalls.Attach(f.client)
	f.client.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		f.watches <- a.GetResource().Resource
		return false, nil, nil
	})
	return f
}

func (f *fixture) opts() Options {
	return Options{
		Namespace: ns, JobName: "run-1-train", Image: "registry.local/trainer@sha256:abc",
		Args: []string{"--epochs=1"}, Env: [][2]string{{"A", "1"}}, Hyperparameters: [][2]string{{"learning-rate", "0.001"}},
		Timeout: time.Hour, UnschedulableTimeout: 5 * time.Minute,
		OutputURI: "file://" + f.out, DatasetURI: "file:///data/fashion/",
	}
}

func (f *fixture) writeModel(metrics string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.out, "model.safetensors"), []byte("weights"), 0o644); err != nil {
		f.t.Fatal(err)
	}
	if metrics != "" {
		if err := os.WriteFile(filepath.Join(f.out, "metrics.json"), []byte(metrics), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
}

type runOut struct {
	res Result
	err error
}

func (f *fixture) start(ctx context.Context, o Options, opts ...Option) <-chan runOut {
	store := f.store
	if store == nil {
		store, _ = objstore.New(nil)
	}
	l := NewLauncher(f.client, store, append([]Option{WithPodLogs(&syncWriter{mu: &f.mu, w: &f.logs})}, opts...)...)
	ch := make(chan runOut, 1)
	go func() {
		res, err := l.Run(ctx, o)
		ch <- runOut{res, err}
	}()
	return ch
}

// watching waits until the launcher watches both jobs and pods.
func (f *fixture) watching() {
	f.t.Helper()
	seen := map[string]bool{}
	timeout := time.After(10 * time.Second)
	for !seen["jobs"] || !seen["pods"] {
		select {
		case r := <-f.watches:
			seen[r] = true
		case <-timeout:
			f.t.Fatalf("launcher never watched jobs and pods (saw %v)", seen)
		}
	}
}

func (f *fixture) job() *batchv1.Job {
	f.t.Helper()
	j, err := f.client.BatchV1().Jobs(ns).Get(context.Background(), "run-1-train", metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return j
}

func (f *fixture) setJobCondition(t batchv1.JobConditionType, reason, msg string) {
	f.t.Helper()
	j := f.job()
	now := metav1.Now()
	j.Status.StartTime = &metav1.Time{Time: now.Add(-42 * time.Second)}
	if t == batchv1.JobComplete {
		j.Status.CompletionTime = &now
		j.Status.Succeeded = 1
	}
	j.Status.Conditions = append(j.Status.Conditions, batchv1.JobCondition{Type: t, Status: corev1.ConditionTrue, Reason: reason, Message: msg})
	if _, err := f.client.BatchV1().Jobs(ns).UpdateStatus(context.Background(), j, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) addPod(status corev1.PodStatus, spec corev1.PodSpec) {
	f.t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "run-1-train-x7k2p", Namespace: ns, Labels: map[string]string{LabelJob: "run-1-train"}}, Spec: spec, Status: status}
	if _, err := f.client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) creates() int {
	n := 0
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "create" && a.GetResource().Resource == "jobs" {
			n++
		}
	}
	return n
}

func awaitRun(t *testing.T, ch <-chan runOut) runOut {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("launcher did not return")
		return runOut{}
	}
}

type syncWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestCreatesJobAndVerifiesOutput(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ch := f.start(context.Background(), f.opts())
	f.watching()
	job := f.job()
	c := job.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	wantEnv := map[string]string{
		"A": "1", "GANTRY_HP_LEARNING_RATE": "0.001", "GANTRY_HYPERPARAMETERS": `{"learning-rate":"0.001"}`,
		"GANTRY_OUTPUT_URI": "file://" + f.out, "GANTRY_DATASET_URI": "file:///data/fashion/",
	}
	if diff := cmp.Diff(wantEnv, env); diff != "" {
		t.Errorf("container env (-want +got):\n%s", diff)
	}
	if *job.Spec.ActiveDeadlineSeconds != 3600 || job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("deadline/restart policy = %d/%s", *job.Spec.ActiveDeadlineSeconds, job.Spec.Template.Spec.RestartPolicy)
	}
	if a := job.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || *a {
		t.Errorf("training pod mounts a ServiceAccount token (%v): training code must get no API credentials", a)
	}
	f.addPod(corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerName, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}, corev1.PodSpec{})
	f.writeModel(`{"test_accuracy":0.8912,"test_loss":0.31,"epochs":[{"loss":0.5}],"dataset_digest":"sha256:ab"}`)
	f.setJobCondition(batchv1.JobComplete, "", "")
	r := awaitRun(t, ch)
	if r.err != nil {
		t.Fatalf("Run: %v", r.err)
	}
	want := map[string]string{
		"job-name": "run-1-train", "model-uri": "file://" + f.out + "/", "duration-seconds": "42.0",
		"metrics": `{"dataset_digest":"sha256:ab","test_accuracy":0.8912,"test_loss":0.31}`,
	}
	if diff := cmp.Diff(want, r.res.Values()); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if r.res.Reattached || f.creates() != 1 {
		t.Errorf("reattached=%t creates=%d, want a fresh job created once", r.res.Reattached, f.creates())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !strings.Contains(f.logs.String(), "[run-1-train-x7k2p] fake logs") {
		t.Errorf("pod logs were not streamed: %q", f.logs.String())
	}
}

func TestReattachesToRunningJobAndNeverCreatesASecond(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	o := f.opts()
	existing := buildJob(&o)
	if _, err := f.client.BatchV1().Jobs(ns).Create(context.Background(), existing, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.client.ClearActions()
	ch := f.start(context.Background(), o)
	f.watching()
	f.writeModel(`{"test_accuracy":0.9}`)
	f.setJobCondition(batchv1.JobComplete, "", "")
	r := awaitRun(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.res.Reattached || f.creates() != 0 {
		t.Errorf("reattached=%t creates=%d, want re-attach without create", r.res.Reattached, f.creates())
	}
}

func TestReusesSucceededJob(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	o := f.opts()
	done := buildJob(&o)
	done.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	f.client = fake.NewClientset(done)
	apiCalls.Attach(f.client)
	f.writeModel(`{"test_accuracy":0.9}`)
	r := awaitRun(t, f.start(context.Background(), o))
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.res.Reattached || f.creates() != 0 || r.res.Metrics != `{"test_accuracy":0.9}` {
		t.Errorf("got %+v creates=%d", r.res, f.creates())
	}
}

func TestCreateRaceAttaches(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	o := f.opts()
	// The Get says not found, then Create loses the race to another launcher.
	f.client.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		other := buildJob(&o)
		other.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
		if err := f.client.Tracker().Add(other); err != nil {
			t.Error(err)
		}
		return true, nil, apierrors.NewAlreadyExists(schema.GroupResource{Group: "batch", Resource: "jobs"}, o.JobName)
	})
	f.writeModel(`{"a":1}`)
	r := awaitRun(t, f.start(context.Background(), o))
	if r.err != nil || !r.res.Reattached {
		t.Fatalf("err=%v reattached=%t", r.err, r.res.Reattached)
	}
}

func TestExistingJobWithOtherSpecIsBadInput(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	o := f.opts()
	other := o
	other.Image = "registry.local/other:1"
	if _, err := f.client.BatchV1().Jobs(ns).Create(context.Background(), buildJob(&other), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := awaitRun(t, f.start(context.Background(), o))
	if exitcode.Of(r.err) != exitcode.BadInput || !strings.Contains(r.err.Error(), "different spec") {
		t.Errorf("err = %v, want bad input about a different spec", r.err)
	}
}

func TestFailsFastWithReason(t *testing.T) {
	t.Parallel()
	waiting := func(reason, msg string) corev1.PodStatus {
		return corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerName,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}}}
	}
	memSpec := corev1.PodSpec{Containers: []corev1.Container{{Name: ContainerName, Resources: corev1.ResourceRequirements{
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")}}}}}
	for _, tc := range []struct {
		name       string
		pod        *corev1.PodStatus
		spec       corev1.PodSpec
		cond       batchv1.JobConditionType
		condReason string
		want       []string
		deleted    bool
	}{
		{name: "image pull backoff", pod: ptrTo(waiting("ImagePullBackOff", `Back-off pulling image "nope:1"`)), want: []string{"ImagePullBackOff", "nope:1"}, deleted: true},
		{name: "err image pull", pod: ptrTo(waiting("ErrImagePull", "not found")), want: []string{"ErrImagePull"}, deleted: true},
		{name: "config error", pod: ptrTo(waiting("CreateContainerConfigError", `secret "s3" not found`)), want: []string{"CreateContainerConfigError", `secret "s3"`}, deleted: true},
		{name: "oom killed", spec: memSpec, pod: &corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerName,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}}}}}, want: []string{"OOMKilled", "512Mi"}, deleted: true},
		{name: "unschedulable too long", pod: &corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled,
			Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/1 nodes: Insufficient nvidia.com/gpu",
			LastTransitionTime: metav1.Time{Time: time.Now().Add(-10 * time.Minute)}}}}, want: []string{"unschedulable", "nvidia.com/gpu"}, deleted: true},
		{name: "deadline exceeded", cond: batchv1.JobFailed, condReason: "DeadlineExceeded", want: []string{"DeadlineExceeded", "deadline 3600s"}},
		{name: "backoff limit with exit code", cond: batchv1.JobFailed, condReason: "BackoffLimitExceeded",
			pod: &corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerName,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 2, Message: "bad dataset"}}}}},
			want: []string{"BackoffLimitExceeded", "exited with code 2", "bad dataset"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			ch := f.start(context.Background(), f.opts())
			f.watching()
			if tc.pod != nil {
				f.addPod(*tc.pod, tc.spec)
			}
			if tc.cond != "" {
				f.setJobCondition(tc.cond, tc.condReason, "")
			}
			r := awaitRun(t, ch)
			if r.err == nil || exitcode.Of(r.err) != exitcode.Failed {
				t.Fatalf("err = %v (code %d), want a failure (1)", r.err, exitcode.Of(r.err))
			}
			for _, w := range tc.want {
				if !strings.Contains(r.err.Error(), w) {
					t.Errorf("error %q does not mention %q", r.err, w)
				}
			}
			_, err := f.client.BatchV1().Jobs(ns).Get(context.Background(), "run-1-train", metav1.GetOptions{})
			if gone := apierrors.IsNotFound(err); gone != tc.deleted {
				t.Errorf("job deleted = %t, want %t", gone, tc.deleted)
			}
		})
	}
}

func TestUnschedulableWaitsForItsTimeout(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	o := f.opts()
	o.UnschedulableTimeout = 300 * time.Millisecond
	ch := f.start(context.Background(), o)
	f.watching()
	f.addPod(corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
		Reason: corev1.PodReasonUnschedulable, LastTransitionTime: metav1.Now()}}}, corev1.PodSpec{})
	select {
	case r := <-ch:
		t.Fatalf("returned before the unschedulable timeout: %v", r.err)
	case <-time.After(100 * time.Millisecond):
	}
	// No further events arrive: the launcher's own timer must end the wait.
	r := awaitRun(t, ch)
	if r.err == nil || !strings.Contains(r.err.Error(), "unschedulable") {
		t.Fatalf("err = %v, want unschedulable", r.err)
	}
}

func TestCancelDeletesJobOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	for _, del := range []bool{true, false} {
		f := newFixture(t)
		o := f.opts()
		o.DeleteOnCancel = del
		ctx, cancel := context.WithCancel(context.Background())
		ch := f.start(ctx, o)
		f.watching()
		cancel()
		r := awaitRun(t, ch)
		if !errors.Is(r.err, context.Canceled) {
			t.Errorf("delete=%t: err = %v, want context.Canceled", del, r.err)
		}
		_, err := f.client.BatchV1().Jobs(ns).Get(context.Background(), "run-1-train", metav1.GetOptions{})
		if gone := apierrors.IsNotFound(err); gone != del {
			t.Errorf("--delete-on-cancel=%t: job deleted = %t", del, gone)
		}
	}
}

// A killed launcher pod (its run goes on) keeps the Job for the retry; a stopped run deletes it;
// when the run's state cannot be read, the Job is kept.
func TestCancelKeepsJobWhileTheRunGoesOn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		stopping bool
		err      error
		deleted  bool
		exit     int // the retry expression retries exit 3 only
	}{
		{"run stopping", true, nil, true, exitcode.Failed},
		{"run goes on", false, nil, false, exitcode.Transient},
		{"state unknown", false, errors.New("apiserver down"), false, exitcode.Transient},
	} {
		f := newFixture(t)
		o := f.opts()
		o.DeleteOnCancel = true
		ctx, cancel := context.WithCancel(context.Background())
		ch := f.start(ctx, o, WithRunStopping(func(context.Context) (bool, error) { return tc.stopping, tc.err }))
		f.watching()
		cancel()
		r := awaitRun(t, ch)
		_, err := f.client.BatchV1().Jobs(ns).Get(context.Background(), "run-1-train", metav1.GetOptions{})
		if gone := apierrors.IsNotFound(err); gone != tc.deleted {
			t.Errorf("%s: job deleted = %t, want %t", tc.name, gone, tc.deleted)
		}
		if got := exitcode.Of(r.err); got != tc.exit || !errors.Is(r.err, context.Canceled) {
			t.Errorf("%s: exit %d (%v), want %d wrapping context.Canceled", tc.name, got, r.err, tc.exit)
		}
	}
}

func TestRunStopping(t *testing.T) {
	t.Parallel()
	wf := func(name string, spec, status map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
			"metadata": map[string]any{"name": name, "namespace": ns}, "spec": spec, "status": status}}
	}
	pr := func(name, specStatus, succeeded string) *unstructured.Unstructured {
		spec := map[string]any{}
		if specStatus != "" {
			spec["status"] = specStatus
		}
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
			"metadata": map[string]any{"name": name, "namespace": ns}, "spec": spec,
			"status": map[string]any{"conditions": []any{map[string]any{"type": "Succeeded", "status": succeeded}}}}}
	}
	scheme := runtime.NewScheme()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{WorkflowsResource: "WorkflowList", PipelineRunsResource: "PipelineRunList"},
		wf("running", map[string]any{}, map[string]any{"phase": "Running"}),
		wf("terminated", map[string]any{"shutdown": "Terminate"}, map[string]any{"phase": "Running"}),
		wf("stopped", map[string]any{"shutdown": "Stop"}, map[string]any{"phase": "Running"}),
		wf("failed", map[string]any{}, map[string]any{"phase": "Failed"}),
		// Tekton: a PipelineRun of the same name as the run.
		pr("tekton-running", "", "Unknown"), pr("tekton-cancelled", "Cancelled", "Unknown"),
		pr("tekton-stopping", "StoppedRunFinally", "Unknown"), pr("tekton-failed", "", "False"))
	apiCalls.Attach(client)
	for name, want := range map[string]bool{"running": false, "terminated": true, "stopped": true, "failed": true, "gone": true,
		"tekton-running": false, "tekton-cancelled": true, "tekton-stopping": true, "tekton-failed": true} {
		got, err := RunStopping(client, ns, name)(context.Background())
		if err != nil || got != want {
			t.Errorf("%s: stopping = %t (%v), want %t", name, got, err, want)
		}
	}
}

func TestSucceededWithoutModelFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		write   func(f *fixture)
		wantErr string
	}{
		{"nothing written", func(*fixture) {}, "model files: false, metrics.json: false"},
		{"no metrics", func(f *fixture) { f.writeModel("") }, "metrics.json: false"},
		{"metrics not json", func(f *fixture) { f.writeModel("accuracy=0.9") }, "not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			ch := f.start(context.Background(), f.opts())
			f.watching()
			tc.write(f)
			f.setJobCondition(batchv1.JobComplete, "", "")
			r := awaitRun(t, ch)
			if exitcode.Of(r.err) != exitcode.Failed || !strings.Contains(r.err.Error(), tc.wantErr) {
				t.Errorf("err = %v (code %d), want exit 1 mentioning %q", r.err, exitcode.Of(r.err), tc.wantErr)
			}
		})
	}
}

func TestBadOptionsMakeNoAPICall(t *testing.T) {
	t.Parallel()
	for name, mutate := range map[string]func(*Options){
		"no image":       func(o *Options) { o.Image = "" },
		"bad job name":   func(o *Options) { o.JobName = "Run_1" },
		"bad cpu":        func(o *Options) { o.CPU = "lots" },
		"bad output uri": func(o *Options) { o.OutputURI = "gs://b/x" },
		"no output":      func(o *Options) { o.OutputURI = "" },
		"bad env":        func(o *Options) { o.Env = [][2]string{{"1A", "x"}} },
		"zero timeout":   func(o *Options) { o.Timeout = 0 },
		"bad label":      func(o *Options) { o.Labels = map[string]string{"a": "b c"} },
	} {
		f := newFixture(t)
		o := f.opts()
		mutate(&o)
		r := awaitRun(t, f.start(context.Background(), o))
		if exitcode.Of(r.err) != exitcode.BadInput {
			t.Errorf("%s: err = %v, want bad input", name, r.err)
		}
		if n := len(f.client.Actions()); n != 0 {
			t.Errorf("%s: %d API calls made", name, n)
		}
	}
}

func TestTransientAPIErrorsExit3(t *testing.T) {
	t.Parallel()
	for _, err := range []error{
		apierrors.NewServiceUnavailable("etcd leader changed"),
		apierrors.NewTooManyRequests("slow down", 1),
		apierrors.NewInternalError(errors.New("boom")),
	} {
		f := newFixture(t)
		f.client.PrependReactor("create", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, err })
		r := awaitRun(t, f.start(context.Background(), f.opts()))
		if exitcode.Of(r.err) != exitcode.Transient {
			t.Errorf("%v: got %v (code %d), want 3", err, r.err, exitcode.Of(r.err))
		}
	}
	f := newFixture(t)
	f.client.PrependReactor("create", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "jobs"}, "x", errors.New("rbac"))
	})
	r := awaitRun(t, f.start(context.Background(), f.opts()))
	if exitcode.Of(r.err) != exitcode.Failed {
		t.Errorf("forbidden: code %d, want 1", exitcode.Of(r.err))
	}
}

func TestJobNameFor(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"ml-pipeline-x7k2p": "ml-pipeline-x7k2p-train",
		"My_Run.1":          "my-run-1-train",
		"":                  "",
	} {
		if got := JobNameFor(in); got != want {
			t.Errorf("JobNameFor(%q) = %q, want %q", in, got, want)
		}
	}
	long := JobNameFor(strings.Repeat("a", 80))
	if len(long) > 63 || long != JobNameFor(strings.Repeat("a", 80)) || long == JobNameFor(strings.Repeat("a", 81)) {
		t.Errorf("long names must be short, stable and distinct: %q", long)
	}
}

func TestCompactMetricsFitsResult(t *testing.T) {
	t.Parallel()
	big := `{"test_accuracy":0.9,"history":[1,2,3],"note":"` + strings.Repeat("n", 200) + `"`
	for i := 0; i < 80; i++ {
		big += `,"class_` + strings.Repeat("x", 3) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + `_recall":0.12345678`
	}
	big += "}"
	got, err := CompactMetrics([]byte(big))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) > 1024 || !strings.Contains(got, `"test_accuracy":0.9`) || strings.Contains(got, "history") {
		t.Errorf("compact metrics = %d bytes: %s", len(got), got)
	}
}

// A retried step (argo retry, the template's retry) finds the Job of the failed attempt: it
// replaces that Job — only that one, by UID — and trains again, instead of failing at once.
func TestFailedJobIsReplacedByTheNextAttempt(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	o := f.opts()
	failed := buildJob(&o)
	failed.UID = "uid-attempt-1"
	failed.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "PodFailurePolicy"}}
	if err := f.client.Tracker().Add(failed); err != nil {
		t.Fatal(err)
	}
	var deletedWith *metav1.DeleteOptions
	f.client.PrependReactor("delete", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		opts := a.(k8stesting.DeleteActionImpl).DeleteOptions
		deletedWith = &opts
		return false, nil, nil
	})
	ch := f.start(context.Background(), o)
	f.watching()
	job := f.job()
	if job.UID == "uid-attempt-1" || job.Annotations[AnnotationAttempt] != "2" || job.Annotations[AnnotationReplaces] != "uid-attempt-1" || jobFailedFor(job) {
		t.Fatalf("after the retry: job uid %s annotations %v conditions %v; want a fresh attempt 2", job.UID, job.Annotations, job.Status.Conditions)
	}
	if deletedWith == nil || deletedWith.Preconditions == nil || *deletedWith.Preconditions.UID != "uid-attempt-1" {
		t.Errorf("the failed Job was deleted with %+v, want a UID precondition", deletedWith)
	}
	f.writeModel(`{"test_accuracy":0.9}`)
	f.setJobCondition(batchv1.JobComplete, "", "")
	if r := awaitRun(t, ch); r.err != nil || r.res.Reattached {
		t.Errorf("retry: %+v %v, want a fresh successful training", r.res, r.err)
	}
}

// Disruptions (eviction, drain, preemption) do not count against the backoff; a trainer's
// transient error (exit 3) is retried by the Job within its backoff limit; a trainer that exits
// otherwise non-zero fails the Job at once.
func TestJobSurvivesDisruptionsAndFailsFastOnItsOwnErrors(t *testing.T) {
	t.Parallel()
	o := Options{Namespace: ns, JobName: "run-1-train", Image: "registry.local/trainer@sha256:abc", Timeout: time.Hour}
	p := buildJob(&o).Spec.PodFailurePolicy
	if p == nil || len(p.Rules) != 3 {
		t.Fatalf("podFailurePolicy %+v", p)
	}
	ignore, count, fail := p.Rules[0], p.Rules[1], p.Rules[2]
	if count.Action != batchv1.PodFailurePolicyActionCount || count.OnExitCodes == nil || *count.OnExitCodes.ContainerName != ContainerName ||
		count.OnExitCodes.Operator != batchv1.PodFailurePolicyOnExitCodesOpIn || len(count.OnExitCodes.Values) != 1 || count.OnExitCodes.Values[0] != exitcode.Transient {
		t.Errorf("second rule %+v: want Count (retry within the backoff limit) on the trainer's exit 3", count)
	}
	if ignore.Action != batchv1.PodFailurePolicyActionIgnore || len(ignore.OnPodConditions) != 1 || ignore.OnPodConditions[0].Type != corev1.DisruptionTarget {
		t.Errorf("first rule %+v: want Ignore on DisruptionTarget", ignore)
	}
	if fail.Action != batchv1.PodFailurePolicyActionFailJob || fail.OnExitCodes == nil || *fail.OnExitCodes.ContainerName != ContainerName ||
		fail.OnExitCodes.Operator != batchv1.PodFailurePolicyOnExitCodesOpNotIn {
		t.Errorf("third rule %+v: want FailJob on the trainer's other non-zero exits", fail)
	}
}

// A Job that ran out of its retries on a trainer's transient error (exit 3) ends the launcher
// with exit 3 too, so the template's retry replaces the Job (it was exit 1: never retried).
func TestTransientTrainerFailureIsRetryable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ch := f.start(context.Background(), f.opts())
	f.watching()
	f.addPod(corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerName,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: exitcode.Transient, Message: "s3: connection refused"}}}}}, corev1.PodSpec{})
	f.setJobCondition(batchv1.JobFailed, "BackoffLimitExceeded", "")
	r := awaitRun(t, ch)
	if exitcode.Of(r.err) != exitcode.Transient || !strings.Contains(r.err.Error(), "exited with code 3") {
		t.Errorf("err = %v (exit %d), want a transient failure (3) naming the trainer's exit", r.err, exitcode.Of(r.err))
	}
}

// The run owns its training Job: deleting the Workflow garbage-collects the Job (and, through
// the Job, its credentials Secret). Outside Argo there is no owner.
func TestTheRunOwnsItsJob(t *testing.T) {
	t.Parallel()
	run := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
		"metadata": map[string]any{"name": "run-1", "namespace": ns, "uid": "wf-uid-1"}}}
	tektonRun := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
		"metadata": map[string]any{"name": "run-2", "namespace": ns, "uid": "pr-uid-2"}}}
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{WorkflowsResource: "WorkflowList", PipelineRunsResource: "PipelineRunList"}, run, tektonRun)
	apiCalls.Attach(client)
	for name, want := range map[string]*metav1.OwnerReference{
		"run-1":     {APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: "run-1", UID: "wf-uid-1"},
		"run-2":     {APIVersion: "tekton.dev/v1", Kind: "PipelineRun", Name: "run-2", UID: "pr-uid-2"},
		"not-a-run": nil,
	} {
		f := newFixture(t)
		ctx, cancel := context.WithCancel(context.Background())
		ch := f.start(ctx, f.opts(), WithOwner(RunOwner(client, ns, name)))
		f.watching()
		got := f.job().OwnerReferences
		cancel()
		<-ch
		if want == nil && len(got) != 0 || want != nil && (len(got) != 1 || got[0] != *want) {
			t.Errorf("run %s: Job owners %+v, want %+v", name, got, want)
		}
	}
	// A ServiceAccount that may not read Workflows still trains: the Job just has no owner.
	denied := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{WorkflowsResource: "WorkflowList", PipelineRunsResource: "PipelineRunList"}, run)
	denied.PrependReactor("get", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(a.GetResource().GroupResource(), "run-1", errors.New("no"))
	})
	if ref, err := RunOwner(denied, ns, "run-1")(context.Background()); ref != nil || err != nil {
		t.Errorf("forbidden to read the Workflow: owner %+v, err %v; want none and no error", ref, err)
	}
}
