package templategen

import (
	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TrainImageRepository is the repository whose pushes trigger the pipeline.
const TrainImageRepository = "gantry/fashion-trainer"

// EventBinding submits ml-pipeline when the registry reports a push of the
// training image (Docker distribution notification format), with the digest.
func EventBinding() *wfv1.WorkflowEventBinding {
	ev := "payload.events[0]"
	return &wfv1.WorkflowEventBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "argoproj.io/v1alpha1", Kind: "WorkflowEventBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: "train-image-pushed"},
		Spec: wfv1.WorkflowEventBindingSpec{
			Event: wfv1.Event{Selector: `discriminator == "registry" && ` + ev + `.action == "push" && ` + ev + `.target.repository == "` + TrainImageRepository + `" && ` + ev + `.target.digest != ""`},
			Submit: &wfv1.Submit{
				WorkflowTemplateRef: wfv1.WorkflowTemplateRef{Name: "ml-pipeline"},
				ObjectMeta:          metav1.ObjectMeta{GenerateName: "ml-pipeline-"},
				Arguments: &wfv1.Arguments{Parameters: []wfv1.Parameter{{Name: "train-image", ValueFrom: &wfv1.ValueFrom{
					Event: ev + `.request.host + "/" + ` + ev + `.target.repository + "@" + ` + ev + `.target.digest`}}}},
			},
		},
	}
}
