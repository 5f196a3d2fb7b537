package storecache

import (
	"testing"
	"time"
)

// TestExpiredEntriesAreDropped: an entry past the TTL was skipped by get
// but kept, until the map held maxEntries: every chat ever read, with a
// system message of up to 4 MiB, stayed in memory, which any user could
// fill with gigabytes. put drops those expired, once a TTL.
func TestExpiredEntriesAreDropped(t *testing.T) {
	const ttl = 20 * time.Millisecond
	var m ttlMap[int, string]
	for i := range 100 {
		_, tk, _ := m.get(i, ttl, false)
		m.put(i, "a large system message", tk, ttl)
	}
	if len(m.m) != 100 {
		t.Fatalf("%d entries after 100 puts", len(m.m))
	}
	time.Sleep(2 * ttl)
	_, tk, _ := m.get(100, ttl, false)
	m.put(100, "fresh", tk, ttl)
	if len(m.m) != 1 {
		t.Errorf("%d entries a TTL after 100 were put and one more since; want the fresh one alone", len(m.m))
	}
	if v, _, ok := m.get(100, ttl, false); !ok || v != "fresh" {
		t.Errorf("get(100) = %q, %v; want the fresh entry", v, ok)
	}
}
