//go:build linux

package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"
)

// cellKey names one measurement: a target at a rate, in a mode, while
// Parley ran on a database.
type cellKey struct {
	db     string
	stream bool
	rate   int
	target string
}

// report is a run's figures.
type report struct {
	cfg    config
	cells  map[cellKey]*result
	memory map[string]int64 // bytes of resident memory per open stream, by "proxy" or "parley/<db>"
	steal  float64          // the share of the machine's CPU time the hypervisor took during the run
}

func (r *report) cell(k cellKey) *result {
	c, ok := r.cells[k]
	if !ok {
		c = &result{}
		r.cells[k] = c
	}
	return c
}

// write prints the figures as Markdown tables.
func (r *report) write(w io.Writer) {
	fmt.Fprintf(w, "Open loop on loopback, %d CPUs (GOMAXPROCS), %s per target per rate per round, %d rounds taking turns; every process at GOGC=%s.\n",
		runtime.NumCPU(), r.cfg.duration, r.cfg.rounds, childGOGC)
	fmt.Fprintf(w, "Latency counts from each request's scheduled send time; \"adds\" is the target's figure minus the direct call's.\n")
	fmt.Fprintf(w, "A CPU ratio's brackets give the range of its rounds' ratios.\n")
	fmt.Fprintf(w, "proxy+commit is the proxy committing one row to Parley's database engine before each answer: the floor of a gateway that stores its turns.\n")
	fmt.Fprintf(w, "The hypervisor took %.1f%% of the machine's CPU time during the run (steal, from /proc/stat); compare runs only when it is low.\n\n", 100*r.steal)
	for _, db := range r.cfg.databases {
		for _, stream := range []bool{false, true} {
			fmt.Fprintf(w, "### Parley on %s, %s\n\n", db, mode(stream))
			head := "| rate | direct p50 · p99 | proxy adds p50 · p99 | proxy+commit adds p50 · p99 | Parley adds p50 · p99 "
			if stream {
				head += "| direct TTFT p50 | Parley adds TTFT p50 · p99 "
			}
			head += "| CPU/request: proxy · proxy+commit · Parley | Parley ÷ proxy CPU | Parley ÷ proxy+commit CPU | PostgreSQL CPU/request: proxy+commit · Parley | Parley and PostgreSQL ÷ proxy CPU | failed |"
			fmt.Fprintln(w, head)
			fmt.Fprintln(w, strings.Repeat("|---", strings.Count(head, "|")-1)+"|")
			for _, rate := range r.cfg.rates {
				d := r.cell(cellKey{db, stream, rate, "direct"})
				p := r.cell(cellKey{db, stream, rate, "proxy"})
				f := r.cell(cellKey{db, stream, rate, "commit"})
				g := r.cell(cellKey{db, stream, rate, "parley"})
				d50, d99 := percentile(d.total, 50), percentile(d.total, 99)
				adds := func(c *result) string {
					return ms(percentile(c.total, 50)-d50) + " · " + ms(percentile(c.total, 99)-d99)
				}
				row := fmt.Sprintf("| %d/s | %s · %s | %s | %s | %s ", rate, ms(d50), ms(d99), adds(p), adds(f), adds(g))
				if stream {
					t50, t99 := percentile(d.ttft, 50), percentile(d.ttft, 99)
					row += fmt.Sprintf("| %s | %s · %s ", ms(t50),
						ms(percentile(g.ttft, 50)-t50), ms(percentile(g.ttft, 99)-t99))
				}
				pg, withDB := "–", "–"
				if db == "postgres" {
					// On SQLite the database's work is in Parley's process,
					// counted; on PostgreSQL it is the server's.
					pg = us(f.dbCPUPerRequest()) + " · " + us(g.dbCPUPerRequest())
					if p.cpuPerRequest() > 0 {
						withDB = fmt.Sprintf("%.1f×", float64(g.cpuPerRequest()+g.dbCPUPerRequest())/float64(p.cpuPerRequest()))
					}
				}
				row += fmt.Sprintf("| %s · %s · %s | %s | %s | %s | %s | %d · %d · %d · %d |",
					us(p.cpuPerRequest()), us(f.cpuPerRequest()), us(g.cpuPerRequest()),
					ratio(g, p), ratio(g, f), pg, withDB,
					d.errors, p.errors, f.errors, g.errors)
				fmt.Fprintln(w, row)
			}
			fmt.Fprintln(w)
			for _, k := range []string{"direct", "proxy", "commit", "parley"} {
				for _, rate := range r.cfg.rates {
					if c := r.cell(cellKey{db, stream, rate, k}); c.lastErr != "" {
						fmt.Fprintf(w, "- %s at %d/s, last failure: %s\n", k, rate, c.lastErr)
					}
				}
			}
		}
	}
	if len(r.memory) > 0 {
		fmt.Fprintf(w, "### Memory per open stream (%d streams held open at once)\n\n| process | resident memory per stream |\n|---|---|\n", r.cfg.streams)
		if v, ok := r.memory["proxy"]; ok {
			fmt.Fprintf(w, "| proxy | %.1f KB |\n", float64(v)/1024)
		}
		for _, db := range r.cfg.databases {
			if v, ok := r.memory["parley/"+db]; ok {
				fmt.Fprintf(w, "| Parley on %s | %.1f KB |\n", db, float64(v)/1024)
			}
		}
		fmt.Fprintln(w)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func us(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }

// ratio is a's CPU per request over b's for the whole run and, when the
// targets took turns more than once, the range of the rounds' ratios: each
// round measures the two under the same conditions of a shared host.
func ratio(a, b *result) string {
	if b.cpuPerRequest() == 0 {
		return "–"
	}
	s := fmt.Sprintf("%.1f×", float64(a.cpuPerRequest())/float64(b.cpuPerRequest()))
	var qs []float64
	for i := range min(len(a.rounds), len(b.rounds)) {
		if b.rounds[i] == 0 {
			return s
		}
		qs = append(qs, float64(a.rounds[i])/float64(b.rounds[i]))
	}
	if len(qs) < 2 {
		return s
	}
	return s + fmt.Sprintf(" (%.1f–%.1f)", slices.Min(qs), slices.Max(qs))
}
