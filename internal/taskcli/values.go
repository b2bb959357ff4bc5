package taskcli

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// Strings binds a repeatable flag to *p. Like cli.StringSliceFlag, a value
// holds one or more comma-separated elements, each trimmed of spaces; the
// first value replaces the default.
func Strings(p *[]string) cli.Generic { return &stringsValue{p: p} }

// List binds a comma-separated list (e.g. --approvers alice,bob) to *p: like
// Strings, without empty elements, so an empty value is an empty list.
func List(p *[]string) cli.Generic { return &stringsValue{p: p, dropEmpty: true} }

type stringsValue struct {
	p         *[]string
	set       bool
	dropEmpty bool
}

func (v *stringsValue) Set(s string) error {
	if !v.set {
		*v.p, v.set = nil, true
	}
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" || !v.dropEmpty {
			*v.p = append(*v.p, e)
		}
	}
	return nil
}

func (v *stringsValue) String() string { return strings.Join(*v.p, ",") }

// KeyValues binds a repeatable KEY=VALUE flag to *p, in order. A value may hold
// several comma-separated pairs (how the templates pass them in one environment
// variable); an empty value means none. A pair without "=", an empty key or a key given twice is an error,
// which the CLI reports as bad input (exit 2).
func KeyValues(p *[][2]string) cli.Generic { return &keyValues{p: p} }

type keyValues struct{ p *[][2]string }

func (v *keyValues) Set(s string) error {
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue // an empty value (a template's default "") or a trailing comma means none
		}
		k, val, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("%q: want KEY=VALUE", kv)
		}
		for _, have := range *v.p {
			if have[0] == k {
				return fmt.Errorf("%s given twice", k)
			}
		}
		*v.p = append(*v.p, [2]string{k, val})
	}
	return nil
}

func (v *keyValues) String() string {
	parts := make([]string, len(*v.p))
	for i, kv := range *v.p {
		parts[i] = kv[0] + "=" + kv[1]
	}
	return strings.Join(parts, ",")
}

// ShortDuration prints d as flags and templates take it back, without the zero units
// time.Duration.String keeps: 2h0m0s → 2h, 5m0s → 5m, 90s → 1m30s.
func ShortDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
