package publish

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/gantry-ml/gantry/internal/exitcode"
)

// The release lock: every change of a model's production — promote (deploy --environment
// production), rollback — runs while holding the Lease gantry-release-<model> in the namespace,
// taken by the step itself. So releases from Argo (its mutex is then only a queue), Tekton (which
// has none), a user's own templateRef and a person at the CLI are serialised alike: between one
// release's read of production and its rollout nobody else changes it.
//
// The Lease is client-go's leader election lock: the holder renews it every RetryPeriod; a holder
// that dies stops renewing and the next release takes it over once LeaseDuration has passed since
// it last saw the Lease change; a holder that finishes releases it at once. A holder that cannot
// renew within RenewDeadline loses it: its step stops (its context is cancelled) and fails as
// transient, and its retry decides again under the lock.
type lockTiming struct {
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// DefaultLockTiming is client-go's leader-election defaults: a crashed holder blocks the next
// release for at most ≈15 s.
var DefaultLockTiming = lockTiming{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}

// ReleaseLockName is the Lease serialising a model's releases.
func ReleaseLockName(model string) string { return "gantry-release-" + model }

// locked runs fn holding the model's release lock when o changes production; staging is one
// server per run and needs none.
func (d *Deployer) locked(ctx context.Context, o DeployOptions, fn func(context.Context) error) error {
	if o.Environment != "production" {
		return fn(ctx)
	}
	name := ReleaseLockName(o.ModelName)
	id := holderID(o.Run)
	if l, err := d.client.CoordinationV1().Leases(o.Namespace).Get(ctx, name, metav1.GetOptions{}); err == nil &&
		l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
		d.log.Info("waiting for the release lock", "lease", name, "holder", *l.Spec.HolderIdentity)
	} else if err != nil && !apierrors.IsNotFound(err) {
		d.log.Info("reading the release lock", "lease", name, "err", err)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: name, Namespace: o.Namespace},
		Client:     d.client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		started = make(chan struct{})
		done    = make(chan struct{})
		ferr    error
	)
	t := d.lockTiming
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, Name: name, ReleaseOnCancel: true,
		LeaseDuration: t.LeaseDuration, RenewDeadline: t.RenewDeadline, RetryPeriod: t.RetryPeriod,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				close(started) // a LeaderElector calls it once per Run
				d.log.Info("holding the release lock", "lease", name, "holder", id)
				ferr = fn(lctx)
				close(done)
				stop() // releases the Lease (ReleaseOnCancel)
			},
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return fmt.Errorf("release lock %s: %w", name, err)
	}
	le.Run(runCtx) // returns once runCtx ends (fn done, or the step's own deadline) or the lease is lost
	select {
	case <-started:
	default:
		if err := ctx.Err(); err != nil {
			return exitcode.Retryable(fmt.Errorf("waiting for the release lock %s: %w", name, err))
		}
		return exitcode.Retryable(fmt.Errorf("the release lock %s was never acquired", name))
	}
	stop()
	<-done // fn saw its context end if the lease was lost; wait until it has returned
	if ferr != nil && !errors.Is(ferr, context.Canceled) || ctx.Err() != nil {
		return ferr
	}
	if ferr != nil { // cancelled while the step's own context is alive: the lease was lost
		return exitcode.Retryable(fmt.Errorf("lost the release lock %s (could not renew it within %s): %w", name, t.RenewDeadline, ferr))
	}
	return nil
}

// holderID names the holder: the run and this process (host name, random suffix), so that a
// retry of the same step is a new holder that waits for an old one still alive somewhere.
func holderID(run string) string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	if run == "" {
		run = "manual"
	}
	return run + "/" + host + "/" + hex.EncodeToString(b[:])
}
