package train

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/testenv"
)

type fakeMinter struct {
	mu       sync.Mutex
	policies []string
	ttls     []time.Duration
}

func (m *fakeMinter) Mint(_ context.Context, policy string, ttl time.Duration) (Credentials, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.policies, m.ttls = append(m.policies, policy), append(m.ttls, ttl)
	return Credentials{AccessKeyID: "AK" + string(rune('0'+len(m.policies))), SecretAccessKey: "SK", SessionToken: "TOKEN"}, nil
}

func (m *fakeMinter) count() int { m.mu.Lock(); defer m.mu.Unlock(); return len(m.policies) }

func scopedOpts(f *fixture) Options {
	o := f.opts()
	o.ScopedCredentials = true
	o.DatasetURI, o.OutputURI = "s3://datasets/fashion-mnist/", "s3://models/runs/run-1/model/"
	return o
}

// withMinIO gives the fixture a real MinIO with the buckets of scopedOpts.
func withMinIO(t *testing.T, f *fixture) {
	t.Helper()
	srv := testenv.StartMinIO(t)
	srv.MakeBucket("models")
	srv.MakeBucket("datasets")
	s, err := objstore.New(&objstore.S3Config{Endpoint: srv.Endpoint, Creds: srv.Creds(), MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	f.store = s
}

// startScoped runs a launcher with scoped credentials until it watches the Job, then stops it
// (the Job stays: no --delete-on-cancel).
func startScoped(t *testing.T, f *fixture, m Minter) runOut {
	t.Helper()
	if f.store == nil {
		withMinIO(t, f)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := f.start(ctx, scopedOpts(f), WithMinter(m))
	f.watching()
	cancel()
	return awaitRun(t, ch)
}

// The training Job gets credentials of its own, limited to the dataset and its output prefix, in
// a Secret it owns — never the registry's credentials; a re-attaching launcher mints nothing.
func TestScopedCredentialsGoToAJobOwnedSecret(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := &fakeMinter{}
	startScoped(t, f, m)
	job := f.job()
	ef := job.Spec.Template.Spec.Containers[0].EnvFrom
	if len(ef) != 1 || ef[0].SecretRef == nil || ef[0].SecretRef.Name != "run-1-train-s3" {
		t.Fatalf("Job envFrom %+v, want only the Secret run-1-train-s3", ef)
	}
	s, err := f.client.CoreV1().Secrets(ns).Get(context.Background(), "run-1-train-s3", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.StringData["AWS_ACCESS_KEY_ID"] != "AK1" || s.StringData["AWS_SESSION_TOKEN"] != "TOKEN" {
		t.Errorf("Secret data %v", s.StringData)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "Job" || s.OwnerReferences[0].Name != "run-1-train" {
		t.Errorf("Secret owners %+v, want the Job", s.OwnerReferences)
	}
	if m.count() != 1 || !strings.Contains(m.policies[0], `"arn:aws:s3:::models/runs/run-1/model/*"`) ||
		!strings.Contains(m.policies[0], `"arn:aws:s3:::datasets/fashion-mnist/*"`) || strings.Contains(m.policies[0], "registry") {
		t.Errorf("session policy %v", m.policies)
	}
	if m.ttls[0] != time.Hour+15*time.Minute {
		t.Errorf("credentials live %s, want the Job's deadline + 15m", m.ttls[0])
	}
	// A launcher restarted mid-training re-attaches: no new credentials, the Job keeps its own.
	startScoped(t, f, m)
	if m.count() != 1 {
		t.Errorf("a re-attaching launcher minted again (%d mints)", m.count())
	}
}

// A Secret left by a launcher that died before creating the Job is replaced, not reused.
func TestScopedCredentialsReplaceALeftoverSecret(t *testing.T) {
	t.Parallel()
	old := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "run-1-train-s3", Namespace: ns}, StringData: map[string]string{"AWS_ACCESS_KEY_ID": "stale"}}
	f := newFixture(t, old)
	startScoped(t, f, &fakeMinter{})
	s, _ := f.client.CoreV1().Secrets(ns).Get(context.Background(), "run-1-train-s3", metav1.GetOptions{})
	if s.StringData["AWS_ACCESS_KEY_ID"] != "AK1" {
		t.Errorf("leftover Secret not replaced: %v", s.StringData)
	}
}

func TestScopedCredentialsBadInputMakesNoCall(t *testing.T) {
	t.Parallel()
	for name, mutate := range map[string]func(*Options){
		"file:// output":            func(o *Options) { o.OutputURI = "file:///tmp/out/" },
		"and --env-from-secret too": func(o *Options) { o.EnvFromSecret = "gantry-s3" },
	} {
		f := newFixture(t)
		m := &fakeMinter{}
		o := scopedOpts(f)
		mutate(&o)
		store, _ := objstore.New(nil)
		_, err := NewLauncher(f.client, store, WithMinter(m)).Run(context.Background(), o)
		if exitcode.Of(err) != exitcode.BadInput || m.count() != 0 || len(f.client.Actions()) != 0 {
			t.Errorf("%s: %v (exit %d), %d mints, %d API calls; want exit 2 and nothing done", name, err, exitcode.Of(err), m.count(), len(f.client.Actions()))
		}
	}
}

// Against a real MinIO (its STS AssumeRole): the minted credentials read the dataset and write
// the run's output, and are refused the model registry and another run's output.
func TestSTSMinterScopesToTheRunsPrefix(t *testing.T) {
	t.Parallel()
	srv := testenv.StartMinIO(t)
	srv.MakeBucket("models")
	srv.MakeBucket("datasets")
	ctx := context.Background()
	root := srv.Client()
	if _, err := root.PutObject(ctx, "datasets", "fashion-mnist/train.gz", bytes.NewReader([]byte("data")), 4, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	parent, err := srv.Creds().GetWithContext(nil)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := ScopePolicy("s3://datasets/fashion-mnist/", "s3://models/runs/run-1/model/")
	if err != nil {
		t.Fatal(err)
	}
	c, err := STSMinter{Endpoint: srv.Endpoint, AccessKey: parent.AccessKeyID, SecretKey: parent.SecretAccessKey}.Mint(ctx, policy, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	job, err := minio.New(strings.TrimPrefix(srv.Endpoint, "http://"), &minio.Options{Creds: credentials.NewStaticV4(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)})
	if err != nil {
		t.Fatal(err)
	}
	put := func(bucket, key string) error {
		_, err := job.PutObject(ctx, bucket, key, bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{})
		return err
	}
	if err := put("models", "runs/run-1/model/model.safetensors"); err != nil {
		t.Errorf("writing its own output: %v", err)
	}
	if _, err := job.StatObject(ctx, "datasets", "fashion-mnist/train.gz", minio.StatObjectOptions{}); err != nil {
		t.Errorf("reading the dataset: %v", err)
	}
	for _, key := range []string{"registry/fashion-mnist/versions/v1/model.safetensors", "registry/fashion-mnist/approvals/v1/run.json", "runs/run-2/model/model.safetensors"} {
		if err := put("models", key); minio.ToErrorResponse(err).Code != "AccessDenied" {
			t.Errorf("writing models/%s: %v, want AccessDenied", key, err)
		}
	}
	if err := put("datasets", "fashion-mnist/train.gz"); minio.ToErrorResponse(err).Code != "AccessDenied" {
		t.Errorf("overwriting the dataset: %v, want AccessDenied", err)
	}
}

// The output is checked before the Job exists: a missing bucket is bad input found in seconds,
// not when training ends, and no Job (or credentials Secret) is created.
func TestMissingOutputBucketIsBadInputBeforeAnyJob(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	withMinIO(t, f)
	o := scopedOpts(f)
	o.OutputURI = "s3://no-such-bucket/runs/run-1/model/"
	m := &fakeMinter{}
	r := awaitRun(t, f.start(context.Background(), o, WithMinter(m)))
	if exitcode.Of(r.err) != exitcode.BadInput || !strings.Contains(r.err.Error(), "cannot be written") {
		t.Fatalf("missing bucket: %v (exit %d), want exit 2 before training", r.err, exitcode.Of(r.err))
	}
	if f.creates() != 0 || m.count() != 0 {
		t.Errorf("%d Jobs created, %d credentials minted for an output that cannot be written", f.creates(), m.count())
	}
}
