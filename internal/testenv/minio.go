// Package testenv starts the real servers integration tests run against
// (MinIO today) on 127.0.0.1, and stops them when the test ends. Only test
// code imports it.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
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
	// user and password are this server's own: a client that reached another test's server on
	// a reused port would be refused, never served someone else's buckets.
	user, password string
}

// Binary finds a tool: $GANTRY_<NAME>_BIN, $GANTRY_TOOLS/bin, ~/.cache/gantry/tools/bin, PATH.
// When it is missing, `go test -short` skips the test (unit tests only); a full `go test` fails,
// saying how to get the tool (Missing): a plain `go test ./...` on a fresh machine must not pass
// with its integration tests quietly skipped.
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
	Missing(t, fmt.Sprintf("%s not found (set %s, or run hack/install-tools.sh)", name, envVar))
	return ""
}

var missingOnce sync.Once

// Missing ends an integration test whose server or data is not on this machine: skipped under
// `go test -short`; otherwise the first such test of the package fails with how to run the
// integration tests (make test installs everything), and the package's others are skipped
// pointing at it.
func Missing(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skip(what + " (-short: unit tests only)")
		return
	}
	first := false
	missingOnce.Do(func() { first = true })
	if first {
		t.Fatalf("integration test cannot run: %s.\n"+
			"\tmake test installs the test servers and data (MinIO from its Go module, ≈7 min once; Debian's dataset-fashion-mnist)\n"+
			"\tand runs every test; go test -short ./... runs the unit tests only.", what)
		return
	}
	t.Skipf("integration test cannot run: %s (this package's first such test failed, saying how to run them)", what)
}

// StartMinIO starts a MinIO server with a fresh data dir; it is stopped at cleanup.
//
// The port is picked free, but another process (a parallel test package) may take it before
// MinIO binds: then MinIO exits with "address already in use" and the server is started again
// on another port.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	m := &MinIO{t: t, bin: Binary(t, "minio", "GANTRY_MINIO_BIN"), Dir: t.TempDir(),
		user: "gantry-test-" + randomHex(t, 4), password: randomHex(t, 16)}
	t.Cleanup(m.Stop)
	for attempt := 1; ; attempt++ {
		m.addr = freeAddr(t)
		m.Endpoint = "http://" + m.addr
		err := m.start()
		if err == nil {
			return m
		}
		if !errors.Is(err, errAddrInUse) || attempt == 5 {
			t.Fatal(err)
		}
		t.Logf("minio: %v; trying another port", err)
	}
}

// Start restarts the server on the same address and data dir and waits until it is ready.
func (m *MinIO) Start() {
	m.t.Helper()
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		if err = m.start(); !errors.Is(err, errAddrInUse) {
			break
		}
		time.Sleep(time.Duration(attempt) * 200 * time.Millisecond) // the old process's socket, or a squatter
	}
	if err != nil {
		m.t.Fatal(err)
	}
}

var errAddrInUse = errors.New("address already in use")

func (m *MinIO) start() error {
	cmd := exec.Command(m.bin, "server", "--address", m.addr, "--console-address", freeAddr(m.t), "--quiet", m.Dir)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+m.user, "MINIO_ROOT_PASSWORD="+m.password,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off")
	logf, err := os.Create(filepath.Join(m.t.TempDir(), "minio.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting minio: %w", err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(m.done) }()
	exited := func() error {
		b, _ := os.ReadFile(logf.Name())
		if strings.Contains(string(b), "address already in use") || strings.Contains(string(b), "port is already in use") {
			return fmt.Errorf("minio on %s: %w", m.addr, errAddrInUse)
		}
		return fmt.Errorf("minio exited during start-up:\n%s", b)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-m.done:
			return exited()
		default:
		}
		// Ready means: our process is alive and the server on the port knows our credentials.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := m.Client().ListBuckets(ctx)
		cancel()
		if err == nil {
			select {
			case <-m.done:
				return exited()
			default:
				return nil
			}
		}
		select {
		case <-m.done:
			return exited()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("minio not ready after 60s")
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
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
	c, err := minio.New(m.addr, &minio.Options{Creds: credentials.NewStaticV4(m.user, m.password, "")})
	if err != nil {
		m.t.Fatal(err)
	}
	return c
}

// Creds returns static credentials for the server.
func (m *MinIO) Creds() *credentials.Credentials {
	return credentials.NewStaticV4(m.user, m.password, "")
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
