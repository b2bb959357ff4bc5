package train

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), "\n")
}

// A log stream that keeps breaking while the container runs (an apiserver or kubelet that cuts
// long requests) is followed for the pod's whole life: each stream that delivered lines resets
// the reconnect budget. It once gave up for good after four reconnects.
func TestLogStreamThatWorkedIsFollowedPastTheReconnectBudget(t *testing.T) {
	t.Parallel()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "job-abc", Namespace: "ml"},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerName, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}}
	c := fake.NewClientset(pod) // the fake's log stream is one line, then EOF: a stream that breaks at once
	apiCalls.Attach(c)
	out := &lockedBuffer{}
	f := newLogFollower(c, "ml", out, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.stream(ctx, pod.Name); close(done) }()
	want := 3 * maxLogFailures
	deadline := time.After(30 * time.Second)
	for out.lines() < want {
		select {
		case <-done:
			t.Fatalf("stopped following after %d reconnects of a running pod", out.lines())
		case <-deadline:
			t.Fatalf("only %d lines in 30s", out.lines())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("stream did not stop on cancel")
	}
}
