// Package transient is gantry's one answer to "is this worth another attempt?"
// and its one retry policy for HTTP: a RoundTripper, in the spirit of
// go-containerregistry's remote/transport, that retries connection errors and
// the transient statuses (408, 429, 5xx) with exponential backoff.
//
// The object store (internal/objstore) and the Kubernetes clients
// (internal/kube) classify their own errors with IsError and IsStatus, adding
// only what their APIs name differently (S3 error codes, API status reasons).
package transient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// IsStatus reports whether an HTTP status is worth another attempt: request
// timeout, too many requests, and every server error.
func IsStatus(code int) bool {
	return code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout
}

// IsError reports whether a transport-level error is worth another attempt:
// network errors (refused, reset, timeouts), a connection closed mid-message,
// and a deadline of the attempt. A cancelled context is not: someone asked to stop.
func IsError(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ne net.Error // *url.Error is one: every failed client round trip counts
	return errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded)
}

// Transport retries transient failures of the round trips of its inner transport.
type Transport struct {
	inner    http.RoundTripper
	retries  int
	backoff  wait.Backoff
	log      *slog.Logger
	maxBody  int64
	readBody bool
	timeout  time.Duration
}

// Option configures a Transport.
type Option func(*Transport)

// WithRetries sets how many times a failed attempt is repeated (default 3).
func WithRetries(n int) Option { return func(t *Transport) { t.retries = n } }

// WithBackoff sets the wait before the first retry and its cap; it doubles, with 20 % jitter
// (default 100ms, capped at 5s).
func WithBackoff(first, max time.Duration) Option {
	return func(t *Transport) { t.backoff.Duration, t.backoff.Cap = first, max }
}

// WithLogger logs each retry at warn level (default: silent).
func WithLogger(l *slog.Logger) Option { return func(t *Transport) { t.log = l } }

// WithReadBody reads a successful response's body, up to max bytes, inside the
// retry loop, so a connection lost mid-body is retried like one lost before
// the headers. The caller gets the body from memory.
func WithReadBody(max int64) Option {
	return func(t *Transport) { t.readBody, t.maxBody = true, max }
}

// WithAttemptTimeout bounds each attempt, from sending the request to the end of the body
// (default: none; the request's context still bounds the whole).
func WithAttemptTimeout(d time.Duration) Option { return func(t *Transport) { t.timeout = d } }

// NewTransport wraps inner (nil: http.DefaultTransport).
func NewTransport(inner http.RoundTripper, opts ...Option) *Transport {
	if inner == nil {
		inner = http.DefaultTransport
	}
	t := &Transport{inner: inner, retries: 3, log: slog.New(slog.DiscardHandler),
		backoff: wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.2, Cap: 5 * time.Second}}
	for _, o := range opts {
		o(t)
	}
	return t
}

type attemptKey struct{}

// OnAttempt returns a context whose requests call f before each attempt (n from 0), e.g. to
// time only the attempt that answered.
func OnAttempt(ctx context.Context, f func(n int)) context.Context {
	return context.WithValue(ctx, attemptKey{}, f)
}

// RoundTrip sends req, repeating it after transient failures. A request whose body cannot be
// replayed (no GetBody) is sent once. After the last attempt the caller gets what it answered:
// the transient status with its body, or the error.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	hook, _ := ctx.Value(attemptKey{}).(func(int))
	bo := t.backoff
	bo.Steps = t.retries + 1
	retries := t.retries
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		retries = 0
	}
	for attempt := 0; ; attempt++ {
		r := req
		if attempt > 0 && req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r = req.Clone(ctx)
			r.Body = body
		}
		cancel := context.CancelFunc(func() {})
		if t.timeout > 0 {
			var actx context.Context
			actx, cancel = context.WithTimeout(ctx, t.timeout)
			r = r.WithContext(actx)
		}
		if hook != nil {
			hook(attempt)
		}
		resp, err := t.inner.RoundTrip(r)
		if err == nil && t.readBody {
			err = t.buffer(resp)
		}
		if err != nil && t.timeout > 0 && ctx.Err() == nil && errors.Is(r.Context().Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("attempt timed out after %s: %w", t.timeout, err)
		}
		if err == nil && !t.readBody {
			resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
		} else {
			cancel()
		}
		last := attempt >= retries || ctx.Err() != nil
		switch {
		case err != nil && (!IsError(err) || last):
			return nil, err
		case err == nil && (!IsStatus(resp.StatusCode) || last):
			return resp, nil
		}
		what := ""
		if err != nil {
			what = err.Error()
		} else {
			what = resp.Status
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		wait := bo.Step()
		// The host only: a URL's path and query may carry a secret (webhook tokens, signed URLs).
		t.log.Warn("transient HTTP failure, retrying", "method", req.Method, "host", req.URL.Scheme+"://"+req.URL.Host, "error", what,
			"attempt", attempt+1, "of", retries+1, "in", wait.Round(time.Millisecond))
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

func (t *Transport) buffer(resp *http.Response) error {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, t.maxBody+1))
	if err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	if int64(len(b)) > t.maxBody {
		return fmt.Errorf("response over %d bytes", t.maxBody)
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return nil
}

// cancelOnClose ends an attempt's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
