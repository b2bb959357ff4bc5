package exitcode

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestOf(t *testing.T) {
	t.Parallel()
	base := errors.New("boom")
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, OK},
		{"plain", base, Failed},
		{"invalid", Invalid(base), BadInput},
		{"invalidf", Invalidf("bad --flag %q", "x"), BadInput},
		{"retryable wrapped", fmt.Errorf("reading: %w", Retryable(base)), Transient},
		{"outermost wins", With(Failed, Retryable(base)), Failed},
		{"deadline", fmt.Errorf("waiting: %w", context.DeadlineExceeded), Transient},
		{"canceled", context.Canceled, Failed},
	} {
		if got := Of(tc.err); got != tc.want {
			t.Errorf("%s: Of() = %d, want %d", tc.name, got, tc.want)
		}
	}
	if With(BadInput, nil) != nil {
		t.Error("With(nil) must stay nil")
	}
	if !errors.Is(Invalid(base), base) {
		t.Error("coded errors must unwrap")
	}
}
