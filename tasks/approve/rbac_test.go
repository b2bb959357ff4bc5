package approve

import (
	"os"
	"testing"

	"github.com/gantry-ml/gantry/internal/rbac"
	"github.com/gantry-ml/gantry/internal/rbac/rbactest"
)

// apiCalls records the calls the approver makes through the tests' fakes. The pipeline's steps
// (verify; wait on Tekton) must call exactly what their ServiceAccounts grant; the human
// commands (approve, reject, list, --tekton) exactly the gantry-approver Role, less the approve
// verb (the admission policy checks it; no call uses it) and plus SelfSubjectReview (open to
// every authenticated user).
var apiCalls = rbactest.New()

func TestMain(m *testing.M) {
	var people []rbac.Rule
	for _, r := range rbac.ApproverRules() {
		if r.Verbs[0] != rbac.ApproveVerb {
			people = append(people, r)
		}
	}
	people = append(people, rbac.Rule{Group: "authentication.k8s.io", Resources: []string{"selfsubjectreviews"}, Verbs: []string{"create"}})
	os.Exit(rbactest.Main(m, apiCalls,
		rbactest.Check{Account: rbac.AccountFor("approver", "verify"), Entries: []string{"approve.(*Approver).Verify"}},
		rbactest.Check{Account: rbac.AccountFor("approver", "request"), Entries: []string{"approve.(*Approver).Request"}},
		rbactest.Check{Account: rbac.AccountFor("approver", "wait"), Entries: []string{"approve.(*Approver).Wait"}},
		rbactest.Check{Account: rbac.Account{Name: "gantry-approver (people)", Rules: people}},
	))
}
