package main

// A very small test runner: named checks, go-test-like output, a summary and
// an exit status. A check that calls Fatalf stops; Errorf marks it failed and
// goes on.

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"time"
)

type fatalStop struct{}

type T struct {
	name    string
	failed  bool
	skipped bool
	lines   []string
}

func (t *T) Logf(format string, args ...interface{}) {
	t.lines = append(t.lines, fmt.Sprintf(format, args...))
}

func (t *T) Errorf(format string, args ...interface{}) {
	t.failed = true
	t.lines = append(t.lines, "ERROR: "+fmt.Sprintf(format, args...))
}

func (t *T) Fatalf(format string, args ...interface{}) {
	t.Errorf(format, args...)
	panic(fatalStop{})
}

func (t *T) Skipf(format string, args ...interface{}) {
	t.skipped = true
	t.lines = append(t.lines, "SKIP: "+fmt.Sprintf(format, args...))
	panic(fatalStop{})
}

type result struct {
	name            string
	failed, skipped bool
	dur             time.Duration
}

type Runner struct {
	out     io.Writer
	verbose bool
	results []result
}

// Run runs one check and reports whether it passed (or was skipped).
func (r *Runner) Run(name string, f func(t *T)) bool {
	t := &T{name: name}
	start := time.Now()
	func() {
		defer func() {
			if v := recover(); v != nil {
				if _, ok := v.(fatalStop); !ok {
					t.Errorf("panic: %v\n%s", v, debug.Stack())
				}
			}
		}()
		f(t)
	}()
	d := time.Since(start)
	verdict := "PASS"
	switch {
	case t.failed:
		verdict = "FAIL"
	case t.skipped:
		verdict = "SKIP"
	}
	fmt.Fprintf(r.out, "--- %s: %s (%.2fs)\n", verdict, name, d.Seconds())
	if t.failed || t.skipped || r.verbose {
		for _, l := range t.lines {
			fmt.Fprintf(r.out, "    %s\n", strings.ReplaceAll(l, "\n", "\n    "))
		}
	}
	r.results = append(r.results, result{name: name, failed: t.failed, skipped: t.skipped, dur: d})
	return !t.failed
}

func (r *Runner) Summary() (passed, failed, skipped int) {
	for _, res := range r.results {
		switch {
		case res.failed:
			failed++
		case res.skipped:
			skipped++
		default:
			passed++
		}
	}
	return
}

func (r *Runner) FailedNames() []string {
	var out []string
	for _, res := range r.results {
		if res.failed {
			out = append(out, res.name)
		}
	}
	return out
}
