// Package kube builds Kubernetes clients the way every gantry task does:
// in-cluster by default, --kubeconfig / KUBECONFIG outside, and the pod's
// namespace as the default namespace. It also classifies API errors.
package kube

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/transient"
)

const saNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Config returns the REST config and the default namespace. An explicit
// kubeconfig wins; otherwise in-cluster; otherwise the default loading rules.
func Config(kubeconfig, namespace string) (*rest.Config, string, error) {
	if kubeconfig == "" {
		if cfg, err := rest.InClusterConfig(); err == nil {
			if namespace == "" {
				namespace = podNamespace()
			}
			return cfg, namespace, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if paths := filepath.SplitList(kubeconfig); len(paths) > 1 {
		// KUBECONFIG=a:b, as kubectl reads it: the files are merged, missing ones skipped.
		found := false
		for _, p := range paths {
			if _, err := os.Stat(p); err == nil {
				found = true
			}
		}
		if !found {
			return nil, "", exitcode.Invalidf("--kubeconfig %s: none of these files exists", kubeconfig)
		}
		rules.Precedence = paths
	} else if kubeconfig != "" {
		if _, err := os.Stat(kubeconfig); err != nil {
			return nil, "", exitcode.Invalidf("--kubeconfig %s: %v", kubeconfig, err)
		}
		rules.ExplicitPath = kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", exitcode.Invalidf("loading kubeconfig: %v", err)
	}
	if namespace == "" {
		if namespace, _, err = cc.Namespace(); err != nil || namespace == "" {
			namespace = "default"
		}
	}
	cfg.UserAgent = "gantry"
	return cfg, namespace, nil
}

func podNamespace() string {
	if b, err := os.ReadFile(saNamespaceFile); err == nil && len(b) > 0 {
		return strings.TrimSpace(string(b))
	}
	return "default"
}

// Classify marks API errors: transient ones (timeouts, 429, 5xx, connection
// errors) get exit code 3, invalid/forbidden ones stay failures with context.
func Classify(op string, err error) error {
	if err == nil {
		return nil
	}
	wrapped := fmt.Errorf("%s: %w", op, err)
	if IsTransient(err) {
		return exitcode.Retryable(wrapped)
	}
	return wrapped
}

// IsTransient reports whether an API error is worth retrying.
func IsTransient(err error) bool {
	if apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) || apierrors.IsUnexpectedServerError(err) {
		return true
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) && transient.IsStatus(int(status.Status().Code)) {
		return true
	}
	return transient.IsError(err)
}

// Clientset builds a Kubernetes client from Config's rules.
func Clientset(kubeconfig, namespace string) (kubernetes.Interface, string, error) {
	cfg, ns, err := Config(kubeconfig, namespace)
	if err != nil {
		return nil, "", err
	}
	c, err := kubernetes.NewForConfig(cfg)
	return c, ns, err
}

// DynamicFunc builds a dynamic client from Config's rules (tests hand in fakes).
type DynamicFunc func(kubeconfig, namespace string) (dynamic.Interface, error)

// Dynamic is the in-cluster / kubeconfig dynamic client (Tekton's and Argo's runs, read as
// unstructured objects).
func Dynamic(kubeconfig, namespace string) (dynamic.Interface, error) {
	cfg, _, err := Config(kubeconfig, namespace)
	if err != nil {
		return nil, err
	}
	return dynamic.NewForConfig(cfg)
}

// ArgoClientsFunc builds the Argo and Kubernetes clients and returns the namespace to use (tests
// hand in fakes).
type ArgoClientsFunc func(kubeconfig, namespace string) (versioned.Interface, kubernetes.Interface, string, error)

// ArgoClients are the in-cluster / kubeconfig Argo and Kubernetes clients.
func ArgoClients(kubeconfig, namespace string) (versioned.Interface, kubernetes.Interface, string, error) {
	cfg, ns, err := Config(kubeconfig, namespace)
	if err != nil {
		return nil, nil, "", err
	}
	wf, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, nil, "", err
	}
	kc, err := kubernetes.NewForConfig(cfg)
	return wf, kc, ns, err
}

// KubeFunc builds a Kubernetes client and returns the namespace to use (tests hand in fakes).
type KubeFunc func(kubeconfig, namespace string) (kubernetes.Interface, string, error)

// Clients is the one seam through which every gantry binary gets its clients: each command's
// New takes one, tests fill the members they need with fakes, and a nil member is the real
// in-cluster / kubeconfig client, built only when a command calls it.
type Clients struct {
	Kube    KubeFunc
	Dynamic DynamicFunc
	Argo    ArgoClientsFunc
}

// Real are the in-cluster / kubeconfig clients.
func Real() Clients { return Clients{Kube: Clientset, Dynamic: Dynamic, Argo: ArgoClients} }

// OrReal fills c's nil members with the real clients.
func (c Clients) OrReal() Clients {
	r := Real()
	if c.Kube == nil {
		c.Kube = r.Kube
	}
	if c.Dynamic == nil {
		c.Dynamic = r.Dynamic
	}
	if c.Argo == nil {
		c.Argo = r.Argo
	}
	return c
}
