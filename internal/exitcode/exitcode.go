// Package exitcode classifies errors into the process exit codes every gantry
// task shares: 0 ok, 1 failed, 2 bad input (never retried), 3 transient
// infrastructure error (retried by the templates).
package exitcode

import (
	"context"
	"errors"
	"fmt"
)

// The exit codes of every gantry binary.
const (
	OK        = 0
	Failed    = 1
	BadInput  = 2
	Transient = 3
)

type coded struct {
	code int
	err  error
}

func (c *coded) Error() string { return c.err.Error() }
func (c *coded) Unwrap() error { return c.err }

// With marks err with an exit code. A nil err stays nil.
func With(code int, err error) error {
	if err == nil {
		return nil
	}
	return &coded{code: code, err: err}
}

// Invalid marks err as bad input: the caller must fix its arguments.
func Invalid(err error) error { return With(BadInput, err) }

// Invalidf formats a bad-input error.
func Invalidf(format string, args ...any) error { return Invalid(fmt.Errorf(format, args...)) }

// Retryable marks err as a transient infrastructure error.
func Retryable(err error) error { return With(Transient, err) }

// Of returns the exit code for err: 0 for nil, the outermost code attached with
// With, and 1 otherwise. A cancelled context is a failure, not a retry: the
// task was asked to stop.
func Of(err error) int {
	if err == nil {
		return OK
	}
	var c *coded
	if errors.As(err, &c) {
		return c.code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Transient
	}
	return Failed
}
