// Package results writes task results the way Argo (valueFrom.path) and Tekton
// (/tekton/results) read them: one small file per result, no trailing newline,
// written atomically, small enough together for Tekton's termination message, plus one JSON object on the last line of stdout.
package results

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// MaxSize is the largest value a single result may hold, in bytes. Tekton
// shares a 4096-byte termination message between all results of a pod.
const MaxSize = 1024

// TotalBudget bounds all results of one step together: Tekton's entrypoint puts them, JSON-encoded
// with its own start-time entry, into the pod's termination message, which the kubelet cuts at
// 4096 bytes (a cut message loses every result). Each result costs its name, its value and
// entryOverhead bytes of JSON around them.
const TotalBudget = 3072

const entryOverhead = 32

// FreeTextMax is what a prose result (reason, message) keeps when the step's results would
// otherwise not fit TotalBudget: the rest is in the step's log and report.
const FreeTextMax = 512

var freeText = []string{"reason", "message"}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// Validate checks every name is kebab-case, every value fits MaxSize and all of them together fit
// TotalBudget.
func Validate(values map[string]string) error {
	total := 0
	for _, name := range sortedKeys(values) {
		if !nameRE.MatchString(name) {
			return fmt.Errorf("result name %q is not kebab-case", name)
		}
		if n := len(values[name]); n > MaxSize {
			return fmt.Errorf("result %s is %d bytes, over the %d-byte limit", name, n, MaxSize)
		}
		total += size(name, values[name])
	}
	if total > TotalBudget {
		return fmt.Errorf("results take %d bytes together, over the %d-byte budget of a Tekton termination message", total, TotalBudget)
	}
	return nil
}

func size(name, value string) int {
	b, _ := json.Marshal(value)
	return len(name) + len(b) + entryOverhead
}

// Fit returns values, with prose results (reason, message) shortened to FreeTextMax bytes (at a
// rune boundary, ending in "…") when all of them together would not fit TotalBudget.
func Fit(values map[string]string) map[string]string {
	total := 0
	for name, v := range values {
		total += size(name, v)
	}
	if total <= TotalBudget {
		return values
	}
	out := make(map[string]string, len(values))
	for k, v := range values {
		out[k] = v
	}
	for _, name := range freeText {
		v, ok := out[name]
		if !ok || len(v) <= FreeTextMax {
			continue
		}
		cut := FreeTextMax - len("…")
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		out[name] = v[:cut] + "…"
	}
	return out
}

// Write validates all values first (so nothing is half-written), then writes
// each to dir/<name> atomically (when dir is not empty), then prints them as
// one JSON object line to stdout (when stdout is not nil).
func Write(dir string, stdout io.Writer, values map[string]string) error {
	values = Fit(values)
	if err := Validate(values); err != nil {
		return err
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating results dir: %w", err)
		}
		for _, name := range sortedKeys(values) {
			if err := writeAtomic(filepath.Join(dir, name), values[name]); err != nil {
				return err
			}
		}
	}
	if stdout != nil {
		b, err := json.Marshal(values) // map keys are sorted by encoding/json
		if err != nil {
			return fmt.Errorf("encoding results: %w", err)
		}
		if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
			return fmt.Errorf("printing results: %w", err)
		}
	}
	return nil
}

func writeAtomic(path, value string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing result %s: %w", filepath.Base(path), err)
	}
	tmp := f.Name()
	_, werr := f.WriteString(strings.TrimRight(value, "\n"))
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp, 0o644)
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing result %s: %w", filepath.Base(path), werr)
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
