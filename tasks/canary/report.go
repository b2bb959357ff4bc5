package canary

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"path/filepath"

	"github.com/gantry-ml/gantry/internal/objstore"
)

// writeReports writes report.json and report.html under --report-uri and into --report-dir
// (each when set); both copies name the --report-uri one.
func (e *Evaluator) writeReports(ctx context.Context, r *Report, o Options) error {
	var prefixes []objstore.URI
	if o.ReportURI != "" {
		u, err := objstore.Parse(o.ReportURI)
		if err != nil {
			return err
		}
		r.ReportURI = u.Join("report.html").String()
		prefixes = append(prefixes, u)
	}
	if o.ReportDir != "" {
		u, err := objstore.Parse("file://" + filepath.Clean(o.ReportDir) + "/")
		if err != nil {
			return err
		}
		prefixes = append(prefixes, u)
	}
	if len(prefixes) == 0 {
		return nil
	}
	j, _ := json.MarshalIndent(r, "", "  ")
	sum := sha256.Sum256(j)
	r.reportDigest = "sha256:" + hex.EncodeToString(sum[:])
	h, err := RenderHTML(r)
	if err != nil {
		return err
	}
	for _, u := range prefixes {
		if err := objstore.PutBytes(ctx, e.store, u.Join("report.json").String(), j); err != nil {
			return fmt.Errorf("writing report.json: %w", err)
		}
		if err := objstore.PutBytes(ctx, e.store, u.Join("report.html").String(), h); err != nil {
			return fmt.Errorf("writing report.html: %w", err)
		}
	}
	return nil
}

// RenderHTML renders the self-contained HTML report (inline CSS and SVG, no scripts).
func RenderHTML(r *Report) ([]byte, error) {
	var b bytes.Buffer
	if err := reportTmpl.Execute(&b, r); err != nil {
		return nil, fmt.Errorf("rendering report: %w", err)
	}
	return b.Bytes(), nil
}

type cell struct {
	X, Y, Count int
	Fill        string
	TextFill    string
}

func heatmap(s Score) []cell {
	var cells []cell
	maxOff := 1
	for t, row := range s.Confusion {
		for p, n := range row {
			if t != p && n > maxOff {
				maxOff = n
			}
		}
	}
	for t, row := range s.Confusion {
		support := 0
		for _, n := range row {
			support += n
		}
		for p, n := range row {
			var fill string
			if t == p {
				share := 0.0
				if support > 0 {
					share = float64(n) / float64(support)
				}
				fill = fmt.Sprintf("rgba(22,128,78,%.2f)", 0.15+0.85*share)
			} else {
				fill = fmt.Sprintf("rgba(200,45,45,%.2f)", math.Sqrt(float64(n)/float64(maxOff))*0.9)
			}
			text := "#1b1f24"
			if t == p && support > 0 && float64(n)/float64(support) > 0.6 {
				text = "#fff"
			}
			cells = append(cells, cell{X: p, Y: t, Count: n, Fill: fill, TextFill: text})
		}
	}
	return cells
}

type bar struct {
	X, Y, W, H float64
	Label      string
	Count      int
}

func histogram(s Score) []bar {
	maxC := 1
	for _, b := range s.Histogram {
		maxC = max(maxC, b.Count)
	}
	n := len(s.Histogram)
	var bars []bar
	for i, b := range s.Histogram {
		w := 440.0 / float64(max(n, 1))
		h := 150 * float64(b.Count) / float64(maxC)
		bars = append(bars, bar{X: 40 + float64(i)*w, Y: 170 - h, W: w - 4, H: h, Label: fmtMs(b.UpToMs), Count: b.Count})
	}
	return bars
}

func fmtMs(v float64) string {
	if v < 1 {
		return fmt.Sprintf("≤%.2g", v)
	}
	return fmt.Sprintf("≤%.0f", v)
}

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"heatmap": heatmap, "histogram": histogram,
	"pct":  func(f float64) string { return fmt.Sprintf("%.2f%%", 100*f) },
	"f4":   func(f float64) string { return fmt.Sprintf("%.4f", f) },
	"ms":   func(f float64) string { return fmt.Sprintf("%.2f ms", f) },
	"mul":  func(a, b int) int { return a * b },
	"add":  func(a, b int) int { return a + b },
	"addf": func(a, b float64) float64 { return a + b },
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:11] + "…"
		}
		return s
	},
	"delta": func(a, b float64) string { return fmt.Sprintf("%+.2f pp", 100*(a-b)) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Canary report: {{.Model}} — {{.Verdict}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;background:#f6f7f9;color:#1b1f24}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:16px;margin:0 0 12px}
.sub{color:#5b6470;margin-bottom:18px}
.verdict{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:600;color:#fff;text-transform:uppercase;font-size:12px;vertical-align:middle}
.pass{background:#16804e}.fail{background:#c62d2d}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px;margin-bottom:18px}
.card{background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:12px 14px}
.card .k{color:#5b6470;font-size:12px}.card .v{font-size:22px;font-weight:600}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px}
section{background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:16px;margin-bottom:16px}
table{border-collapse:collapse;width:100%}th,td{padding:5px 8px;border-bottom:1px solid #eef0f2;text-align:right}
th:first-child,td:first-child{text-align:left}th{color:#5b6470;font-weight:600;font-size:12px}
.ok{color:#16804e}.bad{color:#c62d2d;font-weight:600}
.reason{font-family:ui-monospace,Menlo,monospace;font-size:13px;background:#f6f7f9;padding:8px;border-radius:6px}
@media(max-width:800px){.grid{grid-template-columns:1fr}}
</style></head><body><main>
<h1>Canary report: {{.Model}} <span class="verdict {{.Verdict}}">{{.Verdict}}</span></h1>
<div class="sub">{{.Candidate.Samples}} samples from {{.Dataset}} (seed {{.Seed}}, {{.Digest | short}}) · protocol {{.Protocol}} · {{.Created.Format "2006-01-02 15:04:05 UTC"}}</div>
<div class="cards">
<div class="card"><div class="k">Accuracy</div><div class="v">{{pct .Candidate.Accuracy}}</div></div>
{{if .Compared}}<div class="card"><div class="k">Baseline accuracy</div><div class="v">{{pct .Baseline.Accuracy}}</div></div>{{else}}<div class="card"><div class="k">Baseline</div><div class="v" style="font-size:14px">{{.BaselineNote}}</div></div>{{end}}
<div class="card"><div class="k">Latency p50 / p99</div><div class="v">{{printf "%.1f" .Candidate.LatencyMs.P50}} / {{printf "%.1f" .Candidate.LatencyMs.P99}} ms</div></div>
<div class="card"><div class="k">Throughput</div><div class="v">{{printf "%.0f" .Candidate.Throughput}}/s</div></div>
<div class="card"><div class="k">Error rate</div><div class="v">{{pct .Candidate.ErrorRate}}</div></div>
</div>
<section><h2>Gates</h2><div class="reason">{{.Reason}}</div>
<table><tr><th>Gate</th><th>Limit</th><th>Value</th><th>Result</th></tr>
{{range .Gates}}<tr><td>{{.Name}}</td><td>{{f4 .Limit}}</td><td>{{f4 .Value}}</td><td class="{{if .Passed}}ok{{else}}bad{{end}}">{{if .Passed}}pass{{else}}FAIL{{end}}</td></tr>{{end}}
</table></section>
<div class="grid">
<section><h2>Confusion matrix (rows: true class, columns: predicted)</h2>
<svg viewBox="0 0 520 470" width="100%" role="img" aria-label="confusion matrix heatmap">
{{range $i, $c := .Candidate.PerClass}}<text x="86" y="{{add (mul $i 38) 104}}" font-size="11" text-anchor="end">{{short $c.Class}}</text>
<text transform="translate({{add (mul $i 38) 108}},80) rotate(-45)" font-size="11">{{short $c.Class}}</text>{{end}}
{{range heatmap .Candidate}}<rect x="{{add (mul .X 38) 90}}" y="{{add (mul .Y 38) 84}}" width="37" height="37" fill="{{.Fill}}" stroke="#fff"><title>true {{.Y}} → predicted {{.X}}: {{.Count}}</title></rect>
<text x="{{add (mul .X 38) 108}}" y="{{add (mul .Y 38) 106}}" font-size="10" text-anchor="middle" fill="{{.TextFill}}">{{.Count}}</text>{{end}}
</svg></section>
<section><h2>Request latency (ms, {{.Candidate.Requests}} requests)</h2>
<svg viewBox="0 0 510 200" width="100%" role="img" aria-label="latency histogram">
<line x1="38" y1="170" x2="484" y2="170" stroke="#8a939e"/>
{{range histogram .Candidate}}<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}" fill="#3b6fd1" rx="2"><title>{{.Label}} ms: {{.Count}}</title></rect>
<text x="{{addf .X 2}}" y="186" font-size="9">{{.Label}}</text>{{if .Count}}<text x="{{addf .X 2}}" y="{{addf .Y -3}}" font-size="9">{{.Count}}</text>{{end}}{{end}}
</svg>
<table><tr><th>p50</th><th>p90</th><th>p99</th><th>mean</th><th>max</th></tr>
<tr><td style="text-align:right">{{ms .Candidate.LatencyMs.P50}}</td><td>{{ms .Candidate.LatencyMs.P90}}</td><td>{{ms .Candidate.LatencyMs.P99}}</td><td>{{ms .Candidate.LatencyMs.Mean}}</td><td>{{ms .Candidate.LatencyMs.Max}}</td></tr></table>
</section></div>
<section><h2>Per class</h2>
<table><tr><th>Class</th><th>Support</th><th>Precision</th><th>Recall</th>{{if .Compared}}<th>Baseline recall</th><th>Δ recall</th>{{end}}</tr>
{{$b := and .Compared .Baseline}}{{range $i, $c := .Candidate.PerClass}}<tr><td>{{$c.Class}}</td><td>{{$c.Support}}</td><td>{{pct $c.Precision}}</td><td>{{pct $c.Recall}}</td>
{{if $b}}{{with index $b.PerClass $i}}<td>{{pct .Recall}}</td><td>{{delta $c.Recall .Recall}}</td>{{end}}{{end}}</tr>{{end}}
</table></section>
{{if .Compared}}<section><h2>Candidate vs baseline</h2>
<table><tr><th></th><th>Candidate</th><th>Baseline</th></tr>
<tr><td>Endpoint</td><td>{{.Candidate.Endpoint}}</td><td>{{.Baseline.Endpoint}}</td></tr>
<tr><td>Accuracy</td><td>{{pct .Candidate.Accuracy}}</td><td>{{pct .Baseline.Accuracy}}</td></tr>
<tr><td>p99 latency</td><td>{{ms .Candidate.LatencyMs.P99}}</td><td>{{ms .Baseline.LatencyMs.P99}}</td></tr>
<tr><td>Error rate</td><td>{{pct .Candidate.ErrorRate}}</td><td>{{pct .Baseline.ErrorRate}}</td></tr>
</table></section>{{end}}
{{if .Candidate.Errors}}<section><h2>Errors</h2><ul>{{range .Candidate.Errors}}<li class="reason">{{.}}</li>{{end}}</ul></section>{{end}}
</main></body></html>
`))
