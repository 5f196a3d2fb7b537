//go:build pprof

package main

import (
	"fmt"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
)

// Built with -tags pprof, parley serves Go's profiler on PARLEY_PPROF_ADDR
// (say 127.0.0.1:6060), for profiling under load (see docs/benchmarks.md).
// Release builds do not contain it. An address it cannot listen on is
// said on stderr: the profile asked for would otherwise just not come.
func init() {
	if addr := os.Getenv("PARLEY_PPROF_ADDR"); addr != "" {
		go func() {
			err := http.ListenAndServe(addr, nil)
			fmt.Fprintf(os.Stderr, "PARLEY_PPROF_ADDR %q: %v; Go's profiler is not served\n", addr, err)
		}()
	}
}
