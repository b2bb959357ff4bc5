package publish

import (
	"os"
	"testing"

	"github.com/gantry-ml/gantry/internal/rbac"
	"github.com/gantry-ml/gantry/internal/rbac/rbactest"
)

// apiCalls records every call deploy, rollback and teardown make through the tests' fake
// clientsets; after the suite they must be exactly what their ServiceAccounts grant (publish and
// record make none: object storage only).
var apiCalls = rbactest.New()

func TestMain(m *testing.M) {
	os.Exit(rbactest.Main(m, apiCalls,
		rbactest.Check{Account: rbac.AccountFor("model-publisher", "deploy")},
		rbactest.Check{Account: rbac.AccountFor("model-publisher", "rollback"), Entries: []string{"publish.(*Deployer).Rollback"}, Composed: true},
		rbactest.Check{Account: rbac.AccountFor("model-publisher", "teardown"), Entries: []string{"publish.(*Deployer).Teardown"}},
		rbactest.Check{Account: rbac.AccountFor("model-publisher", "publish"), Entries: []string{"publish.(*Publisher).Publish"}},
		rbactest.Check{Account: rbac.AccountFor("model-publisher", "record"), Entries: []string{"publish.(*Publisher).Record"}},
	))
}
