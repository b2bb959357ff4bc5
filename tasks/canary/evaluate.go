package canary

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/gantry-ml/gantry/internal/idx"
	"github.com/gantry-ml/gantry/internal/objstore"
)

// Verdicts.
const (
	Pass = "pass"
	Fail = "fail"
)

// Score is one endpoint's performance on the samples.
type Score struct {
	Endpoint       string       `json:"endpoint"`
	Wire           string       `json:"wire,omitempty"`        // v1 json, v2 json or v2 binary: what was negotiated
	ModelDigest    string       `json:"modelDigest,omitempty"` // what the endpoint said it serves (checked against --model-digest)
	Samples        int          `json:"samples"`
	Answered       int          `json:"answered"`
	Correct        int          `json:"correct"`
	Accuracy       float64      `json:"accuracy"`  // correct / answered: only answers are judged for accuracy
	ErrorRate      float64      `json:"errorRate"` // (error answers + unanswered) / samples
	ErrorAnswers   int          `json:"errorAnswers"`
	Unanswered     int          `json:"unanswered"` // samples with no answer after every retry
	Requests       int          `json:"requests"`
	FailedRequests int          `json:"failedRequests"`
	Retries        int          `json:"retries"`          // requests sent again (by the transport, and batches in the retry rounds)
	RetryRounds    int          `json:"retryRounds"`      // rounds of re-sending the batches that got no answer
	Errors         []string     `json:"errors,omitempty"` // first few distinct messages
	LatencyMs      Latency      `json:"latencyMs"`
	Throughput     float64      `json:"throughputPerSecond"` // answered images per second, wall clock
	WallSeconds    float64      `json:"wallSeconds"`
	PerClass       []ClassScore `json:"perClass"`
	Confusion      [][]int      `json:"confusion"` // [true][predicted]
	Histogram      []Bucket     `json:"latencyHistogram"`
}

// Latency percentiles of successful requests, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Mean float64 `json:"mean"`
	Max  float64 `json:"max"`
}

// Bucket of the latency histogram.
type Bucket struct {
	UpToMs float64 `json:"upToMs"`
	Count  int     `json:"count"`
}

// ClassScore is precision and recall of one class.
type ClassScore struct {
	Class     string  `json:"class"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	Support   int     `json:"support"`
}

// Gate is one check and its outcome.
type Gate struct {
	Name   string  `json:"name"`
	Limit  float64 `json:"limit"`
	Value  float64 `json:"value"`
	Passed bool    `json:"passed"`
	Text   string  `json:"text"`
}

// Report is report.json.
type Report struct {
	Model     string `json:"model"`
	Protocol  string `json:"protocol"`
	Dataset   string `json:"dataset"`
	Digest    string `json:"datasetDigest"`
	Seed      uint64 `json:"seed"`
	Verdict   string `json:"verdict"`
	Reason    string `json:"reason"`
	Gates     []Gate `json:"gates"`
	Candidate Score  `json:"candidate"`
	Baseline  *Score `json:"baseline,omitempty"`
	// BaselineNote says why there is no comparison: no production model yet, or one that did
	// not answer. Empty when the candidate was compared.
	BaselineNote string    `json:"baselineNote,omitempty"`
	Created      time.Time `json:"created"`
	ReportURI    string    `json:"reportURI,omitempty"`
	// reportDigest is the sha256 of report.json as written (empty: not written).
	reportDigest string
}

// Evaluation is the predicate of the evaluation attestation (gantry's evaluation/v1, documented
// in docs/contracts.md): what was measured on which served model, against which gates, and the
// verdict — a pass is the link promote counts.
func (r *Report) Evaluation(o Options) map[string]any {
	metrics := map[string]any{"accuracy": r.Candidate.Accuracy, "errorRate": r.Candidate.ErrorRate, "p99Ms": r.Candidate.LatencyMs.P99,
		"samples": r.Candidate.Samples, "answered": r.Candidate.Answered}
	var gates []any
	for _, g := range r.Gates {
		gates = append(gates, map[string]any{"name": g.Name, "limit": g.Limit, "value": g.Value, "passed": g.Passed})
	}
	p := map[string]any{
		"stage": o.Stage, "verdict": r.Verdict, "reason": r.Reason,
		"servedDigest": r.Candidate.ModelDigest, "endpoint": o.Endpoint, "protocol": r.Protocol, "wire": r.Candidate.Wire,
		"dataset": map[string]any{"uri": r.Dataset, "digest": r.Digest, "seed": r.Seed, "limit": o.Limit},
		"metrics": metrics, "gates": gates, "evaluatedAt": r.Created.Format(time.RFC3339),
	}
	if r.Baseline != nil {
		p["baseline"] = map[string]any{"digest": r.Baseline.ModelDigest, "accuracy": r.Baseline.Accuracy, "endpoint": r.Baseline.Endpoint}
	} else {
		p["baseline"] = map[string]any{"note": r.BaselineNote}
	}
	if r.ReportURI != "" || r.reportDigest != "" {
		p["report"] = map[string]any{"uri": r.ReportURI, "digest": r.reportDigest}
	}
	return p
}

// Evaluator runs evaluations.
type Evaluator struct {
	store     objstore.Store
	transport http.RoundTripper
	log       *slog.Logger
}

// Option configures an Evaluator.
type Option func(*Evaluator)

// WithLogger sets the progress logger.
func WithLogger(l *slog.Logger) Option { return func(e *Evaluator) { e.log = l } }

// WithTransport sets the transport under the evaluator's retries (default: pooled, two idle
// connections per worker).
func WithTransport(t http.RoundTripper) Option { return func(e *Evaluator) { e.transport = t } }

// NewEvaluator returns an Evaluator reading datasets from store.
func NewEvaluator(store objstore.Store, opts ...Option) *Evaluator {
	e := &Evaluator{store: store, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(e)
	}
	return e
}

// negotiate settles the wire format with an endpoint, saying what the server lacks.
func (e *Evaluator) negotiate(ctx context.Context, c *http.Client, endpoint, model, protocol string) wire {
	w := negotiate(ctx, c, strings.TrimRight(endpoint, "/"), model, protocol)
	e.log.Info("protocol", "endpoint", endpoint, "wire", w.format, "input", w.input, "output", w.output)
	if w.note != "" {
		e.log.Warn("protocol feature missing", "endpoint", endpoint, "note", w.note)
	}
	return w
}

// Evaluate scores the candidate (and baseline), applies the gates and writes the report.
func (e *Evaluator) Evaluate(ctx context.Context, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	data, err := idx.Load(ctx, e.store, o.DatasetURI, o.Split, len(o.ClassNames))
	if err != nil {
		return nil, fmt.Errorf("loading evaluation data: %w", err)
	}
	sample := sampleIndices(data.Images.N, o.Limit, o.Seed)
	base := e.transport
	if base == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = o.Concurrency * 2
		base = tr
	}
	client := newClient(base, o)
	rep := &Report{Model: o.ModelName, Protocol: o.Protocol, Dataset: o.DatasetURI, Digest: data.Digest, Seed: o.Seed, Created: time.Now().UTC()}
	if o.ModelDigest != "" {
		served, err := servedDigest(ctx, client, o.Endpoint, o.ModelName)
		if err != nil {
			return nil, err
		}
		rep.Candidate.ModelDigest, rep.Candidate.Endpoint = served, o.Endpoint
		if served != o.ModelDigest {
			// A result, not a crash: the run fails with the reason, nothing is scored.
			what := "a model with digest " + served
			if served == "" {
				what = "a model that does not name its digest"
			}
			rep.Verdict = Fail
			rep.Reason = fmt.Sprintf("%s refused: %s serves %s, not the candidate %s (another run's model?)", o.Stage, o.Endpoint, what, o.ModelDigest)
			e.log.Warn("verdict", "verdict", rep.Verdict, "reason", rep.Reason)
			if err := e.writeReports(ctx, rep, o); err != nil {
				return rep, err
			}
			return rep, nil
		}
	}
	e.log.Info("scoring candidate", "endpoint", o.Endpoint, "samples", len(sample), "batch", o.BatchSize, "concurrency", o.Concurrency)
	served := rep.Candidate.ModelDigest
	cw := e.negotiate(ctx, client, o.Endpoint, o.ModelName, o.Protocol)
	rep.Candidate = e.score(ctx, newPredictor(client, strings.TrimRight(o.Endpoint, "/"), o.ModelName, cw), data, sample, o)
	rep.Candidate.Wire = cw.format
	rep.Candidate.Endpoint, rep.Candidate.ModelDigest = o.Endpoint, served
	if o.BaselineEndpoint != "" {
		e.log.Info("scoring baseline on the same samples", "endpoint", o.BaselineEndpoint)
		// Which model production serves now: promote replaces only that one (compare-and-swap).
		// An unreachable baseline is judged by its scores below (a required one fails the canary).
		baseDigest, err := servedDigest(ctx, client, o.BaselineEndpoint, o.BaselineModel)
		if err != nil || baseDigest == "" {
			// Unknown is said, never left empty: promote refuses it (its compare-and-swap fails
			// closed) where an empty value once meant "don't check".
			e.log.Info("could not tell which model the baseline serves", "endpoint", o.BaselineEndpoint, "err", err)
			baseDigest = UnknownBaseline
		}
		bw := e.negotiate(ctx, client, o.BaselineEndpoint, o.BaselineModel, o.Protocol)
		b := e.score(ctx, newPredictor(client, strings.TrimRight(o.BaselineEndpoint, "/"), o.BaselineModel, bw), data, sample, o)
		b.Wire = bw.format
		b.Endpoint, b.ModelDigest = o.BaselineEndpoint, baseDigest
		rep.Baseline = &b
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch {
	case o.BaselineEndpoint == "":
		rep.BaselineNote = NoProductionYet
	case rep.Baseline.Answered == 0:
		rep.BaselineNote = "the baseline " + o.BaselineEndpoint + " answered no request: no comparison"
	}
	rep.Gates = gates(rep, o)
	rep.Verdict, rep.Reason = verdict(rep, o.Stage)
	e.log.Info("verdict", "verdict", rep.Verdict, "reason", rep.Reason)
	if err := e.writeReports(ctx, rep, o); err != nil {
		return rep, err
	}
	return rep, nil
}

// sampleIndices picks limit of n indices reproducibly (all, in order, when limit is 0).
func sampleIndices(n, limit int, seed uint64) []int {
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	if limit <= 0 || limit >= n {
		return all
	}
	r := rand.New(rand.NewPCG(seed, 0x6a09e667f3bcc908))
	r.Shuffle(n, func(i, j int) { all[i], all[j] = all[j], all[i] })
	s := all[:limit]
	sort.Ints(s)
	return s
}

func (e *Evaluator) score(ctx context.Context, p *predictor, data *idx.Split, sample []int, o Options) Score {
	classes := len(o.ClassNames)
	type batch struct{ idx []int }
	preds := make([]int, len(sample)) // -1: no answer; -2: an error answer
	var (
		mu        sync.Mutex
		latencies []float64
		failed    int
		retries   int // requests sent again: by the transport, and whole batches in the retry rounds
		errs      = map[string]bool{}
		errList   []string
		done      int
		nextLog   = max(1, len(sample)/10)
	)
	note := func(err error) {
		if msg := err.Error(); !errs[msg] && len(errList) < 5 {
			errs[msg] = true
			errList = append(errList, msg)
		}
	}
	// send scores the batches with o.Concurrency workers and returns those that got no answer
	// (a timeout, a reset or refused connection, 408/429/502/503/504 after the transport's own
	// retries): the server may have been starved or restarting, not wrong. An error answer
	// (another status, a body that does not decode) is the model's, and final.
	send := func(list []batch, first bool) []batch {
		ch := make(chan batch)
		var unanswered []batch
		var wg sync.WaitGroup
		for w := 0; w < o.Concurrency; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b := range ch {
					imgs := make([][]byte, len(b.idx))
					for i, s := range b.idx {
						imgs[i] = data.Images.Image(sample[s])
					}
					rows, lat, again, err := p.predict(ctx, imgs, classes)
					mu.Lock()
					retries += again
					var na *noAnswer
					switch {
					case err != nil && errors.As(err, &na) && ctx.Err() == nil:
						unanswered = append(unanswered, b)
						for _, s := range b.idx {
							preds[s] = -1
						}
						note(err)
					case err != nil:
						failed++
						for _, s := range b.idx {
							preds[s] = -2
						}
						note(err)
					default:
						latencies = append(latencies, float64(lat.Microseconds())/1000)
						for i, s := range b.idx {
							preds[s] = argmax(rows[i])
						}
					}
					if first {
						done += len(b.idx)
						if done >= nextLog {
							e.log.Info("progress", "endpoint", p.url, "done", done, "of", len(sample), "percent", 100*done/len(sample))
							nextLog += max(1, len(sample)/10)
						}
					}
					mu.Unlock()
				}
			}()
		}
	feed:
		for _, b := range list {
			select {
			case ch <- b:
			case <-ctx.Done():
				break feed
			}
		}
		close(ch)
		wg.Wait()
		return unanswered
	}
	start := time.Now()
	var all []batch
	for s := 0; s < len(sample); s += o.BatchSize {
		ix := make([]int, 0, o.BatchSize)
		for i := s; i < min(len(sample), s+o.BatchSize); i++ {
			ix = append(ix, i)
		}
		all = append(all, batch{ix})
	}
	pending := send(all, true)
	// What got no answer is sent again after the first pass — once the load that starved the
	// server may have passed — with backoff, each batch at most o.BatchRetries more times, while
	// the retry budget lasts. What still has no answer then counts in the error rate.
	rounds := 0
	if len(pending) > 0 && o.BatchRetries > 0 && o.RetryBudget > 0 {
		deadline := time.Now().Add(o.RetryBudget)
		bo := wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.2, Steps: o.BatchRetries, Cap: 30 * time.Second}
		for rounds < o.BatchRetries && len(pending) > 0 && ctx.Err() == nil {
			pause := bo.Step()
			if time.Now().Add(pause).After(deadline) {
				break
			}
			e.log.Info("retrying batches that got no answer", "endpoint", p.url, "batches", len(pending), "round", rounds+1, "of", o.BatchRetries, "after", pause.Round(time.Millisecond))
			select {
			case <-time.After(pause):
			case <-ctx.Done():
			}
			rounds++
			retries += len(pending)
			pending = send(pending, false)
		}
	}
	wall := time.Since(start).Seconds()

	sc := Score{Samples: len(sample), Requests: (len(sample) + o.BatchSize - 1) / o.BatchSize, FailedRequests: failed + len(pending), Errors: errList,
		WallSeconds: wall, Retries: retries, RetryRounds: rounds}
	sc.Confusion = make([][]int, classes)
	for i := range sc.Confusion {
		sc.Confusion[i] = make([]int, classes)
	}
	for i, pr := range preds {
		switch pr {
		case -1:
			sc.Unanswered++
			continue
		case -2:
			sc.ErrorAnswers++
			continue
		}
		sc.Answered++
		truth := int(data.Labels[sample[i]])
		sc.Confusion[truth][pr]++
		if truth == pr {
			sc.Correct++
		}
	}
	if sc.Answered > 0 {
		sc.Accuracy = float64(sc.Correct) / float64(sc.Answered)
	}
	if sc.Samples > 0 {
		sc.ErrorRate = float64(sc.Samples-sc.Answered) / float64(sc.Samples)
	}
	if wall > 0 {
		sc.Throughput = float64(sc.Answered) / wall
	}
	for c := 0; c < classes; c++ {
		var tp, predicted, support int
		for t := 0; t < classes; t++ {
			predicted += sc.Confusion[t][c]
			support += sc.Confusion[c][t]
		}
		tp = sc.Confusion[c][c]
		cs := ClassScore{Class: o.ClassNames[c], Support: support}
		if predicted > 0 {
			cs.Precision = float64(tp) / float64(predicted)
		}
		if support > 0 {
			cs.Recall = float64(tp) / float64(support)
		}
		sc.PerClass = append(sc.PerClass, cs)
	}
	sc.LatencyMs, sc.Histogram = latencyStats(latencies)
	return sc
}

func argmax(r []float32) int {
	best := 0
	for j, v := range r {
		if v > r[best] {
			best = j
		}
	}
	return best
}

func latencyStats(ms []float64) (Latency, []Bucket) {
	if len(ms) == 0 {
		return Latency{}, nil
	}
	sort.Float64s(ms)
	pct := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(ms)))) - 1
		return ms[max(0, min(i, len(ms)-1))]
	}
	var sum float64
	for _, v := range ms {
		sum += v
	}
	l := Latency{P50: pct(0.50), P90: pct(0.90), P99: pct(0.99), Mean: sum / float64(len(ms)), Max: ms[len(ms)-1]}
	// Log-spaced buckets from 0.25 ms doubling up to the max.
	var buckets []Bucket
	for up := 0.25; ; up *= 2 {
		buckets = append(buckets, Bucket{UpToMs: up})
		if up >= l.Max {
			break
		}
	}
	for _, v := range ms {
		for i := range buckets {
			if v <= buckets[i].UpToMs {
				buckets[i].Count++
				break
			}
		}
	}
	return l, buckets
}

func gates(r *Report, o Options) []Gate {
	c := r.Candidate
	var g []Gate
	g = append(g, Gate{Name: "max-error-rate", Limit: o.MaxErrorRate, Value: c.ErrorRate, Passed: c.ErrorRate <= o.MaxErrorRate,
		Text: fmt.Sprintf("error rate %.4f (%d of %d samples: %d error answers, %d unanswered after %d retries) vs max %.4f",
			c.ErrorRate, c.Samples-c.Answered, c.Samples, c.ErrorAnswers, c.Unanswered, c.Retries, o.MaxErrorRate)})
	if o.MinAccuracy > 0 {
		g = append(g, Gate{Name: "min-accuracy", Limit: o.MinAccuracy, Value: c.Accuracy, Passed: c.Accuracy >= o.MinAccuracy,
			Text: fmt.Sprintf("accuracy %.4f vs min %.4f", c.Accuracy, o.MinAccuracy)})
	}
	if o.MaxP99Ms > 0 {
		g = append(g, Gate{Name: "max-p99-ms", Limit: o.MaxP99Ms, Value: c.LatencyMs.P99, Passed: c.Answered > 0 && c.LatencyMs.P99 <= o.MaxP99Ms,
			Text: fmt.Sprintf("p99 %.1fms vs max %.1fms", c.LatencyMs.P99, o.MaxP99Ms)})
	}
	if r.Baseline == nil {
		g = append(g, Gate{Name: "max-accuracy-drop", Passed: true, Text: NoProductionYet})
	} else if r.Baseline.Answered == 0 && o.BaselineOptional {
		g = append(g, Gate{Name: "max-accuracy-drop", Passed: true, Text: "no baseline to compare with (" + o.BaselineEndpoint + " answered no request)"})
	} else if r.Baseline != nil && r.Baseline.ErrorRate > o.MaxErrorRate {
		g = append(g, Gate{Name: "max-accuracy-drop", Limit: o.MaxAccuracyDrop, Value: -1, Passed: false,
			Text: fmt.Sprintf("baseline %s could not be scored (error rate %.4f): no comparison possible", o.BaselineEndpoint, r.Baseline.ErrorRate)})
	} else if r.Baseline != nil {
		drop := r.Baseline.Accuracy - c.Accuracy
		g = append(g, Gate{Name: "max-accuracy-drop", Limit: o.MaxAccuracyDrop, Value: drop, Passed: drop <= o.MaxAccuracyDrop+1e-12,
			Text: fmt.Sprintf("accuracy %.4f vs baseline %.4f (drop %.4f, max %.4f)", c.Accuracy, r.Baseline.Accuracy, drop, o.MaxAccuracyDrop)})
	}
	return g
}

func verdict(r *Report, stage string) (string, string) {
	var failed, passed []string
	for _, g := range r.Gates {
		if g.Passed {
			passed = append(passed, g.Text)
		} else {
			failed = append(failed, g.Text)
		}
	}
	if len(failed) > 0 {
		return Fail, stage + " failed: " + strings.Join(failed, "; ")
	}
	return Pass, stage + " passed: " + strings.Join(passed, "; ")
}

// Values renders the results.
func (r *Report) Values() map[string]string {
	base := ""
	if r.Baseline != nil && r.Baseline.Answered > 0 { // not "0.0000" for a baseline that answered nothing
		base = fmt.Sprintf("%.4f", r.Baseline.Accuracy)
	}
	reason := r.Reason
	if len(reason) > 1000 {
		reason = reason[:1000]
	}
	// What production served when the canary compared against it: promote refuses to replace
	// anything else ("none": there was no production; "unknown": it did not say, and promote
	// refuses that too).
	baseDigest := NoBaseline
	if r.Baseline != nil {
		baseDigest = r.Baseline.ModelDigest
		if baseDigest == "" {
			baseDigest = UnknownBaseline
		}
	}
	return map[string]string{
		"verdict": r.Verdict, "accuracy": fmt.Sprintf("%.4f", r.Candidate.Accuracy), "baseline-accuracy": base,
		"p99-ms": fmt.Sprintf("%.2f", r.Candidate.LatencyMs.P99), "reason": reason, "report-uri": r.ReportURI,
		"baseline-digest": baseDigest,
	}
}

// NoProductionYet is the report's note (and the regression gate's text) without a baseline.
const NoProductionYet = "no production model yet (no baseline given): nothing to compare with"

// Compared reports whether the candidate was compared with a baseline that answered.
func (r *Report) Compared() bool { return r.Baseline != nil && r.Baseline.Answered > 0 }

// NoBaseline is the baseline-digest result when there was no production to compare against.
const NoBaseline = "none"

// UnknownBaseline is the baseline-digest result when a baseline was given but which model it
// serves could not be told (no answer, no digest in its metadata): promote refuses it.
const UnknownBaseline = "unknown"
