package publish

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/manifest"
)

// OCI formats of the pushed model.
const (
	// OCIArtifact is an OCI image-spec v1.1 artifact: artifactType ArtifactType, the empty config,
	// one layer per file holding its raw bytes with its path as org.opencontainers.image.title —
	// `oras pull` gives the files back byte for byte.
	OCIArtifact = "artifact"
	// OCIModelcar is an image KServe runs as a modelcar: OCI media types, one tar layer per file
	// under /models, on --oci-base (a base with a shell).
	OCIModelcar = "modelcar"
	// ArtifactType is the artifact's type (CNCF ModelPack's model manifest type).
	ArtifactType = "application/vnd.cncf.model.manifest.v1+json"
	// LayerMediaType is each raw file layer's media type (ModelPack: a raw, unarchived file).
	LayerMediaType = "application/vnd.cncf.model.weight.v1.raw"
)

// OCIFile is one model file to push, read from the store when the push needs its bytes.
type OCIFile struct {
	manifest.File
	Open func() (io.ReadCloser, error)
}

// PushChecker is an OCI pusher that can tell, before anything is written anywhere, whether it
// may push to ref (Publish asks it first).
type PushChecker interface {
	CheckPush(ctx context.Context, ref string) error
}

// CheckPush writes the OCI empty config blob (2 bytes, part of every artifact gantry pushes) to
// ref's repository: the registry's answer to a real write, with the credentials the push uses.
func (r RemotePusher) CheckPush(ctx context.Context, ref string) error {
	repo, err := name.NewRepository(ref)
	if err != nil {
		return exitcode.Invalidf("--oci-ref %q: %v", ref, err)
	}
	opts := append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, r.Options...)
	if err := remote.WriteLayer(repo, static.NewLayer(emptyConfig, "application/vnd.oci.empty.v1+json"), opts...); err != nil {
		return pushError(fmt.Errorf("checking that %s accepts pushes: %w", repo, err))
	}
	return nil
}

// RemotePusher pushes with go-containerregistry using the default keychain.
type RemotePusher struct {
	Options []remote.Option
}

// fileLayer is a raw file as a layer, streamed from the store: its digest and size are the
// manifest's (sha256 of the file), so nothing is read to build it, and the bytes flow from the
// store to the registry once, never held in memory.
type fileLayer struct {
	f  OCIFile
	mt types.MediaType
}

func (l fileLayer) Digest() (v1.Hash, error) {
	return v1.Hash{Algorithm: "sha256", Hex: l.f.SHA256}, nil
}
func (l fileLayer) DiffID() (v1.Hash, error)             { return l.Digest() }
func (l fileLayer) Compressed() (io.ReadCloser, error)   { return l.f.Open() }
func (l fileLayer) Uncompressed() (io.ReadCloser, error) { return l.f.Open() }
func (l fileLayer) Size() (int64, error)                 { return l.f.Size, nil }
func (l fileLayer) MediaType() (types.MediaType, error)  { return l.mt, nil }

// annotations describe the model on the manifest.
func annotations(m manifest.Manifest) map[string]string {
	anns := map[string]string{
		"dev.gantry.model.name": m.ModelName, "dev.gantry.model.version": m.Version, "dev.gantry.model.digest": m.Digest,
		"dev.gantry.model.source": m.SourceURI, "org.opencontainers.image.title": m.ModelName + ":" + m.Version,
		// Fixed, so the same model always has the same manifest digest.
		"org.opencontainers.image.created": "1970-01-01T00:00:00Z",
	}
	if m.DatasetDigest != "" {
		anns["dev.gantry.dataset.digest"] = m.DatasetDigest
	}
	if m.TrainingImageDigest != "" {
		anns["dev.gantry.training.image"] = m.TrainingImageDigest
	}
	return anns
}

// rawManifest is a manifest ggcr's remote.Put writes as given.
type rawManifest struct {
	body []byte
	mt   types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.body, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// emptyConfig is the OCI empty descriptor's content, the config of an artifact.
var emptyConfig = []byte("{}")

// Artifact is the OCI artifact manifest for files (sorted by path) and the layers to upload.
func Artifact(m manifest.Manifest, files []OCIFile) ([]byte, []v1.Layer) {
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	cfgSum := sha256.Sum256(emptyConfig)
	mf := v1.Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: ArtifactType,
		Config:      v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Size: int64(len(emptyConfig)), Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(cfgSum[:])}, Data: emptyConfig},
		Annotations: annotations(m),
	}
	var layers []v1.Layer
	for _, f := range files {
		mf.Layers = append(mf.Layers, v1.Descriptor{MediaType: LayerMediaType, Size: f.Size, Digest: v1.Hash{Algorithm: "sha256", Hex: f.SHA256},
			Annotations: map[string]string{"org.opencontainers.image.title": f.Path}})
		layers = append(layers, fileLayer{f: f, mt: LayerMediaType})
	}
	body, _ := json.Marshal(mf)
	return body, layers
}

// Modelcar builds the KServe modelcar image: base plus one tar layer per file at /models/<path>,
// reproducible (fixed timestamps and owners), OCI media types, annotated with the model. Each
// layer is streamed from the store through the tar writer into the upload.
func Modelcar(base v1.Image, m manifest.Manifest, files []OCIFile) (v1.Image, error) {
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	img := mutate.MediaType(base, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, f := range files {
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return tarFile(f) }, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, fmt.Errorf("building layer for %s: %w", f.Path, err)
		}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer, Annotations: map[string]string{"org.opencontainers.image.title": f.Path}}); err != nil {
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
	anns := annotations(m)
	for k, v := range anns {
		cf.Config.Labels[k] = v
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	return mutate.Annotations(img, anns).(v1.Image), nil
}

// tarFile streams a one-file tar (with its parent directories) of f at models/<path>.
func tarFile(f OCIFile) (io.ReadCloser, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		defer rc.Close()
		tw := tar.NewWriter(pw)
		dirs := strings.Split("models/"+f.Path, "/")
		for i := 1; i < len(dirs); i++ {
			tw.WriteHeader(&tar.Header{Name: strings.Join(dirs[:i], "/") + "/", Typeflag: tar.TypeDir, Mode: 0o755, Format: tar.FormatPAX})
		}
		if err := tw.WriteHeader(&tar.Header{Name: "models/" + f.Path, Mode: 0o444, Size: f.Size, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			pw.CloseWithError(err)
			return
		}
		if _, err := io.Copy(tw, rc); err != nil {
			pw.CloseWithError(err)
			return
		}
		pw.CloseWithError(tw.Close())
	}()
	return pr, nil
}

// Push pushes the model in format to ref (a repository), tagged with the version, and returns
// repo@digest.
func (r RemotePusher) Push(ctx context.Context, ref, format, base string, m manifest.Manifest, files []OCIFile) (string, error) {
	repo, err := name.NewRepository(ref)
	if err != nil {
		return "", exitcode.Invalidf("--oci-ref %q: %v", ref, err)
	}
	opts := append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, r.Options...)
	tag := repo.Tag(strings.NewReplacer("+", "_").Replace(m.Version))
	if format == OCIArtifact {
		body, layers := Artifact(m, files)
		for _, l := range layers {
			if err := remote.WriteLayer(repo, l, opts...); err != nil {
				return "", pushError(fmt.Errorf("pushing a layer to %s: %w", repo, err))
			}
		}
		cfg := static.NewLayer(emptyConfig, "application/vnd.oci.empty.v1+json")
		if err := remote.WriteLayer(repo, cfg, opts...); err != nil {
			return "", pushError(fmt.Errorf("pushing the config to %s: %w", repo, err))
		}
		if err := remote.Put(tag, rawManifest{body, types.OCIManifestSchema1}, opts...); err != nil {
			return "", pushError(fmt.Errorf("pushing %s: %w", tag, err))
		}
		sum := sha256.Sum256(body)
		return repo.Digest("sha256:" + hex.EncodeToString(sum[:])).String(), nil
	}
	baseImg := empty.Image
	if base != "" {
		bref, err := name.ParseReference(base)
		if err != nil {
			return "", exitcode.Invalidf("--oci-base %q: %v", base, err)
		}
		if baseImg, err = remote.Image(bref, opts...); err != nil {
			return "", pushError(fmt.Errorf("pulling base %s: %w", base, err))
		}
	}
	img, err := Modelcar(baseImg, m, files)
	if err != nil {
		return "", fmt.Errorf("building the modelcar: %w", err)
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		return "", pushError(fmt.Errorf("pushing %s: %w", tag, err))
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return repo.Digest(d.String()).String(), nil
}

// pushError classifies a registry error: refused credentials or permissions (401, 403) are
// bad input — a retry cannot fix them, the registry-secret can — anything else is retried.
func pushError(err error) error {
	var te *transport.Error
	if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
		return exitcode.Invalidf("%v (registry credentials come from DOCKER_CONFIG: the template's registry-secret, a kubernetes.io/dockerconfigjson Secret)", err)
	}
	return exitcode.Retryable(err)
}
