// Package cluster holds tests of the local cluster's scripts that need no cluster.
package cluster

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// demo runs hack/cluster/demo.sh's main with its phases replaced by the given shell functions.
func demo(t *testing.T, env []string, phases string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatalf("bash: %v", err)
	}
	script := "set -euo pipefail\nsource ./demo.sh\n" + phases + "\nmain\n"
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The run's budget starts at submit: a cluster bring-up that takes longer than DEMO_TIMEOUT does
// not eat into it (it did: a 58-minute cold build failed a healthy run at once).
func TestDemoDeadlineStartsAtSubmit(t *testing.T) {
	out, err := demo(t, []string{"DEMO_TIMEOUT=2"}, `
bring_up() { sleep 3; }
install() { :; }
submit() { echo ml-pipeline-x; }
follow_run() { echo "follow $1 $2 deadline=${deadline} now=${EPOCHSECONDS}"; }
approve() { echo "approve $1"; }
answers() { :; }
report() { :; }
push_new_image() { echo pushed; }
`)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	var follows int
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "follow ml-pipeline-x ") {
			continue
		}
		follows++
		f := strings.Fields(l)
		deadline, _ := strconv.Atoi(strings.TrimPrefix(f[3], "deadline="))
		now, _ := strconv.Atoi(strings.TrimPrefix(f[4], "now="))
		if deadline-now < 1 {
			t.Errorf("the run was followed with %ds left of its 2 s budget after a 3 s bring-up: %q", deadline-now, l)
		}
	}
	if follows != 2 || !strings.Contains(out, "approve ml-pipeline-x") || !strings.Contains(out, "pushed") {
		t.Errorf("want the run followed to its approval, approved, followed to its end, then a new image pushed:\n%s", out)
	}
}

// A run that does not get where it should fails the demo with follow's account of it, and the
// demo does not approve a run that never asked.
func TestDemoFailsWithTheStuckStep(t *testing.T) {
	out, err := demo(t, []string{"DEMO_TIMEOUT=60"}, `
bring_up() { :; }
install() { :; }
submit() { echo ml-pipeline-y; }
follow_run() { echo "   train(0)   Running: pod p Pending, PodScheduled Unschedulable: 0/2 nodes are available"; return 1; }
approve() { echo "approved $1"; }
answers() { echo answered; }
report() { :; }
push_new_image() { echo pushed; }
`)
	if err == nil {
		t.Fatalf("demo passed with a stuck run:\n%s", out)
	}
	if !strings.Contains(out, "Unschedulable") || !strings.Contains(out, "demo: run ml-pipeline-y did not promote") {
		t.Errorf("the stuck step is not reported:\n%s", out)
	}
	if strings.Contains(out, "approved") || strings.Contains(out, "answered") || strings.Contains(out, "pushed") {
		t.Errorf("the demo went on after its run got stuck:\n%s", out)
	}
}
