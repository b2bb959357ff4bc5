// Package hack holds tests of the scripts in hack/ that need no cluster.
package hack

import (
	"os/exec"
	"strings"
	"testing"
)

func failures(t *testing.T, log string) string {
	t.Helper()
	cmd := exec.Command("bash", "failures.sh", "/dev/stdin")
	cmd.Stdin = strings.NewReader(log)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("failures.sh: %v\n%s", err, out)
	}
	return string(out)
}

// A CI log's tail shows what each failed test reported, though parallel tests interleave their
// lines and the failure itself scrolled away under a namespace dump.
func TestFailuresAttributesInterleavedLinesToTheirTests(t *testing.T) {
	out := failures(t, `=== RUN   TestA
=== PAUSE TestA
=== RUN   TestB
=== PAUSE TestB
=== RUN   TestC
    c_test.go:3: serial and fine
--- PASS: TestC (1.00s)
=== CONT  TestA
    a_test.go:5: namespace a
=== CONT  TestB
    b_test.go:7: namespace b
=== NAME  TestA
    a_test.go:9: removing the taint: conflict
    framework_test.go:340: run at failure:
    framework_test.go:342: namespace a dumped to /x
=== NAME  TestB
    b_test.go:11: run failed: Failed
--- FAIL: TestA (2.00s)
=== NAME  TestB
    b_test.go:12: want Succeeded
--- FAIL: TestB (3.00s)
FAIL
`)
	want := `
=== what the failed tests reported (2) ===
--- TestA
    a_test.go:5: namespace a
    a_test.go:9: removing the taint: conflict
--- TestB
    b_test.go:7: namespace b
    b_test.go:11: run failed: Failed
    b_test.go:12: want Succeeded
`
	if out != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
}

func TestFailuresPrintsNothingForAGreenLog(t *testing.T) {
	if out := failures(t, "=== RUN   TestC\n    c_test.go:3: fine\n--- PASS: TestC (1.00s)\nPASS\n"); out != "" {
		t.Errorf("a green log: %q, want nothing", out)
	}
}

func TestFailuresRefusesBadInput(t *testing.T) {
	for _, args := range [][]string{{}, {"-x"}, {"/no/such/log"}} {
		err := exec.Command("bash", append([]string{"failures.sh"}, args...)...).Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("failures.sh %v: %v, want exit 2", args, err)
		}
	}
}
