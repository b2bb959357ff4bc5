package train

import (
	"os"
	"testing"

	"github.com/gantry-ml/gantry/internal/rbac"
	"github.com/gantry-ml/gantry/internal/rbac/rbactest"
)

// apiCalls records every call the launcher makes through the tests' fake clientsets; after the
// suite they must be exactly what the train-launcher's ServiceAccount grants.
var apiCalls = rbactest.New()

func TestMain(m *testing.M) {
	os.Exit(rbactest.Main(m, apiCalls, rbactest.Check{Account: rbac.AccountFor("train-launcher", "train")}))
}
