// Package rbactest records the Kubernetes API calls a task's code makes against fake
// clientsets, so a test can compare them with the task's ServiceAccount (package rbac): a
// missing verb fails a real run with Forbidden, an extra one is a right nobody needs.
package rbactest

import (
	"flag"
	"fmt"
	"os"
	goruntime "runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"

	"github.com/gantry-ml/gantry/internal/rbac"
)

// Fake is what client-go's and Argo's fake clientsets have in common.
type Fake interface {
	PrependReactor(verb, resource string, reaction k8stesting.ReactionFunc)
	PrependWatchReactor(resource string, reaction k8stesting.WatchReactionFunc)
}

// Recorder collects "group/resource[/sub] verb" of every call.
type Recorder struct {
	mu    sync.Mutex
	calls map[string]map[string]bool // call → the stacks (function names) it was made from
}

// New returns an empty recorder.
func New() *Recorder { return &Recorder{calls: map[string]map[string]bool{}} }

// Attach records every call made through the fakes (it passes them on to the fakes' other reactors).
func (r *Recorder) Attach(fakes ...Fake) {
	for _, f := range fakes {
		f.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
			r.add(a)
			return false, nil, nil
		})
		f.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
			r.add(a)
			return false, nil, nil
		})
	}
}

func (r *Recorder) add(a k8stesting.Action) {
	stack, test := callers()
	if test {
		return
	}
	res := a.GetResource().Resource
	if s := a.GetSubresource(); s != "" {
		res += "/" + s
	}
	verbs := []string{a.GetVerb()}
	if p, ok := a.(k8stesting.PatchAction); ok && p.GetPatchType() == types.ApplyPatchType {
		// The API server authorizes a server-side apply of an object that does not exist yet as a
		// create (the fake records only the patch; a real first deploy was Forbidden without it).
		verbs = append(verbs, "create")
	}
	r.mu.Lock()
	for _, v := range verbs {
		call := a.GetResource().Group + "/" + res + " " + v
		if r.calls[call] == nil {
			r.calls[call] = map[string]bool{}
		}
		r.calls[call][stack] = true
	}
	r.mu.Unlock()
}

// callers returns the function names on the call's stack, and whether the call was made by a
// test itself (playing the Job controller or the kubelet, or checking a result) rather than by
// the code under test: the nearest caller outside client-go, Argo's clientset and this package
// is in a _test.go file. Calls from informers and watchers that the code started have no such
// caller and count as the code's.
func callers() (string, bool) {
	pcs := make([]uintptr, 64)
	frames := goruntime.CallersFrames(pcs[:goruntime.Callers(3, pcs)])
	var names []string
	decided, test := false, false
	for {
		f, more := frames.Next()
		fn := f.Function
		names = append(names, fn)
		switch {
		case decided:
		case strings.HasPrefix(fn, "k8s.io/"), strings.HasPrefix(fn, "github.com/argoproj/argo-workflows/v3/pkg/client"),
			strings.HasPrefix(fn, "github.com/gantry-ml/gantry/internal/rbac/rbactest."), strings.HasPrefix(fn, "runtime."), strings.HasPrefix(fn, "sync."):
		default:
			decided, test = true, strings.HasSuffix(f.File, "_test.go")
		}
		if !more {
			return strings.Join(names, "\n"), test
		}
	}
}

// Check is one ServiceAccount and the code that runs as it.
type Check struct {
	Account rbac.Account
	// Entries name the functions (substrings of their full names, e.g. "(*Deployer).Teardown")
	// whose calls are this account's — the outermost such function on a call's stack decides;
	// empty: every call that no other Check claims.
	Entries []string
	// Composed: the account is, by construction, the union of others' whose code it runs (its
	// calls from goroutines the shared code starts carry none of its entries): only check that
	// every call made under its entries is granted.
	Composed bool
}

// claim is how far out on the stack (frames from the call) c's outermost entry is; -1: none.
func (c Check) claim(stack string) int {
	frames := strings.Split(stack, "\n")
	for i := len(frames) - 1; i >= 0; i-- {
		for _, e := range c.Entries {
			if strings.Contains(frames[i], e) {
				return i
			}
		}
	}
	return -1
}

// owner is the Check a call made from stack belongs to: the one whose entry is outermost (a
// Rollback that calls Teardown needs Teardown's verbs itself), else the one without entries.
func owner(stack string, checks []Check) int {
	best, at := -1, -1
	for i, c := range checks {
		if n := c.claim(stack); n > at {
			best, at = i, n
		}
	}
	if best >= 0 {
		return best
	}
	for i, c := range checks {
		if len(c.Entries) == 0 {
			return i
		}
	}
	return -1
}

// diff compares the calls that belong to checks[i] with its grants.
func (r *Recorder) diff(i int, checks []Check) string {
	granted := rbac.Grants(checks[i].Account.Rules)
	r.mu.Lock()
	defer r.mu.Unlock()
	called := map[string]bool{}
	for call, stacks := range r.calls {
		for st := range stacks {
			if owner(st, checks) == i {
				called[call] = true
			}
		}
	}
	var missing, extra []string
	for call := range called {
		if !granted[call] {
			missing = append(missing, call)
		}
	}
	for g := range granted {
		if !called[g] && !checks[i].Composed {
			extra = append(extra, g)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	var msg []string
	if len(missing) > 0 {
		msg = append(msg, "the code calls what is not granted (add it in internal/rbac): "+strings.Join(missing, ", "))
	}
	if len(extra) > 0 {
		msg = append(msg, "granted but never called (remove it from internal/rbac): "+strings.Join(extra, ", "))
	}
	return strings.Join(msg, "; ")
}

// Main runs a package's tests (call it from TestMain) and then, when the whole suite ran and
// passed, checks for each account that the calls its code made through the recorded fakes are
// exactly what it grants: the suite exercises the task's code paths, so a call the account does
// not grant would be Forbidden in a real run, and a grant no path calls is a right to drop.
func Main(m *testing.M, r *Recorder, checks ...Check) int {
	code := m.Run()
	if code != 0 || filtered() {
		return code
	}
	for i, c := range checks {
		if msg := r.diff(i, checks); msg != "" {
			fmt.Fprintf(os.Stderr, "--- FAIL: RBAC of ServiceAccount %s: %s\n", c.Account.Name, msg)
			code = 1
		}
	}
	return code
}

// filtered reports whether only part of the suite ran (-run, -skip, -short).
func filtered() bool {
	for _, name := range []string{"test.run", "test.skip"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return true
		}
	}
	return testing.Short()
}
