//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
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
	browser, err := exec.LookPath("chromium")
	if err != nil {
		f.t.Fatalf("chromium not found (hack/install-deps.sh --browser): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.UserDataDir(f.t.TempDir()), chromedp.WindowSize(1200, 1900))
	actx, cancel := chromedp.NewExecAllocator(f.ctx, opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var shown struct {
		Verdict string `json:"verdict"`
		Cells   int    `json:"cells"`
		LaidOut int    `json:"laidOut"`
		Total   int    `json:"total"`
	}
	var png []byte
	err = chromedp.Run(ctx,
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
	dir := filepath.Join(repoRoot, "_output", "e2e", f.ns)
	if os.MkdirAll(dir, 0o755) == nil {
		_ = os.WriteFile(filepath.Join(dir, name+"-report.png"), png, 0o644)
	}
	cells := len(want.Candidate.Confusion) * len(want.Candidate.Confusion)
	if !strings.EqualFold(shown.Verdict, want.Verdict) || shown.Cells != cells || shown.LaidOut != cells || shown.Total != want.Candidate.Answered {
		f.t.Errorf("%s report as Chromium renders it: verdict %q, %d cells (%d laid out), counts adding up to %d; want %q, %d cells, %d answered",
			name, shown.Verdict, shown.Cells, shown.LaidOut, shown.Total, want.Verdict, cells, want.Candidate.Answered)
	}
	f.t.Logf("%s report rendered in Chromium: verdict %s, %d×%d matrix; screenshot %s", name, shown.Verdict, len(want.Candidate.Confusion), len(want.Candidate.Confusion), filepath.Join(dir, name+"-report.png"))
}
