package approve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/gantry-ml/gantry/internal/exitcode"
)

// RequestOptions describe an approval request.
type RequestOptions struct {
	Namespace string
	Run       string
	NotifyURL string // generic JSON with a Slack-compatible "text"; empty: log only
	Candidate Candidate
	Retries   int
}

// Message is what the webhook receives.
type Message struct {
	Text      string    `json:"text"` // Slack-compatible
	Run       string    `json:"run"`
	Namespace string    `json:"namespace"`
	Candidate Candidate `json:"candidate"`
	Approve   []string  `json:"approveCommands"`
	Reject    string    `json:"rejectCommand"`
}

// NewMessage builds the request with the exact commands to decide.
func NewMessage(o RequestOptions) Message {
	c := o.Candidate
	approve := []string{
		fmt.Sprintf("argo resume %s -n %s", o.Run, o.Namespace),
		fmt.Sprintf("approver approve %s -n %s --reason '…'", o.Run, o.Namespace),
	}
	reject := fmt.Sprintf("approver reject %s -n %s --reason '…'", o.Run, o.Namespace)
	var b strings.Builder
	fmt.Fprintf(&b, "Model %s version %s is waiting for approval (run %s).\n", c.ModelName, c.ModelVersion, o.Run)
	fmt.Fprintf(&b, "Canary accuracy %s", c.Accuracy)
	if c.BaselineAccuracy != "" {
		fmt.Fprintf(&b, " vs production %s", c.BaselineAccuracy)
	}
	if c.P99Ms != "" {
		fmt.Fprintf(&b, ", p99 %s ms", c.P99Ms)
	}
	b.WriteString(".\n")
	if c.ReportURI != "" {
		fmt.Fprintf(&b, "Report: %s\n", c.ReportURI)
	}
	fmt.Fprintf(&b, "Approve: `%s` or `%s`\nReject: `%s`", approve[0], approve[1], reject)
	return Message{Text: b.String(), Run: o.Run, Namespace: o.Namespace, Candidate: c, Approve: approve, Reject: reject}
}

// Request logs the request and posts it to the webhook with retries.
func Request(ctx context.Context, client *http.Client, o RequestOptions, log *slog.Logger) (Message, error) {
	if o.Run == "" {
		return Message{}, exitcode.Invalidf("--run-name is required")
	}
	if o.NotifyURL != "" {
		if u, err := url.Parse(o.NotifyURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Message{}, exitcode.Invalidf("--notify-url %q: want an http(s) URL", o.NotifyURL)
		}
	}
	m := NewMessage(o)
	log.Info("approval requested", "run", o.Run, "text", m.Text)
	if o.NotifyURL == "" {
		return m, nil
	}
	body, _ := json.Marshal(m)
	backoff := wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: o.Retries + 1, Cap: 10 * time.Second}
	var last error
	err := wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.NotifyURL, bytes.NewReader(body))
		if err != nil {
			return false, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			last = err
			log.Warn("notify failed, retrying", "error", err)
			return false, nil
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode < 300:
			return true, nil
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
			last = fmt.Errorf("notify webhook answered %s", resp.Status)
			log.Warn("notify failed, retrying", "status", resp.Status)
			return false, nil
		default:
			return false, exitcode.Invalidf("notify webhook refused the request: %s", resp.Status)
		}
	})
	if err != nil {
		if exitcode.Of(err) == exitcode.BadInput {
			return m, err
		}
		if last != nil {
			err = last
		}
		return m, exitcode.Retryable(fmt.Errorf("notifying %s: %w", o.NotifyURL, err))
	}
	log.Info("approval request delivered", "url", o.NotifyURL)
	return m, nil
}
