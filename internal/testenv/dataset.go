package testenv

import (
	"os"
	"testing"
)

// FashionMNISTDir is where Debian's dataset-fashion-mnist installs the files.
const FashionMNISTDir = "/usr/share/datasets/fashion-mnist/"

// FashionMNIST returns the dataset prefix URI; when it is missing the test ends (Missing).
func FashionMNIST(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(FashionMNISTDir + "t10k-images-idx3-ubyte.gz"); err != nil {
		Missing(t, "Fashion-MNIST missing (apt-get install dataset-fashion-mnist)")
	}
	return "file://" + FashionMNISTDir
}

// FreeAddr returns a free 127.0.0.1 address.
func FreeAddr(t testing.TB) string { return freeAddr(t) }
