package argo

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	"github.com/argoproj/argo-workflows/v3/server/auth"
	"github.com/argoproj/argo-workflows/v3/server/auth/types"
	"github.com/argoproj/argo-workflows/v3/server/event/dispatch"
	"github.com/argoproj/argo-workflows/v3/util/instanceid"
	"github.com/go-jose/go-jose/v3/jwt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
)

// event is one event of a distribution registry notification envelope (docs/notifications.md of
// distribution/distribution: action, target.{mediaType,digest,repository,tag}, request.host).
func event(action, mediaType, repository, tag, digest string) map[string]any {
	return map[string]any{"id": "e-" + digest, "timestamp": "2026-11-27T10:00:00Z", "action": action,
		"target": map[string]any{"mediaType": mediaType, "size": 1234, "digest": digest, "length": 1234, "repository": repository,
			"url": "http://127.0.0.1:5000/v2/" + repository + "/manifests/" + digest, "tag": tag},
		"request": map[string]any{"id": "r1", "addr": "10.244.0.7:33120", "host": "127.0.0.1:5000", "method": "PUT", "useragent": "crane"},
		"actor":   map[string]any{}, "source": map[string]any{"addr": "gantry-node:5000", "instanceID": "i1"}}
}

const (
	oci    = "application/vnd.oci.image.manifest.v1+json"
	index  = "application/vnd.oci.image.index.v1+json"
	docker = "application/vnd.docker.distribution.manifest.v2+json"
	blob   = "application/octet-stream"
	dA     = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	dB     = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// The binding's selector and parameter expression, evaluated by Argo v3's own event dispatch
// (server/event/dispatch, what the Argo Server runs on POST /api/v1/events/<ns>/registry) on
// registry notifications: only tagged manifest pushes to the training repository submit a
// gantry-trigger run, and that run gets every such digest of the envelope.
func TestPushBindingOnRegistryNotifications(t *testing.T) {
	repo := TrainImageRepository
	for _, tc := range []struct {
		name   string
		events []map[string]any
		want   []string // digests of the one gantry-trigger run; nil: no run
	}{
		{"an OCI manifest pushed by tag", []map[string]any{event("push", oci, repo, "v2", dA)}, []string{dA}},
		{"a Docker manifest", []map[string]any{event("push", docker, repo, "latest", dA)}, []string{dA}},
		{"a multi-platform push: the index by tag, its children by digest", []map[string]any{
			event("push", oci, repo, "", dB), event("push", index, repo, "v3", dA)}, []string{dA}},
		{"a blob push", []map[string]any{event("push", blob, repo, "", dA)}, nil},
		{"another repository", []map[string]any{event("push", oci, "team/other", "v1", dA)}, nil},
		{"a repository whose name contains the training one", []map[string]any{event("push", oci, "x/"+repo, "v1", dA)}, nil},
		{"a pull", []map[string]any{event("pull", oci, repo, "v1", dA)}, nil},
		{"a batch: two manifests and a blob", []map[string]any{
			event("push", blob, repo, "", "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"),
			event("push", oci, repo, "v4", dA), event("push", oci, repo, "v5", dB)}, []string{dA, dB}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var binding *wfv1.WorkflowEventBinding
			var tmpl *wfv1.WorkflowTemplate
			for _, o := range PushTrigger(repo) {
				switch v := o.(type) {
				case *wfv1.WorkflowEventBinding:
					binding = v
				case *wfv1.WorkflowTemplate:
					tmpl = v
				}
			}
			binding.Namespace, tmpl.Namespace = "ml", "ml"
			client := fake.NewSimpleClientset(tmpl)
			ctx := context.WithValue(context.WithValue(context.Background(), auth.WfKey, client), auth.ClaimsKey,
				&types.Claims{Claims: jwt.Claims{Subject: "system:serviceaccount:ml:" + NotifierAccount}})
			body, _ := json.Marshal(map[string]any{"events": tc.events})
			payload := &wfv1.Item{Value: body}
			op, err := dispatch.NewOperation(ctx, instanceid.NewService(""), record.NewFakeRecorder(10), []wfv1.WorkflowEventBinding{*binding}, "ml", EventDiscriminator, payload)
			if err != nil {
				t.Fatal(err)
			}
			if err := op.Dispatch(ctx); err != nil {
				t.Fatalf("dispatch: %v", err)
			}
			runs, _ := client.ArgoprojV1alpha1().Workflows("ml").List(ctx, metav1.ListOptions{})
			if tc.want == nil {
				if len(runs.Items) != 0 {
					t.Errorf("submitted %d runs, want none", len(runs.Items))
				}
				return
			}
			if len(runs.Items) != 1 {
				t.Fatalf("submitted %d runs, want one", len(runs.Items))
			}
			w := runs.Items[0]
			if w.Spec.WorkflowTemplateRef == nil || w.Spec.WorkflowTemplateRef.Name != TriggerTemplate || !strings.HasPrefix(w.Name, TriggerTemplate+"-") {
				t.Errorf("run %s: %+v", w.Name, w.Spec.WorkflowTemplateRef)
			}
			var got []string
			p := w.Spec.Arguments.GetParameterByName("digests")
			if p == nil || json.Unmarshal([]byte(p.Value.String()), &got) != nil || strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("digests parameter %v, want %v", p, tc.want)
			}
		})
	}
}
