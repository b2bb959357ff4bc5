package cluster

import (
	apiv1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gantry-ml/gantry/internal/rbac"
)

// ApproverRole is the Role an admin binds to the people who may approve runs in a namespace;
// OperatorRole to those who may argo retry them (the admission policy's operate verb).
const (
	ApproverRole = "gantry-approver"
	OperatorRole = "gantry-operator"
)

func policyRules(rules []rbac.Rule) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, r := range rules {
		out = append(out, rbacv1.PolicyRule{APIGroups: []string{r.Group}, Resources: r.Resources, Verbs: r.Verbs})
	}
	return out
}

// AccountRules are what account a may do: its rules, and the executor's when Argo runs it.
func AccountRules(a rbac.Account) []rbac.Rule {
	if a.Executor {
		return append(append([]rbac.Rule{}, a.Rules...), rbac.ExecutorRule)
	}
	return a.Rules
}

// RBAC is one ServiceAccount per task template (with a Role and RoleBinding holding exactly what
// its code calls, plus the executor's workflowtaskresults), the token-less accounts of the
// training Job and the model servers, and the gantry-approver Role for people.
func RBAC() []any {
	var out []any
	tm := func(kind, version string) metav1.TypeMeta { return metav1.TypeMeta{APIVersion: version, Kind: kind} }
	for _, a := range rbac.Accounts() {
		sa := &apiv1.ServiceAccount{TypeMeta: tm("ServiceAccount", "v1"), ObjectMeta: metav1.ObjectMeta{Name: a.Name,
			Annotations: map[string]string{"gantry.dev/purpose": a.Why}}}
		rules := AccountRules(a)
		if len(rules) == 0 {
			// Pods gantry creates (training, model servers) never talk to the API: no token at all.
			sa.AutomountServiceAccountToken = ptr.To(false)
		}
		out = append(out, sa)
		if len(rules) == 0 {
			continue
		}
		out = append(out,
			&rbacv1.Role{TypeMeta: tm("Role", "rbac.authorization.k8s.io/v1"), ObjectMeta: metav1.ObjectMeta{Name: a.Name}, Rules: policyRules(rules)},
			&rbacv1.RoleBinding{TypeMeta: tm("RoleBinding", "rbac.authorization.k8s.io/v1"), ObjectMeta: metav1.ObjectMeta{Name: a.Name},
				RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: a.Name},
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: a.Name}}})
	}
	out = append(out, &rbacv1.Role{TypeMeta: tm("Role", "rbac.authorization.k8s.io/v1"),
		ObjectMeta: metav1.ObjectMeta{Name: ApproverRole, Annotations: map[string]string{"gantry.dev/purpose": "bind to the people who may approve runs in this namespace"}},
		Rules:      policyRules(rbac.ApproverRules())})
	out = append(out, &rbacv1.Role{TypeMeta: tm("Role", "rbac.authorization.k8s.io/v1"),
		ObjectMeta: metav1.ObjectMeta{Name: OperatorRole, Annotations: map[string]string{"gantry.dev/purpose": "bind to the people who may argo retry runs in this namespace"}},
		Rules:      policyRules(rbac.OperatorRules())})
	return out
}
