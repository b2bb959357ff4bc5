package approve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/transient"
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

// Request logs the request and posts it to the webhook, retrying transient failures
// (o.Retries times). A webhook that refuses the request (4xx) is bad input.
func (g *Approver) Request(ctx context.Context, o RequestOptions) (Message, error) {
	if o.Run == "" {
		return Message{}, exitcode.Invalidf("--run-name is required")
	}
	if o.NotifyURL != "" {
		if u, err := url.Parse(o.NotifyURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Message{}, exitcode.Invalidf("--notify-url %q: want an http(s) URL", o.NotifyURL)
		}
	}
	m := NewMessage(o)
	g.log.Info("approval requested", "run", o.Run, "text", m.Text)
	if o.NotifyURL == "" {
		return m, nil
	}
	body, _ := json.Marshal(m)
	client := &http.Client{Transport: transient.NewTransport(g.transport, transient.WithRetries(o.Retries),
		transient.WithBackoff(200*time.Millisecond, 10*time.Second), transient.WithAttemptTimeout(30*time.Second), transient.WithLogger(g.log))}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.NotifyURL, bytes.NewReader(body))
	if err != nil {
		return m, exitcode.Invalidf("--notify-url: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return m, exitcode.Retryable(fmt.Errorf("notifying %s: %w", o.NotifyURL, err))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode < 300:
		g.log.Info("approval request delivered", "url", o.NotifyURL)
		return m, nil
	case transient.IsStatus(resp.StatusCode):
		return m, exitcode.Retryable(fmt.Errorf("notifying %s: webhook answered %s", o.NotifyURL, resp.Status))
	default:
		return m, exitcode.Invalidf("notify webhook refused the request: %s", resp.Status)
	}
}
