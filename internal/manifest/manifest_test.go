package manifest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/gantry-ml/gantry/internal/objstore"
)

func TestDigestIsSha256sumOfSortedFiles(t *testing.T) {
	t.Parallel()
	files := []File{{Path: "b", SHA256: "22"}, {Path: "a", SHA256: "11"}}
	sum := sha256.Sum256([]byte("11  a\n22  b\n"))
	if got, want := Digest(files), "sha256:"+hex.EncodeToString(sum[:]); got != want {
		t.Errorf("Digest = %s, want %s", got, want)
	}
	if Digest(files) != Digest([]File{files[1], files[0]}) {
		t.Error("digest depends on order")
	}
	if Digest(files) == Digest([]File{{Path: "a", SHA256: "11"}, {Path: "b", SHA256: "23"}}) {
		t.Error("digest ignores content")
	}
}

func TestScanSkipsManifestAndHashes(t *testing.T) {
	t.Parallel()
	dir := "file://" + t.TempDir() + "/"
	s, _ := objstore.New(nil)
	ctx := context.Background()
	objstore.PutBytes(ctx, s, dir+"model.safetensors", []byte("w"))
	objstore.PutBytes(ctx, s, dir+"sub/config.json", []byte("{}"))
	objstore.PutBytes(ctx, s, dir+FileName, []byte("{}"))
	kept := map[string]string{}
	files, err := Scan(ctx, s, dir, func(p string, b []byte) { kept[p] = string(b) })
	if err != nil {
		t.Fatal(err)
	}
	w := sha256.Sum256([]byte("w"))
	if len(files) != 2 || files[0].Path != "model.safetensors" || files[0].SHA256 != hex.EncodeToString(w[:]) || files[1].Path != "sub/config.json" {
		t.Errorf("files = %+v", files)
	}
	if fmt.Sprint(kept) != "map[model.safetensors:w sub/config.json:{}]" {
		t.Errorf("kept = %v", kept)
	}
}
