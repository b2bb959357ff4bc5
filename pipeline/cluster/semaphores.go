package cluster

import (
	apiv1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-ml/gantry/pipeline"
)

// Semaphores is the ConfigMap the installer creates once per cluster (templates/cluster/).
func Semaphores() *apiv1.ConfigMap {
	return &apiv1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: pipeline.SemaphoresConfigMap, Namespace: pipeline.SemaphoresNamespace, Labels: map[string]string{"app.kubernetes.io/part-of": "gantry"},
			Annotations: map[string]string{"gantry.dev/description": "slots of gantry's CPU-heavy steps across the cluster (Argo synchronization.semaphores): train = trainings, evaluate = canaries and smoke tests"}},
		Data: pipeline.DefaultSemaphores}
}
