//go:build pprof

package main

import (
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
)

// Built with -tags pprof, parley serves Go's profiler on PARLEY_PPROF_ADDR
// (say 127.0.0.1:6060), for profiling under load (see docs/benchmarks.md).
// Release builds do not contain it.
func init() {
	if addr := os.Getenv("PARLEY_PPROF_ADDR"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
