package train

import (
	"fmt"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// verdict is what the current state of a Job and its pods means.
type verdict struct {
	done      bool
	succeeded bool
	reason    string    // why it failed, for people
	transient bool      // it failed on a trainer's transient error (exit 3) after the Job's own retries
	recheckAt time.Time // look again then even if nothing changes (unschedulable clock)
}

// fatalWaiting are container waiting reasons that never heal on their own.
var fatalWaiting = map[string]bool{
	"ImagePullBackOff": true, "ErrImagePull": true, "InvalidImageName": true,
	"CreateContainerConfigError": true, "CreateContainerError": true, "ErrImageNeverPull": true,
}

// judge decides from the Job and its pods whether the run is over.
func judge(job *batchv1.Job, pods []*corev1.Pod, now time.Time, unschedulable time.Duration) verdict {
	if job == nil {
		return verdict{}
	}
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return verdict{done: true, succeeded: true}
		case batchv1.JobFailed, batchv1.JobFailureTarget:
			reason := fmt.Sprintf("job %s failed: %s", job.Name, nonEmpty(c.Reason, "Failed"))
			if c.Message != "" {
				reason += ": " + c.Message
			}
			if c.Reason == "DeadlineExceeded" {
				reason += fmt.Sprintf(" (deadline %ds)", deref(job.Spec.ActiveDeadlineSeconds))
			}
			why, code := podFailure(pods)
			if why != "" {
				reason += "; " + why
			}
			return verdict{done: true, reason: reason, transient: code == exitcode.Transient}
		}
	}
	var v verdict
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && fatalWaiting[w.Reason] {
				return verdict{done: true, reason: fmt.Sprintf("pod %s: container %s: %s: %s", p.Name, cs.Name, w.Reason, w.Message)}
			}
			if t := cs.State.Terminated; t != nil && t.Reason == "OOMKilled" {
				return verdict{done: true, reason: fmt.Sprintf("pod %s: container %s was OOMKilled (memory limit %s)", p.Name, cs.Name, memLimit(p, cs.Name))}
			}
		}
		for _, c := range p.Status.Conditions {
			if c.Type != corev1.PodScheduled || c.Status != corev1.ConditionFalse || c.Reason != corev1.PodReasonUnschedulable {
				continue
			}
			since := c.LastTransitionTime.Time
			if since.IsZero() {
				since = p.CreationTimestamp.Time
			}
			deadline := since.Add(unschedulable)
			if !now.Before(deadline) {
				return verdict{done: true, reason: fmt.Sprintf("pod %s unschedulable for %s: %s", p.Name, unschedulable, c.Message)}
			}
			if v.recheckAt.IsZero() || deadline.Before(v.recheckAt) {
				v.recheckAt = deadline
			}
		}
	}
	return v
}

// podFailure explains the most recent terminated trainer container, with its exit code.
func podFailure(pods []*corev1.Pod) (string, int32) {
	var latest *corev1.ContainerStateTerminated
	var name string
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil && t.ExitCode != 0 && (latest == nil || t.FinishedAt.After(latest.FinishedAt.Time)) {
				latest, name = t, p.Name
			}
		}
	}
	if latest == nil {
		return "", 0
	}
	s := fmt.Sprintf("pod %s exited with code %d (%s)", name, latest.ExitCode, latest.Reason)
	if latest.Message != "" {
		s += ": " + latest.Message
	}
	return s, latest.ExitCode
}

func memLimit(p *corev1.Pod, container string) string {
	for _, c := range p.Spec.Containers {
		if c.Name == container {
			if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
				return q.String()
			}
		}
	}
	return "none"
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}
