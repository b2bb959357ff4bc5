package testenv

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
)

// ClusterBinary finds a binary of the local cluster (hack/cluster/build.sh):
// $GANTRY_CLUSTER_BIN, else ~/.cache/gantry/cluster/bin. "" when it is not there.
func ClusterBinary(name string) string {
	dir := os.Getenv("GANTRY_CLUSTER_BIN")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(home, ".cache", "gantry", "cluster", "bin")
	}
	p := filepath.Join(dir, name)
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		return ""
	}
	return p
}

// StartAPIServer starts a real kube-apiserver on 127.0.0.1 with its own etcd — envtest's shape:
// no controllers, no nodes, authorization AlwaysAllow, one admin token — and returns a client
// config for it. Both are stopped at cleanup. The binaries are the local cluster's
// (hack/cluster/build.sh k8s etcd); without them the caller decides (see ClusterBinary).
func StartAPIServer(t testing.TB) *rest.Config {
	t.Helper()
	etcdBin, apiBin := ClusterBinary("etcd"), ClusterBinary("kube-apiserver")
	if etcdBin == "" || apiBin == "" {
		Missing(t, "kube-apiserver and etcd not found (hack/cluster/build.sh k8s etcd builds them into ~/.cache/gantry/cluster/bin)")
		return nil
	}
	dir := t.TempDir()
	client, peer := freeAddr(t), freeAddr(t)
	start(t, filepath.Join(dir, "etcd.log"), etcdBin, "--name=default", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls=http://"+client, "--advertise-client-urls=http://"+client,
		"--listen-peer-urls=http://"+peer, "--initial-advertise-peer-urls=http://"+peer,
		"--initial-cluster=default=http://"+peer, "--log-level=error")

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	keyFile, pubFile, tokens := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub"), filepath.Join(dir, "tokens.csv")
	token := randomHex(t, 16)
	for f, b := range map[string][]byte{
		keyFile: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		pubFile: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		tokens:  []byte(token + ",admin,admin,system:masters\n"),
	} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	port := addr[strings.LastIndex(addr, ":")+1:]
	start(t, filepath.Join(dir, "kube-apiserver.log"), apiBin, "--etcd-servers=http://"+client,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+port, "--cert-dir="+filepath.Join(dir, "certs"),
		"--service-cluster-ip-range=10.0.0.0/24", "--service-account-key-file="+pubFile, "--service-account-signing-key-file="+keyFile,
		"--service-account-issuer=https://kubernetes.default.svc", "--token-auth-file="+tokens, "--authorization-mode=AlwaysAllow",
		"--profiling=false")
	cfg := &rest.Config{Host: "https://" + addr, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 500, Burst: 1000}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	err = wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "kube-apiserver.log"))
		t.Fatalf("kube-apiserver not ready within 2m: %v\n%s", err, tail(log, 2000))
	}
	return cfg
}

// start runs a server until the test ends, its output in logFile.
func start(t testing.TB, logFile, bin string, args ...string) {
	t.Helper()
	log, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", filepath.Base(bin), err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		log.Close()
	})
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return fmt.Sprint(string(b))
}
