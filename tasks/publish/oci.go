package publish

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/manifest"
)

// RemotePusher pushes with go-containerregistry using the default keychain.
type RemotePusher struct {
	Options []remote.Option
}

// Image builds the model artifact: one layer per file at /models/<path>,
// reproducible (fixed timestamps and owners), annotated with the manifest.
func Image(base v1.Image, m manifest.Manifest, files map[string][]byte) (v1.Image, error) {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	img := base
	for _, p := range paths {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		dirs := strings.Split("models/"+p, "/")
		for i := 1; i < len(dirs); i++ {
			tw.WriteHeader(&tar.Header{Name: strings.Join(dirs[:i], "/") + "/", Typeflag: tar.TypeDir, Mode: 0o755, Format: tar.FormatPAX})
		}
		b := files[p]
		if err := tw.WriteHeader(&tar.Header{Name: "models/" + p, Mode: 0o444, Size: int64(len(b)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		tw.Write(b)
		tw.Close()
		data := buf.Bytes()
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			return nil, fmt.Errorf("building layer for %s: %w", p, err)
		}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, Annotations: map[string]string{"org.opencontainers.image.title": p}}); err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	anns := map[string]string{
		"dev.gantry.model.name": m.ModelName, "dev.gantry.model.version": m.Version, "dev.gantry.model.digest": m.Digest,
		"dev.gantry.model.source": m.SourceURI, "org.opencontainers.image.title": m.ModelName + ":" + m.Version,
	}
	if m.DatasetDigest != "" {
		anns["dev.gantry.dataset.digest"] = m.DatasetDigest
	}
	if m.TrainingImageDigest != "" {
		anns["dev.gantry.training.image"] = m.TrainingImageDigest
	}
	for k, v := range anns {
		cf.Config.Labels[k] = v
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	return mutate.Annotations(img, anns).(v1.Image), nil
}

// Push builds and pushes the artifact to ref (a repository, tagged with the version).
func (r RemotePusher) Push(ctx context.Context, ref, base string, m manifest.Manifest, files map[string][]byte) (string, error) {
	repo, err := name.NewRepository(ref)
	if err != nil {
		return "", exitcode.Invalidf("--oci-ref %q: %v", ref, err)
	}
	opts := append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, r.Options...)
	baseImg := empty.Image
	if base != "" {
		bref, err := name.ParseReference(base)
		if err != nil {
			return "", exitcode.Invalidf("--oci-base %q: %v", base, err)
		}
		if baseImg, err = remote.Image(bref, opts...); err != nil {
			return "", exitcode.Retryable(fmt.Errorf("pulling base %s: %w", base, err))
		}
	}
	img, err := Image(baseImg, m, files)
	if err != nil {
		return "", fmt.Errorf("building OCI artifact: %w", err)
	}
	tag := repo.Tag(strings.NewReplacer("+", "_").Replace(m.Version))
	if err := remote.Write(tag, img, opts...); err != nil {
		return "", exitcode.Retryable(fmt.Errorf("pushing %s: %w", tag, err))
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return repo.Digest(d.String()).String(), nil
}
