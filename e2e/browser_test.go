//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// shownReport is what the browser check compares the rendered page with (report.json).
type shownReport struct {
	Verdict   string `json:"verdict"`
	Candidate struct {
		Accuracy  float64 `json:"accuracy"`
		Answered  int     `json:"answered"`
		Confusion [][]int `json:"confusion"`
	} `json:"candidate"`
}

// seeReport opens a canary report through the Argo Server's artifact endpoint in headless
// Chromium (Debian's, driven over the DevTools protocol), as the person holding token: the page
// must render the verdict and the confusion matrix — ten by ten cells, laid out, whose counts add
// up to the answered samples of report.json — and its screenshot is kept in
// _output/e2e/<namespace>/<name>-report.png.
func (f *fixture) seeReport(url, token, name string, want shownReport) {
	f.t.Helper()
	ctx, cancel := f.browser(90 * time.Second)
	defer cancel()
	var shown struct {
		Verdict string `json:"verdict"`
		Cells   int    `json:"cells"`
		LaidOut int    `json:"laidOut"`
		Total   int    `json:"total"`
	}
	var png []byte
	err := chromedp.Run(ctx,
		network.Enable(),
		network.SetExtraHTTPHeaders(network.Headers{"Authorization": "Bearer " + token}),
		chromedp.Navigate(url),
		chromedp.WaitVisible(`svg[aria-label="confusion matrix heatmap"]`, chromedp.ByQuery),
		chromedp.Evaluate(`(() => {
			const svg = document.querySelector('svg[aria-label="confusion matrix heatmap"]');
			const rects = [...svg.querySelectorAll('rect')];
			const counts = [...svg.querySelectorAll('text[text-anchor="middle"]')].map(t => parseInt(t.textContent, 10));
			return {
				verdict: document.querySelector('h1 .verdict').innerText,
				cells: rects.length,
				laidOut: rects.filter(r => { const b = r.getBoundingClientRect(); return b.width > 10 && b.height > 10; }).length,
				total: counts.reduce((a, b) => a + b, 0),
			};
		})()`, &shown),
		chromedp.FullScreenshot(&png, 100), // 100: PNG (below: JPEG)
	)
	if err != nil {
		f.t.Fatalf("%s report in Chromium (%s): %v", name, url, err)
	}
	dir := f.screenshot(name+"-report", png)
	cells := len(want.Candidate.Confusion) * len(want.Candidate.Confusion)
	if !strings.EqualFold(shown.Verdict, want.Verdict) || shown.Cells != cells || shown.LaidOut != cells || shown.Total != want.Candidate.Answered {
		f.t.Errorf("%s report as Chromium renders it: verdict %q, %d cells (%d laid out), counts adding up to %d; want %q, %d cells, %d answered",
			name, shown.Verdict, shown.Cells, shown.LaidOut, shown.Total, want.Verdict, cells, want.Candidate.Answered)
	}
	f.t.Logf("%s report rendered in Chromium: verdict %s, %d×%d matrix; screenshot %s", name, shown.Verdict, len(want.Candidate.Confusion), len(want.Candidate.Confusion), filepath.Join(dir, name+"-report.png"))
}

// browser starts headless Chromium (Debian's, driven over the DevTools protocol) with a profile
// of its own; cancel stops it.
func (f *fixture) browser(timeout time.Duration) (context.Context, context.CancelFunc) {
	f.t.Helper()
	browser, err := exec.LookPath("chromium")
	if err != nil {
		f.t.Fatalf("chromium not found (hack/install-deps.sh --browser): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.UserDataDir(f.t.TempDir()), chromedp.WindowSize(1200, 1900))
	actx, cancelAlloc := chromedp.NewExecAllocator(f.ctx, opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	return ctx, func() { cancelTimeout(); cancelTab(); cancelAlloc() }
}

// screenshot keeps png as _output/e2e/<namespace>/<name>.png and returns the directory.
func (f *fixture) screenshot(name string, png []byte) string {
	dir := filepath.Join(repoRoot, "_output", "e2e", f.ns)
	if os.MkdirAll(dir, 0o755) == nil {
		_ = os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
	}
	return dir
}

// approveInUI approves run in the Argo UI (served by the Argo Server at server) as a person with
// token: the UI's own login page (client authentication: the token pasted, as the Argo docs tell
// users), the run's page whose DAG shows the approval node waiting, RESUME and its confirmation.
// The screenshots (ui-login, ui-waiting, ui-resumed) are kept in _output/e2e/<namespace>/.
func (f *fixture) approveInUI(server, run, token string) {
	f.t.Helper()
	ctx, cancel := f.browser(3 * time.Minute)
	defer cancel()
	shot := func(name string) chromedp.Action {
		return chromedp.ActionFunc(func(ctx context.Context) error {
			var png []byte
			if err := chromedp.FullScreenshot(&png, 100).Do(ctx); err != nil {
				return err
			}
			f.screenshot(name, png)
			return nil
		})
	}
	// The approval node as the DAG draws it: its label, and the phase the UI gives it as a class.
	var approval string
	approvalNode := `(() => {
		const g = [...document.querySelectorAll('svg g')].find(g => {
			const l = g.querySelector(':scope > g > text.node-label');
			return l && l.textContent.trim() === 'approval';
		});
		const n = g && g.querySelector(':scope > g.node');
		return n ? n.getAttribute('class') : '';
	})()`
	err := chromedp.Run(ctx,
		chromedp.Navigate(server+"/login"),
		chromedp.WaitVisible(`#token`, chromedp.ByQuery),
		chromedp.SendKeys(`#token`, "Bearer "+token, chromedp.ByQuery),
		shot("ui-login"),
		chromedp.Click(`//textarea[@id="token"]/../following-sibling::div/a[contains(., "Login")]`, chromedp.BySearch),
		chromedp.Sleep(500*time.Millisecond), // the cookie is set by the click; the page then loads the UI
		chromedp.Navigate(server+"/workflows/"+f.ns+"/"+run),
		chromedp.WaitVisible(`svg text.node-label`, chromedp.ByQuery),
		// A pop-up the UI shows a newcomer (where its Argo Server leaves them on), closed as a person would.
		chromedp.Evaluate(`document.querySelectorAll('.modal .modal-close').forEach(x => x.click())`, nil),
		chromedp.Poll(approvalNode+` !== ''`, nil, chromedp.WithPollingTimeout(time.Minute)),
		chromedp.Evaluate(approvalNode, &approval),
		shot("ui-waiting"),
	)
	if err != nil {
		f.t.Fatalf("the Argo UI at %s, run %s: %v", server, run, err)
	}
	if !strings.Contains(approval, "Suspended") {
		f.t.Fatalf("the Argo UI draws the approval node as %q, want it waiting (Suspended)", approval)
	}
	err = chromedp.Run(ctx,
		chromedp.Click(`//button[contains(normalize-space(.), "RESUME")]`, chromedp.BySearch),
		chromedp.WaitVisible(`button[qe-id="argo-popup-ok-button"]`, chromedp.ByQuery), // "Are you sure you want to resume this workflow?"
		chromedp.Click(`button[qe-id="argo-popup-ok-button"]`, chromedp.ByQuery),
		chromedp.Poll(approvalNode+` .includes('Succeeded')`, nil, chromedp.WithPollingTimeout(time.Minute)),
		shot("ui-resumed"),
	)
	if err != nil {
		f.t.Fatalf("resuming %s in the Argo UI: %v", run, err)
	}
	f.t.Logf("approved %s in the Argo UI (approval node %q → Succeeded); screenshots in %s", run, approval, filepath.Join(repoRoot, "_output", "e2e", f.ns))
}

// argoServerURL is the Argo Server (API, artifacts, UI) as this test process reaches it.
func (f *fixture) argoServerURL() string {
	f.t.Helper()
	svc, err := kube.CoreV1().Services("argo").Get(f.ctx, "argo-server", metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port)
}

// tokenOf is a one-hour token of the person's (or step's) ServiceAccount.
func (f *fixture) tokenOf(person string) string {
	f.t.Helper()
	tok, err := kube.CoreV1().ServiceAccounts(f.ns).CreateToken(f.ctx, person,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return tok.Status.Token
}
