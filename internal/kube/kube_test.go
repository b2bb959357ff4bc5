package kube

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-ml/gantry/internal/exitcode"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	gr := schema.GroupResource{Resource: "jobs"}
	for _, tc := range []struct {
		err  error
		want int
	}{
		{apierrors.NewServiceUnavailable("x"), exitcode.Transient},
		{apierrors.NewTooManyRequests("x", 1), exitcode.Transient},
		{apierrors.NewServerTimeout(gr, "create", 1), exitcode.Transient},
		{apierrors.NewInternalError(errors.New("x")), exitcode.Transient},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, exitcode.Transient},
		{apierrors.NewForbidden(gr, "x", errors.New("rbac")), exitcode.Failed},
		{apierrors.NewNotFound(gr, "x"), exitcode.Failed},
		{apierrors.NewBadRequest("x"), exitcode.Failed},
	} {
		if got := exitcode.Of(Classify("op", tc.err)); got != tc.want {
			t.Errorf("%v: code %d, want %d", tc.err, got, tc.want)
		}
	}
	if Classify("op", nil) != nil {
		t.Error("nil error classified")
	}
}

func TestConfigFromKubeconfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	kc := filepath.Join(dir, "config")
	os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: ml}}]
current-context: x
`), 0o600)
	cfg, ns, err := Config(kc, "")
	if err != nil || cfg.Host != "https://127.0.0.1:6443" || ns != "ml" {
		t.Errorf("Config = %v %q %v", cfg, ns, err)
	}
	if _, ns, _ := Config(kc, "other"); ns != "other" {
		t.Errorf("--namespace did not win: %q", ns)
	}
	if _, _, err := Config(filepath.Join(dir, "missing"), ""); exitcode.Of(err) != exitcode.BadInput {
		t.Errorf("missing kubeconfig: %v", err)
	}
	// KUBECONFIG=a:b as kubectl reads it: merged, a missing file skipped; all missing is bad input.
	list := strings.Join([]string{filepath.Join(dir, "missing"), kc}, string(os.PathListSeparator))
	if cfg, ns, err := Config(list, ""); err != nil || cfg.Host != "https://127.0.0.1:6443" || ns != "ml" {
		t.Errorf("Config(%s) = %v %q %v", list, cfg, ns, err)
	}
	none := strings.Join([]string{filepath.Join(dir, "a"), filepath.Join(dir, "b")}, string(os.PathListSeparator))
	if _, _, err := Config(none, ""); exitcode.Of(err) != exitcode.BadInput {
		t.Errorf("no file of %s: %v", none, err)
	}
}
