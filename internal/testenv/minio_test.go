package testenv

import (
	"errors"
	"net"
	"testing"
)

// A port taken between freeAddr and MinIO's bind (by a parallel test package) is recognised, so
// StartMinIO moves to another port instead of failing, or talking to someone else's server.
func TestStartRecognisesAPortTakenBeforeMinIOBinds(t *testing.T) {
	t.Parallel()
	bin := Binary(t, "minio", "GANTRY_MINIO_BIN")
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	m := &MinIO{t: t, bin: bin, Dir: t.TempDir(), user: "gantry-test-" + randomHex(t, 4), password: randomHex(t, 16), addr: squatter.Addr().String()}
	m.Endpoint = "http://" + m.addr
	t.Cleanup(m.Stop)
	if err := m.start(); !errors.Is(err, errAddrInUse) {
		t.Fatalf("start on a taken port: %v, want %v", err, errAddrInUse)
	}
	// And StartMinIO itself ends up with a working server.
	ok := StartMinIO(t)
	if _, err := ok.Client().ListBuckets(t.Context()); err != nil {
		t.Fatal(err)
	}
}
