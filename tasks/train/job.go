package train

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Labels and annotations gantry puts on training Jobs.
const (
	LabelJob       = "gantry.dev/job"
	LabelTask      = "gantry.dev/task"
	AnnotationSpec = "gantry.dev/spec-hash"
	// AnnotationAttempt counts the Jobs this name has had: a failed one is replaced on a retry.
	AnnotationAttempt = "gantry.dev/attempt"
	// AnnotationReplaces is the UID of the failed Job this one replaced.
	AnnotationReplaces = "gantry.dev/replaces"
	ContainerName      = "trainer"
)

// buildJob renders the Job for o. The spec hash annotation lets a re-attaching
// launcher tell "my Job" from "another Job that happens to have this name".
func buildJob(o *Options) *batchv1.Job {
	labels := map[string]string{LabelJob: o.JobName, LabelTask: "train", "app.kubernetes.io/managed-by": "gantry"}
	for k, v := range o.Labels {
		labels[k] = v
	}
	env := []corev1.EnvVar{}
	for _, kv := range o.Env {
		env = append(env, corev1.EnvVar{Name: kv[0], Value: kv[1]})
	}
	hp := map[string]string{}
	for _, kv := range o.Hyperparameters {
		env = append(env, corev1.EnvVar{Name: "GANTRY_HP_" + strings.ToUpper(strings.ReplaceAll(kv[0], "-", "_")), Value: kv[1]})
		hp[kv[0]] = kv[1]
	}
	hpJSON, _ := json.Marshal(hp)
	env = append(env,
		corev1.EnvVar{Name: "GANTRY_HYPERPARAMETERS", Value: string(hpJSON)},
		corev1.EnvVar{Name: "GANTRY_OUTPUT_URI", Value: o.OutputURI},
	)
	if o.DatasetURI != "" {
		env = append(env, corev1.EnvVar{Name: "GANTRY_DATASET_URI", Value: o.DatasetURI})
	}
	if o.S3Endpoint != "" {
		env = append(env, corev1.EnvVar{Name: "GANTRY_S3_ENDPOINT", Value: o.S3Endpoint})
	}
	res := corev1.ResourceRequirements{}
	if o.CPU != "" || o.Memory != "" || o.GPUs > 0 {
		res.Requests, res.Limits = corev1.ResourceList{}, corev1.ResourceList{}
	}
	if o.CPU != "" {
		res.Requests[corev1.ResourceCPU] = resource.MustParse(o.CPU)
	}
	if o.Memory != "" {
		res.Requests[corev1.ResourceMemory] = resource.MustParse(o.Memory)
		res.Limits[corev1.ResourceMemory] = resource.MustParse(o.Memory)
	}
	if o.GPUs > 0 {
		res.Limits["nvidia.com/gpu"] = *resource.NewQuantity(int64(o.GPUs), resource.DecimalSI)
	}
	var envFrom []corev1.EnvFromSource
	if o.EnvFromSecret != "" {
		envFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: o.EnvFromSecret}}}}
	}
	spec := batchv1.JobSpec{
		BackoffLimit: ptr.To(int32(o.BackoffLimit)),
		// A pod lost to a disruption (eviction, drain, preemption: DisruptionTarget) is replaced
		// without counting against the backoff limit; a trainer that exits 3 (a transient error,
		// the house exit code: its store was unreachable) is retried by the Job within its
		// backoff limit; a trainer that exits otherwise non-zero fails the Job at once, whatever
		// the limit (its error is not going to go away by itself).
		PodFailurePolicy: &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
			{Action: batchv1.PodFailurePolicyActionIgnore, OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{
				{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}}},
			{Action: batchv1.PodFailurePolicyActionCount, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
				ContainerName: ptr.To(ContainerName), Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{exitcode.Transient}}},
			{Action: batchv1.PodFailurePolicyActionFailJob, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
				ContainerName: ptr.To(ContainerName), Operator: batchv1.PodFailurePolicyOnExitCodesOpNotIn, Values: []int32{0}}},
		}},
		ActiveDeadlineSeconds: ptr.To(int64(o.Timeout.Seconds())),
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{
				RestartPolicy:      corev1.RestartPolicyNever,
				ServiceAccountName: o.ServiceAccount,
				// Training code never needs the Kubernetes API: no token to steal or misuse.
				AutomountServiceAccountToken: ptr.To(false),
				Containers: []corev1.Container{{
					Name: ContainerName, Image: o.Image, Command: o.Command, Args: o.Args,
					Env: env, EnvFrom: envFrom, Resources: res,
					SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false)},
				}},
			},
		},
	}
	b, _ := json.Marshal(spec)
	sum := sha256.Sum256(b)
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name: o.JobName, Namespace: o.Namespace, Labels: labels,
			Annotations: map[string]string{AnnotationSpec: hex.EncodeToString(sum[:16])},
		},
		Spec: spec,
	}
	if o.Owner != nil {
		job.OwnerReferences = []metav1.OwnerReference{*o.Owner}
	}
	return job
}
