// Package testenv starts the real servers integration tests run against
// (MinIO today) on 127.0.0.1, and stops them when the test ends. Only test
// code imports it.
package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// MinIO credentials used by every test server.
const (
	MinIOUser     = "gantry-test"
	MinIOPassword = "gantry-test-secret"
)

// MinIO is a running MinIO server.
type MinIO struct {
	Endpoint string // http://127.0.0.1:PORT
	Dir      string
	cmd      *exec.Cmd
	done     chan struct{}
	t        testing.TB
	bin      string
	addr     string
}

// Binary finds a tool: $GANTRY_<NAME>_BIN, $GANTRY_TOOLS/bin, ~/.cache/gantry/tools/bin, PATH.
// When it is missing the test is skipped, unless CI is set: then it fails.
func Binary(t testing.TB, name, envVar string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		return p
	}
	var dirs []string
	if d := os.Getenv("GANTRY_TOOLS"); d != "" {
		dirs = append(dirs, filepath.Join(d, "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".cache", "gantry", "tools", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found (set %s or run hack/install-tools.sh)", name, envVar)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// StartMinIO starts a MinIO server with a fresh data dir; it is stopped at cleanup.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	m := &MinIO{t: t, bin: Binary(t, "minio", "GANTRY_MINIO_BIN"), Dir: t.TempDir(), addr: freeAddr(t)}
	m.Endpoint = "http://" + m.addr
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

// Start (re)starts the server on the same address and data dir and waits until it is ready.
func (m *MinIO) Start() {
	m.t.Helper()
	cmd := exec.Command(m.bin, "server", "--address", m.addr, "--console-address", freeAddr(m.t), "--quiet", m.Dir)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+MinIOUser, "MINIO_ROOT_PASSWORD="+MinIOPassword,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off")
	logf, err := os.Create(filepath.Join(m.t.TempDir(), "minio.log"))
	if err != nil {
		m.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("starting minio: %v", err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(m.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(m.Endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-m.done:
			b, _ := os.ReadFile(logf.Name())
			m.t.Fatalf("minio exited during start-up:\n%s", b)
		case <-time.After(100 * time.Millisecond):
		}
	}
	m.t.Fatal("minio not ready after 60s")
}

// Stop stops the server (idempotent).
func (m *MinIO) Stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	select {
	case <-m.done:
		return
	default:
	}
	m.cmd.Process.Kill()
	<-m.done
}

// Client returns an admin client.
func (m *MinIO) Client() *minio.Client {
	m.t.Helper()
	c, err := minio.New(m.addr, &minio.Options{Creds: credentials.NewStaticV4(MinIOUser, MinIOPassword, "")})
	if err != nil {
		m.t.Fatal(err)
	}
	return c
}

// Creds returns static credentials for the server.
func (m *MinIO) Creds() *credentials.Credentials {
	return credentials.NewStaticV4(MinIOUser, MinIOPassword, "")
}

// MakeBucket creates a bucket.
func (m *MinIO) MakeBucket(name string) {
	m.t.Helper()
	if err := m.Client().MakeBucket(context.Background(), name, minio.MakeBucketOptions{}); err != nil {
		m.t.Fatalf("creating bucket %s: %v", name, err)
	}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
