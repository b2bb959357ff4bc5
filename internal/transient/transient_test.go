package transient

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func fast(opts ...Option) *http.Client {
	return &http.Client{Transport: NewTransport(nil, append([]Option{WithBackoff(time.Millisecond, 5*time.Millisecond)}, opts...)...)}
}

func TestRetriesTransientStatusesAndReplaysTheBody(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if string(b) != `{"instances":[]}` {
			t.Errorf("attempt %d got body %q", calls.Load()+1, b)
		}
		switch calls.Add(1) {
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			io.WriteString(w, "ok")
		}
	}))
	defer ts.Close()
	var attempts []int
	ctx := OnAttempt(context.Background(), func(n int) { attempts = append(attempts, n) })
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL, strings.NewReader(`{"instances":[]}`))
	resp, err := fast(WithRetries(3)).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok" || calls.Load() != 3 || len(attempts) != 3 || attempts[2] != 2 {
		t.Errorf("status %d body %q after %d calls, attempts %v", resp.StatusCode, b, calls.Load(), attempts)
	}
}

func TestGivesUpWithTheLastAnswerAndNeverRetriesARefusal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status, calls int
	}{{http.StatusBadGateway, 3}, {http.StatusBadRequest, 1}, {http.StatusNotFound, 1}} {
		var calls atomic.Int32
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			http.Error(w, "why", tc.status)
		}))
		resp, err := fast(WithRetries(2)).Get(ts.URL)
		ts.Close()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || int(calls.Load()) != tc.calls || !strings.Contains(string(b), "why") {
			t.Errorf("%d: got %d %q after %d calls, want %d calls", tc.status, resp.StatusCode, b, calls.Load(), tc.calls)
		}
	}
}

func TestRetriesAConnectionRefusedUntilTheServerIsUp(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = fast(WithRetries(2)).Get("http://" + addr)
	if err == nil || !IsError(err) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("refused: %v (transient %v)", err, IsError(err))
	}
}

// A response cut off mid-body is retried when the transport reads bodies (WithReadBody).
func TestReadBodyRetriesABodyCutShort(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "partial")
			return // the server closes with 93 bytes missing
		}
		io.WriteString(w, "whole")
	}))
	defer ts.Close()
	resp, err := fast(WithRetries(2), WithReadBody(1<<20)).Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "whole" || calls.Load() != 2 {
		t.Errorf("body %q after %d calls", b, calls.Load())
	}
}

func TestAttemptTimeoutAndCancellation(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 || r.URL.RawQuery == "hang" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, "second")
	}))
	defer ts.Close()
	defer close(release)
	resp, err := fast(WithRetries(1), WithAttemptTimeout(100*time.Millisecond)).Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "second" {
		t.Errorf("a hung attempt was not abandoned: %q", b)
	}
	if _, err := fast(WithRetries(0), WithAttemptTimeout(50*time.Millisecond)).Get(ts.URL + "/?hang"); err == nil ||
		!strings.Contains(err.Error(), "attempt timed out after 50ms") || !IsError(err) {
		t.Errorf("a hung last attempt: %v (transient %v)", err, IsError(err))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL, nil)
	if _, err := fast(WithRetries(5)).Do(req); !errors.Is(err, context.Canceled) || IsError(err) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestClassification(t *testing.T) {
	t.Parallel()
	for code, want := range map[int]bool{200: false, 400: false, 404: false, 408: true, 429: true, 500: true, 503: true} {
		if IsStatus(code) != want {
			t.Errorf("IsStatus(%d) = %v", code, !want)
		}
	}
	for err, want := range map[error]bool{nil: false, context.Canceled: false, errors.New("bad"): false,
		syscall.ECONNRESET: true, io.ErrUnexpectedEOF: true, context.DeadlineExceeded: true} {
		if IsError(err) != want {
			t.Errorf("IsError(%v) = %v", err, !want)
		}
	}
}
