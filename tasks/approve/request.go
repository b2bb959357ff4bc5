package approve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
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

// Notified is the outcome of Request.
type Notified struct {
	Message Message
	// Delivered is false when the webhook could not be reached or refused the request after the
	// retries: notification is best effort, the run goes on to wait for a decision (and silence
	// is a rejection), so a broken webhook never blocks or fails a run.
	Delivered bool
	Reason    string // why not delivered
}

// Values renders the results: message, notified, candidate (JSON, read by `approver list`).
func (n *Notified) Values() map[string]string {
	text := n.Message.Text
	if len(text) > 1000 {
		text = text[:1000]
	}
	c, _ := json.Marshal(n.Message.Candidate)
	return map[string]string{"message": text, "notified": strconv.FormatBool(n.Delivered), CandidateResult: string(c)}
}

// webhookHost names a webhook in logs and errors without its path or query, where Slack-style
// webhooks carry their secret.
func webhookHost(u *url.URL) string { return u.Scheme + "://" + u.Host }

// Request logs the request and posts it to the webhook, retrying transient failures
// (o.Retries times). The webhook URL is a secret: it never appears in logs, errors or results.
// Only a URL that is not http(s) is bad input; any delivery failure is a result (Delivered false).
func (g *Approver) Request(ctx context.Context, o RequestOptions) (*Notified, error) {
	if o.Run == "" {
		return nil, exitcode.Invalidf("--run-name is required")
	}
	var target *url.URL
	if o.NotifyURL != "" {
		u, err := url.Parse(o.NotifyURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, exitcode.Invalidf("--notify-url: want an http(s) URL (the value is a secret and not shown)")
		}
		target = u
	}
	n := &Notified{Message: NewMessage(o)}
	g.log.Info("approval requested", "run", o.Run, "text", n.Message.Text)
	if target == nil {
		n.Reason = "no webhook configured"
		return n, nil
	}
	host := webhookHost(target)
	body, _ := json.Marshal(n.Message)
	client := &http.Client{Transport: transient.NewTransport(g.transport, transient.WithRetries(o.Retries),
		transient.WithBackoff(200*time.Millisecond, 10*time.Second), transient.WithAttemptTimeout(30*time.Second), transient.WithLogger(g.log))}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.NotifyURL, bytes.NewReader(body))
	if err != nil {
		return nil, exitcode.Invalidf("--notify-url: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the URL
		}
		n.Reason = fmt.Sprintf("webhook %s unreachable: %v", host, err)
	default:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode < 300 {
			n.Delivered = true
			g.log.Info("approval request delivered", "webhook", host)
			return n, nil
		}
		n.Reason = fmt.Sprintf("webhook %s answered %s", host, resp.Status)
	}
	g.log.Warn("approval request not delivered; the run waits for a decision anyway", "reason", n.Reason)
	return n, nil
}
