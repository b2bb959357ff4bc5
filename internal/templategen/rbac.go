package templategen

import (
	apiv1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RBACRule is one row of the permission matrix, with who needs it.
type RBACRule struct {
	Rule rbacv1.PolicyRule
	Who  string
}

// RBACMatrix is exactly what the tasks and the Argo executor use.
func RBACMatrix() []RBACRule {
	r := func(groups, resources, verbs []string, who string) RBACRule {
		return RBACRule{Rule: rbacv1.PolicyRule{APIGroups: groups, Resources: resources, Verbs: verbs}, Who: who}
	}
	return []RBACRule{
		r([]string{"batch"}, []string{"jobs"}, []string{"get", "list", "watch", "create", "delete"}, "train-launcher: create/re-attach/watch the training Job, delete it on cancel"),
		r([]string{""}, []string{"pods"}, []string{"get", "list", "watch"}, "train-launcher, model-publisher deploy: pod states for fail-fast reasons"),
		r([]string{""}, []string{"pods/log"}, []string{"get"}, "train-launcher: stream training logs; deploy: last lines of a crashing server"),
		r([]string{"apps"}, []string{"deployments"}, []string{"get", "list", "watch", "create", "patch", "delete"}, "model-publisher deploy/rollback/teardown (server-side apply = patch)"),
		r([]string{""}, []string{"services"}, []string{"get", "create", "patch", "delete"}, "model-publisher deploy/teardown"),
		r([]string{""}, []string{"configmaps"}, []string{"get", "list", "watch", "create"}, "approver wait/approve --tekton (decision ConfigMaps)"),
		r([]string{"argoproj.io"}, []string{"workflows"}, []string{"get", "list", "update", "patch"}, "approver request (annotate), verify (read), approve/reject (update)"),
		r([]string{"argoproj.io"}, []string{"workflowtaskresults"}, []string{"create", "patch"}, "Argo executor: report step outputs"),
	}
}

// RBAC is the ServiceAccount, Role and RoleBinding the pipeline runs as.
func RBAC() []any {
	role := &rbacv1.Role{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"}, ObjectMeta: metav1.ObjectMeta{Name: ServiceAccount}}
	for _, m := range RBACMatrix() {
		role.Rules = append(role.Rules, m.Rule)
	}
	return []any{
		&apiv1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: metav1.ObjectMeta{Name: ServiceAccount}},
		role,
		&rbacv1.RoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"}, ObjectMeta: metav1.ObjectMeta{Name: ServiceAccount},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: ServiceAccount},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: ServiceAccount}}},
	}
}
