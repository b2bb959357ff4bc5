package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/testenv"
)

// The crash-point harness (#26). Every side effect a step has on the world — each object-store
// write, copy and delete (real MinIO), each create, update, patch and delete on the API server,
// each write to the OCI registry — is a crash point. The points are not listed by hand: a first
// run of the step counts them as they happen, so a side effect added to the code is a new point.
// Then, for every point k, in a fresh world:
//   - kill: the k-th side effect takes effect and the step's process dies right after it (every
//     later call of that process fails, its context is cancelled; its Lease is never released);
//   - fail: the side effect after the k-th fails once, as a transient infrastructure error
//     (a 503 from the API server or registry, a reset connection to the store), and the step
//     must report it as transient (exit 3: the templates retry it), never as bad input or a
//     business failure;
//
// then the step is retried as Argo and Tekton retry it (a new process; up to 4 retries while it
// exits 3 or dies), or the pipeline goes on the way it does when the step failed (a promote that
// failed is followed by its rollback), and the invariants are checked:
//   - production serves the head of its history, and the head is the model the step meant to
//     make live or the model live before it;
//   - no entry of an earlier release is lost from the history;
//   - nothing is half-written: every version in the registry has its manifest and every file
//     the manifest names, with its SHA-256; the OCI artifact is pushed;
//   - the release lock is free once the retry is done.
//
// The API server is client-go's fake (with the real one's resourceVersion checks on Leases, the
// lock) and a real kube-apiserver with its own etcd (the local cluster's binaries), each with a
// fake kubelet that rolls Deployments out; the e2e suite runs the same steps on a whole cluster.

// errKilled is what a dead process's calls come to: nothing.
var errKilled = errors.New("injected: the step's process was killed")

type faultMode int

const (
	faultsOff faultMode = iota // the retry, the world's own setup
	countEffects
	killAfter
	failAfter
)

// faults is one step's process as the harness sees it.
type faults struct {
	mu      sync.Mutex
	mode    faultMode
	at      int
	n       int
	points  []string
	pending bool // the at-th side effect was let through: the process dies at its next call
	killed  bool
	failed  bool
	cancel  context.CancelFunc
}

func (f *faults) arm(mode faultMode, at int, cancel context.CancelFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mode, f.at, f.n, f.points, f.pending, f.killed, f.failed, f.cancel = mode, at, 0, nil, false, false, false, cancel
}

func (f *faults) disarm() { f.arm(faultsOff, 0, func() {}) }

// call is every call the step makes: a dead process makes none.
func (f *faults) call() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pending {
		f.pending, f.killed = false, true
		f.cancel()
	}
	if f.killed {
		return errKilled
	}
	return nil
}

// effect is called before each side effect: nil lets it happen; otherwise the error it fails
// with (transient: the injected failure).
func (f *faults) effect(what string) error {
	if err := f.call(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mode == faultsOff {
		return nil
	}
	f.n++
	f.points = append(f.points, what)
	switch {
	case f.mode == killAfter && f.n == f.at:
		f.pending = true
	case f.mode == failAfter && f.n == f.at+1 && !f.failed:
		f.failed = true
		return errInjected
	}
	return nil
}

func (f *faults) injected() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed || f.killed || f.pending
}

var errInjected = errors.New("injected transient failure")

// faultyStore is the object store as the step's process reaches it.
type faultyStore struct {
	objstore.Store
	f *faults
}

func (s *faultyStore) fail(op, uri string) error {
	if err := s.f.effect(op + " " + shortURI(uri)); err != nil {
		if errors.Is(err, errInjected) {
			return exitcode.Retryable(fmt.Errorf("%s %s: connection reset by peer (%w)", op, uri, err)) // as objstore classifies it
		}
		return err
	}
	return nil
}

func shortURI(uri string) string {
	if i := strings.Index(uri, "/m"); i >= 0 {
		return uri[i+1:]
	}
	return uri
}

func (s *faultyStore) Open(ctx context.Context, uri string) (io.ReadCloser, error) {
	if err := s.f.call(); err != nil {
		return nil, err
	}
	return s.Store.Open(ctx, uri)
}
func (s *faultyStore) Stat(ctx context.Context, uri string) (objstore.Info, error) {
	if err := s.f.call(); err != nil {
		return objstore.Info{}, err
	}
	return s.Store.Stat(ctx, uri)
}
func (s *faultyStore) List(ctx context.Context, prefix string) ([]objstore.Info, error) {
	if err := s.f.call(); err != nil {
		return nil, err
	}
	return s.Store.List(ctx, prefix)
}
func (s *faultyStore) Put(ctx context.Context, uri string, r io.Reader, size int64) error {
	if err := s.fail("put", uri); err != nil {
		return err
	}
	return s.Store.Put(ctx, uri, r, size)
}
func (s *faultyStore) Copy(ctx context.Context, src, dst string) error {
	if err := s.fail("copy to", dst); err != nil {
		return err
	}
	return s.Store.Copy(ctx, src, dst)
}
func (s *faultyStore) Delete(ctx context.Context, uri string) error {
	if err := s.fail("delete", uri); err != nil {
		return err
	}
	return s.Store.Delete(ctx, uri)
}
func (s *faultyStore) ReadVersion(ctx context.Context, uri string, limit int64) ([]byte, string, error) {
	if err := s.f.call(); err != nil {
		return nil, "", err
	}
	return s.Store.(objstore.Conditional).ReadVersion(ctx, uri, limit)
}
func (s *faultyStore) PutIf(ctx context.Context, uri string, b []byte, version string) error {
	if err := s.fail("conditional put", uri); err != nil {
		return err
	}
	return s.Store.(objstore.Conditional).PutIf(ctx, uri, b, version)
}
func (s *faultyStore) CopySHA256(ctx context.Context, src, dst string) (string, error) {
	if err := s.fail("copy to", dst); err != nil {
		return "", err
	}
	return s.Store.(objstore.HashCopier).CopySHA256(ctx, src, dst)
}
func (s *faultyStore) StoredSHA256(ctx context.Context, uri string) (string, error) {
	if err := s.f.call(); err != nil {
		return "", err
	}
	return s.Store.(objstore.HashCopier).StoredSHA256(ctx, uri)
}

// attach makes the fake API server answer the step's process as the harness says. The fake
// kubelet's status writes are another process's; the Lease's writes are the lock's own renewals
// (as many as time allows, so not countable points) — but a dead holder's Lease stays held, and
// its retry has to take it over.
func (f *faults) attach(c *fake.Clientset) {
	c.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "status" {
			return false, nil, nil
		}
		verb := a.GetVerb()
		if a.GetResource().Resource == "leases" || verb == "get" || verb == "list" {
			if err := f.call(); err != nil {
				return true, nil, err
			}
			return false, nil, nil
		}
		what := verb + " " + a.GetResource().Resource
		if n, ok := a.(interface{ GetName() string }); ok && n.GetName() != "" {
			what += " " + n.GetName()
		}
		if err := f.effect(what); err != nil {
			if errors.Is(err, errInjected) {
				return true, nil, apierrors.NewServiceUnavailable("injected transient failure")
			}
			return true, nil, err
		}
		return false, nil, nil
	})
	c.PrependWatchReactor("*", func(k8stesting.Action) (bool, watch.Interface, error) {
		if err := f.call(); err != nil {
			return true, nil, err
		}
		return false, nil, nil
	})
}

// registryWith is go-containerregistry's registry, its writes side effects of the step.
func registryWith(t *testing.T, f *faults) string {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var err error
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			err = f.call()
		} else {
			what := "registry " + r.Method + " manifest"
			if strings.Contains(r.URL.Path, "/blobs/") {
				what = "registry " + r.Method + " blob"
			}
			err = f.effect(what)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// world is one model's registry (in the shared MinIO), API server, OCI registry and the
// step's process.
type world struct {
	t      *testing.T
	ctx    context.Context
	store  objstore.Store
	f      *faults
	c      kubernetes.Interface // the step's view of the API server (faults injected)
	model  string
	oci    string
	clock  time.Time
	models []*Published
	before []HistoryEntry // production's history before the step
}

// apiServer is where a world's API server is: nil, client-go's fake (one per world); or a real
// kube-apiserver shared by the worlds (testenv.StartAPIServer), whose Deployments one fake
// kubelet rolls out.
type apiServer struct {
	name string
	cfg  *rest.Config
}

func (e *env) world(t *testing.T, model string, srv *apiServer) *world {
	w := &world{t: t, ctx: context.Background(), f: &faults{}, model: model, clock: time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)}
	w.f.disarm()
	w.store = &faultyStore{Store: e.store, f: w.f}
	if srv == nil {
		w.c, _ = e.cluster(t, true, w.f.attach)
	} else {
		cfg := rest.CopyConfig(srv.cfg)
		cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return &faultyTransport{rt: rt, f: w.f} }
		w.c = kubernetes.NewForConfigOrDie(cfg)
	}
	w.oci = registryWith(t, w.f)
	return w
}

// startRealAPIServer starts a kube-apiserver with the namespace ml and, with rollout, a kubelet
// that rolls every Deployment out.
func startRealAPIServer(t *testing.T, rollout bool) *apiServer {
	cfg := testenv.StartAPIServer(t)
	c := kubernetes.NewForConfigOrDie(cfg)
	if _, err := c.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ml"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if rollout {
		kubelet(t, c, "ml")
	}
	return &apiServer{name: "kube-apiserver", cfg: cfg}
}

// faultyTransport is the real API server as the step's process reaches it: reads and the
// release lock's Lease calls are calls; every other request is a side effect.
type faultyTransport struct {
	rt http.RoundTripper
	f  *faults
}

func (t *faultyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead || strings.Contains(r.URL.Path, "/leases") {
		if err := t.f.call(); err != nil {
			return nil, err
		}
		return t.rt.RoundTrip(r)
	}
	path := r.URL.Path
	if i := strings.Index(path, "/namespaces/"); i >= 0 {
		path = path[i+len("/namespaces/"):]
	}
	if err := t.f.effect(strings.ToLower(r.Method) + " " + path); err != nil {
		if errors.Is(err, errInjected) {
			return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET} // a reset connection
		}
		return nil, err
	}
	return t.rt.RoundTrip(r)
}

func (w *world) publisher() *Publisher {
	var mu sync.Mutex
	return NewPublisher(w.store, WithClock(func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		w.clock = w.clock.Add(time.Second)
		return w.clock
	}))
}

func (w *world) deployer() *Deployer {
	return fastLocks(NewDeployer(w.c, w.store, WithReleaseGate(allowAll{})))
}

func (w *world) publishOpts(i int) PublishOptions {
	return PublishOptions{SourceURI: fmt.Sprintf("s3://runs/%s/train-%d/", w.model, i), RegistryURI: "s3://models", ModelName: w.model,
		Run: fmt.Sprintf("run-%d", i), OCIRef: w.oci + "/models/" + w.model}
}

// train leaves what a trainer leaves for run i.
func (w *world) train(i int) {
	w.t.Helper()
	for name, body := range map[string]string{
		"model.safetensors": fmt.Sprintf("weights of run %d", i), "config.json": `{"layers":[784,10]}`,
		"metrics.json": `{"test_accuracy":0.88,"dataset_digest":"sha256:d5"}`,
	} {
		if err := objstore.PutBytes(w.ctx, w.store, w.publishOpts(i).SourceURI+name, []byte(body)); err != nil {
			w.t.Fatal(err)
		}
	}
}

// publish trains and publishes n models (the world's setup, no faults).
func (w *world) publish(n int) {
	w.t.Helper()
	for i := range n {
		w.train(i)
		p, err := w.publisher().Publish(w.ctx, w.publishOpts(i))
		if err != nil {
			w.t.Fatal(err)
		}
		w.models = append(w.models, p)
	}
}

func (w *world) opts(env string, run int) DeployOptions {
	return DeployOptions{Namespace: "ml", Environment: env, ModelName: w.model, RegistryURI: "s3://models",
		ServerImage: "registry.local/model-server@sha256:99", Replicas: 1, S3Endpoint: "http://minio:9000", S3Secret: "s3-credentials",
		Run: fmt.Sprintf("run-%d", run), RolloutTimeout: 20 * time.Second}
}

// promote is run i's promote: a compare-and-swap on what serves now.
func (w *world) promote(ctx context.Context, i int) error {
	o := w.opts("production", i)
	o.ModelURI, o.ExpectLive = w.models[i].URI, w.servingDigest()
	_, err := w.deployer().Deploy(ctx, o)
	return err
}

// rollback is run i's rollback (--undo-run: only its own deploy).
func (w *world) rollback(ctx context.Context, i int) error {
	o := w.opts("production", i)
	o.UndoRun = o.Run
	_, err := w.deployer().Rollback(ctx, o)
	return err
}

func (w *world) deployment(env string) (uri, digest string) {
	dep, err := w.c.AppsV1().Deployments("ml").Get(w.ctx, w.model+"-"+env, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "nothing", "none"
	}
	if err != nil {
		w.t.Fatal(err)
	}
	return dep.Annotations[AnnModelURI], dep.Annotations[AnnModelDigest]
}

func (w *world) servingDigest() string { _, d := w.deployment("production"); return d }

func (w *world) history(env string) *History {
	w.t.Helper()
	h, err := readHistory(w.ctx, w.store, "s3://models", w.model, "ml", env)
	if err != nil {
		w.t.Fatal(err)
	}
	return h
}

// checkRelease: production serves the history's head, which is want ("nothing": no server and
// nothing live); no earlier entry was lost; the release lock is free.
func (w *world) checkRelease(want string) {
	w.t.Helper()
	h := w.history("production")
	head := "nothing"
	if cur, ok := h.current(); ok {
		head = cur.ModelURI
	}
	serving, _ := w.deployment("production")
	if serving != head || head != want {
		w.t.Errorf("production serves %s, its history's head is %s; want both %s", serving, head, want)
	}
	if len(h.Entries) < len(w.before) {
		w.t.Errorf("the history lost entries: %d before the step, %d after", len(w.before), len(h.Entries))
	}
	for i := range min(len(h.Entries), len(w.before)) {
		if h.Entries[i] != w.before[i] {
			w.t.Errorf("history entry %d changed: %+v, was %+v", i, h.Entries[i], w.before[i])
		}
	}
	// The next release gets the lock: it is free, or held by a dead process (killed after its
	// last side effect, before releasing it) until its lease expires.
	ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
	defer cancel()
	if err := w.deployer().locked(ctx, w.opts("production", 98), func(context.Context) error { return nil }); err != nil {
		w.t.Errorf("the next release cannot take the release lock: %v", err)
	}
}

// checkRegistry: every version of the model is whole (its manifest, its files with their
// SHA-256s), and each content is published once.
func (w *world) checkRegistry() {
	w.t.Helper()
	dir := modelDir("s3://models", w.model)
	list, err := w.store.List(w.ctx, dir.String())
	if err != nil {
		w.t.Fatal(err)
	}
	versions := map[string]bool{}
	for _, i := range list {
		v, _, _ := strings.Cut(strings.TrimPrefix(i.URI, dir.String()), "/")
		if v != "environments" && v != claimsDir && v != ".staging" {
			versions[v] = true
		}
	}
	digests := map[string]string{}
	for v := range versions {
		m, err := Verify(w.ctx, w.store, dir.Join(v).Dir().String())
		if err != nil {
			w.t.Errorf("version %s is half-written: %v", v, err)
			continue
		}
		if other, dup := digests[m.Digest]; dup {
			w.t.Errorf("content %s is published twice: %s and %s", m.Digest, other, v)
		}
		digests[m.Digest] = v
	}
}

// step is one crash-tested step: prepare brings a fresh world to where the step starts; run is
// the step (its first attempt and every retry); then, when set, is what the pipeline does next
// whatever the step's outcome, without retrying it (the release's rollback after a promote that
// failed or whose smoke test failed), itself retried; check holds at the end.
type step struct {
	name    string
	prepare func(w *world)
	run     func(ctx context.Context, w *world) error
	then    func(ctx context.Context, w *world) error
	check   func(w *world)
}

func (s step) world(t *testing.T, e *env, model string, srv *apiServer) *world {
	w := e.world(t, model, srv)
	s.prepare(w)
	w.before = w.history("production").Entries
	return w
}

// retried runs fn again as the engines retry a step: a new process, up to 4 times while the
// last one died or exited 3. It fails the test unless one attempt succeeds.
func retried(w *world, what string, first error, fn func(context.Context, *world) error) {
	w.t.Helper()
	err := first
	for attempt := 1; attempt <= 4 && err != nil; attempt++ {
		if !errors.Is(err, errKilled) && exitcode.Of(err) != exitcode.Transient {
			break
		}
		err = fn(w.ctx, w)
	}
	if err != nil {
		w.t.Fatalf("%s, after the retries: %v (exit %d)", what, err, exitcode.Of(err))
	}
}

func crashSteps() []step {
	return []step{
		{name: "publish", prepare: func(w *world) { w.train(0) },
			run: func(ctx context.Context, w *world) error {
				_, err := w.publisher().Publish(ctx, w.publishOpts(0))
				return err
			},
			check: func(w *world) {
				w.checkRegistry()
				p, err := w.publisher().Publish(w.ctx, w.publishOpts(0))
				if err != nil || !p.Reused || p.OCIDigest == "" {
					w.t.Fatalf("publishing the same training again: %+v %v; want the version the retry completed", p, err)
				}
				ref, err := name.ParseReference(p.OCIDigest, name.Insecure)
				if err != nil {
					w.t.Fatal(err)
				}
				if _, err := remote.Head(ref); err != nil {
					w.t.Errorf("the OCI artifact %s is not in the registry: %v", p.OCIDigest, err)
				}
			}},
		{name: "staging deploy", prepare: func(w *world) { w.publish(1) },
			run: func(ctx context.Context, w *world) error {
				o := w.opts("staging", 0)
				o.ModelURI = w.models[0].URI
				_, err := w.deployer().Deploy(ctx, o)
				return err
			},
			check: func(w *world) {
				env := strings.TrimPrefix(Name(w.model, "staging", "run-0"), w.model+"-")
				head, _ := w.history("staging").current()
				if uri, _ := w.deployment(env); uri != w.models[0].URI || head.ModelURI != uri {
					w.t.Errorf("staging serves %s, its history's head is %s; want %s", uri, head.ModelURI, w.models[0].URI)
				}
			}},
		{name: "first promote, retried", prepare: func(w *world) { w.publish(1) },
			run:   func(ctx context.Context, w *world) error { return w.promote(ctx, 0) },
			check: func(w *world) { w.checkRelease(w.models[0].URI) }},
		{name: "promote, retried", prepare: func(w *world) {
			w.publish(2)
			if err := w.promote(w.ctx, 0); err != nil {
				w.t.Fatal(err)
			}
		},
			run:   func(ctx context.Context, w *world) error { return w.promote(ctx, 1) },
			check: func(w *world) { w.checkRelease(w.models[1].URI) }},
		{name: "promote, then its rollback", prepare: func(w *world) {
			w.publish(2)
			if err := w.promote(w.ctx, 0); err != nil {
				w.t.Fatal(err)
			}
		},
			// The release's failure path: promote failed (or its smoke test did), its rollback runs.
			run:  func(ctx context.Context, w *world) error { return w.promote(ctx, 1) },
			then: func(ctx context.Context, w *world) error { return w.rollback(ctx, 1) },
			check: func(w *world) {
				w.checkRelease(w.models[0].URI)
				w.neverBack(w.models[1].URI)
			}},
		// A run terminated in the middle of its promote (argo terminate: no retry, no rollback, no
		// exit handler): the next release of the model, whoever starts it, settles it first.
		{name: "promote, terminated; the next run's promote", prepare: func(w *world) {
			w.publish(3)
			if err := w.promote(w.ctx, 0); err != nil {
				w.t.Fatal(err)
			}
		},
			run: func(ctx context.Context, w *world) error { return w.promote(ctx, 1) },
			then: func(ctx context.Context, w *world) error {
				// Its canary compared against what production served then.
				err := w.promote(ctx, 2)
				if exitcode.Of(err) == exitcode.Failed && strings.Contains(err.Error(), "changed since the canary") {
					w.t.Logf("the next promote is refused: %v", err)
					return nil
				}
				return err
			},
			check: func(w *world) {
				head, _ := w.history("production").current()
				if head.ModelURI != w.models[0].URI && head.ModelURI != w.models[2].URI {
					w.t.Errorf("after the next release the head is %s, want the model live before (%s) or the next run's (%s)", head.ModelURI, w.models[0].URI, w.models[2].URI)
				}
				w.checkRelease(head.ModelURI)
				w.checkSettled(1)
			}},
		{name: "promote, terminated; an operator's rollback", prepare: func(w *world) {
			w.publish(2)
			if err := w.promote(w.ctx, 0); err != nil {
				w.t.Fatal(err)
			}
		},
			run: func(ctx context.Context, w *world) error { return w.promote(ctx, 1) },
			then: func(ctx context.Context, w *world) error {
				_, err := w.deployer().Rollback(ctx, w.opts("production", 97))
				return err
			},
			check: func(w *world) {
				// Whatever the terminated promote had done, the operator's rollback undoes it: the
				// model live before it serves again. When it had done nothing (its first write
				// failed), the rollback undoes what is live: the first model, so nothing serves.
				want := "nothing"
				for _, e := range w.history("production").Entries {
					if e.Run == "run-1" {
						want = w.models[0].URI
					}
				}
				w.checkRelease(want)
				w.checkSettled(1)
			}},
		{name: "rollback after a failed smoke", prepare: func(w *world) {
			w.publish(2)
			for i := range 2 {
				if err := w.promote(w.ctx, i); err != nil {
					w.t.Fatal(err)
				}
			}
		},
			run: func(ctx context.Context, w *world) error { return w.rollback(ctx, 1) },
			check: func(w *world) {
				w.checkRelease(w.models[0].URI)
				w.neverBack(w.models[1].URI)
			}},
		{name: "rollback of a first release", prepare: func(w *world) {
			w.publish(1)
			if err := w.promote(w.ctx, 0); err != nil {
				w.t.Fatal(err)
			}
		},
			run:   func(ctx context.Context, w *world) error { return w.rollback(ctx, 0) },
			check: func(w *world) { w.checkRelease("nothing"); w.neverBack(w.models[0].URI) }},
	}
}

// checkSettled: run i's release left no intent pending, and, if it was never made live, its
// intent is recorded as aborted.
func (w *world) checkSettled(i int) {
	w.t.Helper()
	h := w.history("production")
	if p, ok := h.pending(); ok {
		w.t.Errorf("an intent is still pending after the next release: %+v", p)
	}
	for _, e := range h.Entries {
		if e.Run == fmt.Sprintf("run-%d", i) && !e.counts() && !e.Aborted {
			w.t.Errorf("run-%d's entry is neither live nor aborted: %+v", i, e)
		}
	}
}

// neverBack: an operator's later rollback does not return to the rolled-back model.
func (w *world) neverBack(bad string) {
	w.t.Helper()
	o := w.opts("production", 99)
	if _, err := w.deployer().Rollback(w.ctx, o); err != nil {
		w.t.Fatalf("an operator's later rollback: %v", err)
	}
	if uri, _ := w.deployment("production"); uri == bad {
		w.t.Errorf("a later rollback returned to the rolled-back model %s", bad)
	}
}

// The harness runs on client-go's fake API server and, where the local cluster's binaries are
// (hack/cluster/build.sh; CI runs it again once they are built, with
// GANTRY_REQUIRE_APISERVER=1), on a real kube-apiserver: its resourceVersions, server-side apply
// and Lease semantics are the real ones.
func TestEveryCrashPointOfTheReleaseRecovers(t *testing.T) {
	e := newEnv(t)
	servers := []*apiServer{nil}
	switch {
	case testenv.ClusterBinary("kube-apiserver") != "" && testenv.ClusterBinary("etcd") != "" || os.Getenv("GANTRY_REQUIRE_APISERVER") != "":
		servers = append(servers, startRealAPIServer(t, true))
	default:
		t.Log("no kube-apiserver here (hack/cluster/build.sh k8s etcd): the crash points run on the fake API server only")
	}
	for _, srv := range servers {
		name, prefix := "fake", "m"
		if srv != nil {
			name, prefix = srv.name, "r"
		}
		t.Run(name, func(t *testing.T) { crashPoints(t, e, srv, prefix) })
	}
}

func crashPoints(t *testing.T, e *env, srv *apiServer, prefix string) {
	for si, s := range crashSteps() {
		t.Run(s.name, func(t *testing.T) {
			// Count the step's side effects: its crash points.
			w := s.world(t, e, fmt.Sprintf("%s%d-count", prefix, si), srv)
			ctx, cancel := context.WithCancel(w.ctx)
			w.f.arm(countEffects, 0, cancel)
			if err := s.run(ctx, w); err != nil {
				t.Fatalf("the step without faults: %v", err)
			}
			w.f.mu.Lock()
			points := append([]string(nil), w.f.points...)
			w.f.mu.Unlock()
			cancel()
			if len(points) == 0 {
				t.Fatal("the step has no side effects to crash after")
			}
			t.Logf("%d crash points: %s", len(points), strings.Join(points, "; "))
			for _, mode := range []faultMode{killAfter, failAfter} {
				for k := range len(points) {
					at := k + 1
					label := fmt.Sprintf("killed after %d %s", at, points[k])
					if mode == failAfter {
						at = k
						label = fmt.Sprintf("%s fails once", points[k])
					}
					t.Run(label, func(t *testing.T) {
						t.Parallel()
						w := s.world(t, e, fmt.Sprintf("%s%d-%d-%d", prefix, si, mode, k), srv)
						ctx, cancel := context.WithCancel(w.ctx)
						defer cancel()
						w.f.arm(mode, at, cancel)
						err := s.run(ctx, w)
						injected := w.f.injected()
						w.f.disarm()
						if !injected {
							t.Fatalf("the fault was never injected (the step has fewer side effects than counted): %v", err)
						}
						if mode == killAfter && err != nil {
							err = errKilled // whatever the dying process said: the engine sees a pod that died
						}
						if mode == failAfter && err != nil && exitcode.Of(err) != exitcode.Transient {
							t.Errorf("a transient failure of %s was reported as exit %d, not 3 (the templates retry only 3): %v", points[k], exitcode.Of(err), err)
						}
						if s.then == nil {
							retried(w, s.name, err, s.run)
						} else {
							t.Logf("%s: %v; then the pipeline goes on", s.name, err)
							retried(w, "what follows "+s.name, s.then(w.ctx, w), s.then)
						}
						s.check(w)
					})
				}
			}
		})
	}
}
