package train

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// logFollower streams each training pod's container log once it starts, and
// reconnects (from the last timestamp seen) when a stream breaks while the
// container still runs.
type logFollower struct {
	client kubernetes.Interface
	ns     string
	out    io.Writer
	log    *slog.Logger
	mu     sync.Mutex
	pods   map[string]bool
	wg     sync.WaitGroup
	cancel []context.CancelFunc
	outMu  sync.Mutex
}

func newLogFollower(c kubernetes.Interface, ns string, out io.Writer, log *slog.Logger) *logFollower {
	return &logFollower{client: c, ns: ns, out: out, log: log, pods: map[string]bool{}}
}

func started(p *corev1.Pod) bool {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == ContainerName && (cs.State.Running != nil || cs.State.Terminated != nil) {
			return true
		}
	}
	return false
}

func (f *logFollower) follow(ctx context.Context, p *corev1.Pod) {
	if !started(p) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pods[p.Name] {
		return
	}
	f.pods[p.Name] = true
	ctx, cancel := context.WithCancel(ctx)
	f.cancel = append(f.cancel, cancel)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.stream(ctx, p.Name)
	}()
}

// maxLogFailures bounds reconnects of a pod's log stream in a row without a line between them.
const maxLogFailures = 8

func (f *logFollower) stream(ctx context.Context, pod string) {
	var since time.Time
	seenAtSince := 0
	// Up to maxLogFailures reconnects in a row without a line in between; a stream that delivered
	// lines resets the count and the backoff, so a pod's logs are followed for its whole life.
	initial := wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: maxLogFailures, Cap: 5 * time.Second}
	backoff := initial
	failures := 0
	for {
		opts := &corev1.PodLogOptions{Container: ContainerName, Follow: true, Timestamps: true}
		if !since.IsZero() {
			opts.SinceTime = &metav1.Time{Time: since}
		}
		rc, err := f.client.CoreV1().Pods(f.ns).GetLogs(pod, opts).Stream(ctx)
		delivered := false
		if err == nil {
			skip := seenAtSince
			sc := bufio.NewScanner(rc)
			sc.Buffer(make([]byte, 64*1024), 1024*1024)
			for sc.Scan() {
				ts, line := splitTimestamp(sc.Text())
				if !ts.IsZero() && !since.IsZero() && ts.Before(since) {
					continue
				}
				if !ts.IsZero() && ts.Equal(since) && skip > 0 {
					skip--
					continue
				}
				if !ts.IsZero() {
					if ts.Equal(since) {
						seenAtSince++
					} else {
						since, seenAtSince = ts, 1
					}
				}
				f.outMu.Lock()
				fmt.Fprintf(f.out, "[%s] %s\n", pod, line)
				f.outMu.Unlock()
				delivered = true
			}
			rc.Close()
		}
		if ctx.Err() != nil || f.terminated(ctx, pod) {
			return
		}
		if delivered {
			backoff, failures = initial, 0
		}
		if failures++; failures > maxLogFailures {
			f.log.Warn("giving up following pod logs", "pod", pod, "error", err)
			return
		}
		f.log.Debug("log stream ended, reconnecting", "pod", pod, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff.Step()):
		}
	}
}

func (f *logFollower) terminated(ctx context.Context, pod string) bool {
	p, err := f.client.CoreV1().Pods(f.ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return true
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == ContainerName {
			return cs.State.Terminated != nil
		}
	}
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// splitTimestamp splits the RFC3339Nano prefix kubelet adds with Timestamps.
func splitTimestamp(s string) (time.Time, string) {
	head, rest, ok := strings.Cut(s, " ")
	if !ok {
		return time.Time{}, s
	}
	ts, err := time.Parse(time.RFC3339Nano, head)
	if err != nil {
		return time.Time{}, s
	}
	return ts, rest
}

// drain waits up to d for the streams to reach their end, then stops them.
func (f *logFollower) drain(d time.Duration) {
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
	f.stop()
}

func (f *logFollower) stop() {
	f.mu.Lock()
	for _, c := range f.cancel {
		c()
	}
	f.mu.Unlock()
	f.wg.Wait()
}
