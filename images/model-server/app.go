package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/gantry-ml/gantry/images/mlp"
	"github.com/gantry-ml/gantry/images/model-server/serving"
	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/taskcli"
)

// serveOptions are the model server's flags.
type serveOptions struct {
	ModelURI, ModelName, ModelVersion, ModelDigest string
	Listen                                         string
	MaxBatch                                       int
	// LoadTimeout bounds how long transient errors loading the model are retried.
	LoadTimeout time.Duration
	// loadBackoff is the first wait between load attempts (doubling, capped at 30 s).
	loadBackoff time.Duration
	// TrustPolicyFile, when set, makes the server refuse a model whose attestation chain does not
	// verify under it (trust is the parsed policy).
	TrustPolicyFile string
	trust           *attest.Policy
}

func (o *serveOptions) validate() error {
	if o.ModelURI == "" {
		return exitcode.Invalidf("--model-uri is required")
	}
	if _, err := objstore.Parse(o.ModelURI); err != nil {
		return err
	}
	if o.MaxBatch <= 0 {
		return exitcode.Invalidf("--max-batch must be positive")
	}
	return nil
}

func newApp() *cli.App {
	var (
		o      serveOptions
		common taskcli.Common
		store  taskcli.Store
	)
	flags := []cli.Flag{
		&cli.StringFlag{Name: "model-uri", Destination: &o.ModelURI, Usage: "directory holding config.json and model.safetensors (file:// or s3://)"},
		&cli.StringFlag{Name: "model-name", Value: "fashion-mnist", Destination: &o.ModelName, Usage: "name the model is served under"},
		&cli.StringFlag{Name: "model-version", Value: "1", Destination: &o.ModelVersion, Usage: "version reported by the status endpoints"},
		&cli.StringFlag{Name: "model-digest", Destination: &o.ModelDigest, Usage: "sha256:… digest the model files must have; the server refuses a model that differs"},
		&cli.StringFlag{Name: "listen", Value: ":8501", Destination: &o.Listen, Usage: "listen address"},
		&cli.IntFlag{Name: "max-batch", Value: serving.DefaultMaxBatch, Destination: &o.MaxBatch, Usage: "most instances in one request"},
		&cli.StringFlag{Name: "trust-policy", Destination: &o.TrustPolicyFile,
			Usage: "file with the trust policy (model-publisher verify's): refuse to load a model whose attestation chain (training, evaluation, approval, kept beside its version) does not verify under it. Empty: not required"},
		&cli.DurationFlag{Name: "load-timeout", Value: 5 * time.Minute, Destination: &o.LoadTimeout,
			Usage: "how long transient errors loading the model (connection reset, S3 unavailable) are retried, not ready meanwhile, before the server exits 3"},
	}
	return &cli.App{
		Name:  "model-server",
		Usage: "serve a gantry MLP over TF Serving REST v1 and KServe Open Inference Protocol v2",
		Description: "Endpoints: GET /v1/models/NAME, POST /v1/models/NAME:predict, POST /v2/models/NAME/infer,\n" +
			"GET /v2/models/NAME, /v2/health/live, /v2/health/ready (200 only once the model is loaded and\n" +
			"verified), GET /metrics. An instance is 784 pixels scaled to [0,1] (pixel/255), row-major 28×28.",
		Flags: taskcli.Flags(flags, store.Flags(), common.LogFlags()),
		Action: func(c *cli.Context) error {
			log, err := common.Logger(c.App.ErrWriter)
			if err != nil {
				return err
			}
			if err := o.validate(); err != nil {
				return err
			}
			if o.TrustPolicyFile != "" {
				raw, err := os.ReadFile(o.TrustPolicyFile)
				if err != nil {
					return exitcode.Invalidf("--trust-policy: %v", err)
				}
				if o.trust, err = attest.ParsePolicy(raw); err != nil {
					return exitcode.Invalidf("--trust-policy: %v", err)
				}
			}
			s, err := store.Open()
			if err != nil {
				return err
			}
			return run(c.Context, s, o, log)
		},
	}
}

// run listens at once (liveness answers while loading), loads the model, and
// serves until ctx ends. A model that fails to load or verify ends the process.
func run(ctx context.Context, store objstore.Store, o serveOptions, log *slog.Logger) error {
	addr, uri, name, version, maxBatch := o.Listen, o.ModelURI, o.ModelName, o.ModelVersion, o.MaxBatch
	srv := serving.New(name, serving.WithLogger(log), serving.WithMaxBatch(maxBatch))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return exitcode.Invalidf("--listen %s: %v", addr, err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- hs.Serve(l) }()
	log.Info("listening", "addr", l.Addr().String(), "model", name)
	go func() {
		start := time.Now()
		m, got, err := loadRetrying(ctx, store, o, log)
		if err != nil {
			errc <- err
			return
		}
		srv.SetModel(m, version, got)
		log.Info("model loaded", "uri", uri, "digest", got, "layers", m.Config.Layers, "seconds", time.Since(start).Seconds())
	}()
	select {
	case err = <-errc:
	case <-ctx.Done():
		log.Info("shutting down")
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if serr := hs.Shutdown(sctx); err == nil && serr != nil {
		err = serr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// loadRetrying loads and verifies the model, retrying transient errors (a connection reset
// mid-file, S3 unavailable) with backoff for up to o.LoadTimeout: a blip in the object store
// must not crash-loop the server (which fails a rollout). Bad input (a digest mismatch, a
// corrupt model) ends it at once.
func loadRetrying(ctx context.Context, store objstore.Store, o serveOptions, log *slog.Logger) (*mlp.Model, string, error) {
	first := o.loadBackoff
	if first <= 0 {
		first = time.Second
	}
	timeout := o.LoadTimeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	start := time.Now()
	b := wait.Backoff{Duration: first, Factor: 2, Jitter: 0.2, Steps: math.MaxInt32, Cap: 30 * time.Second}
	for {
		m, got, err := serving.LoadVerified(ctx, store, o.ModelURI, o.ModelDigest)
		if err == nil && o.trust != nil {
			err = verifyChain(ctx, store, o.trust, o.ModelURI, got)
		}
		if err == nil || exitcode.Of(err) != exitcode.Transient {
			return m, got, err
		}
		d := b.Step()
		if time.Since(start)+d > timeout {
			return nil, "", exitcode.Retryable(fmt.Errorf("model not loaded within --load-timeout %s: %w", timeout, err))
		}
		log.Warn("loading the model failed, retrying", "uri", o.ModelURI, "in", d.String(), "err", err.Error())
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-time.After(d):
		}
	}
}

// verifyChain refuses (exit 2) a model whose attestation chain does not verify: the model must be
// a published version (<registry>/<model>/<version>/, its manifest naming the digest loaded) with
// training, evaluation and approval attestations about it, signed by the policy's keys.
func verifyChain(ctx context.Context, store objstore.Store, policy *attest.Policy, modelURI, digest string) error {
	u, err := objstore.Parse(modelURI)
	if err != nil {
		return err
	}
	elems := strings.Split(strings.Trim(u.Key, "/"), "/")
	if len(elems) < 2 {
		return exitcode.Invalidf("--trust-policy: --model-uri %s is not a published version (<registry>/<model>/<version>/)", modelURI)
	}
	model, version := elems[len(elems)-2], elems[len(elems)-1]
	registry := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(modelURI, "/"), "/"+version), "/"+model)
	subject, err := attest.AttestationSubject(ctx, store, registry, model, version)
	if err != nil {
		return err
	}
	if subject.ModelDigest != digest {
		return exitcode.Invalidf("refusing to serve %s: its manifest names %s, the files are %s", modelURI, subject.ModelDigest, digest)
	}
	envs, err := attest.ReadAttestations(ctx, store, registry, model, version)
	if err != nil {
		return err
	}
	if _, err := policy.VerifyChain(ctx, envs, subject); err != nil {
		return exitcode.Invalidf("refusing to serve %s: %v", modelURI, err)
	}
	return nil
}
