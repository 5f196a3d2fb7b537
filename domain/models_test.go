package domain

import (
	"fmt"
	"testing"
	"time"
	"unsafe"
)

// TestModelListsKeep: a provider's list is kept for modelsTTL and while
// the provider is unchanged, and the lists kept stay bounded.
func TestModelListsKeep(t *testing.T) {
	var c modelLists
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	p := &AIProvider{ID: "aip_1", UpdatedAt: now.Add(-time.Hour)}
	models := []Model{{ID: "m"}}
	if _, ok := c.get(p, now); ok {
		t.Fatal("an empty cache has a list")
	}
	c.put(p, models, now)
	if got, ok := c.get(p, now.Add(modelsTTL-time.Second)); !ok || got[0].ID != "m" {
		t.Errorf("within the TTL: %v, %v; want the list", got, ok)
	}
	if _, ok := c.get(p, now.Add(modelsTTL)); ok {
		t.Error("a list past its TTL is still kept")
	}
	changed := *p
	changed.UpdatedAt = now
	if _, ok := c.get(&changed, now); ok {
		t.Error("a changed provider's list is still kept")
	}
	for i := range 2 * maxModelLists {
		c.put(&AIProvider{ID: fmt.Sprint("aip_", i)}, models, now)
		if len(c.lists) > maxModelLists {
			t.Fatalf("%d lists kept, more than %d", len(c.lists), maxModelLists)
		}
	}
}

// TestModelListsDropWhatExpired: lists past their TTL were dropped only
// once maxModelLists were kept, each up to 1 MiB of names, so providers
// listed once held gigabytes for good. An expired list goes when met, and
// every expired one at the first put a TTL on; their bytes are bounded.
func TestModelListsDropWhatExpired(t *testing.T) {
	var c modelLists
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	big := make([]Model, 1000)
	for i := range big {
		big[i] = Model{ID: fmt.Sprintf("%0100d", i)}
	}
	for i := range 100 {
		c.put(&AIProvider{ID: fmt.Sprint("aip_", i)}, big, now)
	}
	perList := 1000 * (100 + int(unsafe.Sizeof(Model{})))
	if c.bytes != 100*perList {
		t.Fatalf("%d bytes kept for 100 lists of %d", c.bytes, perList)
	}
	if _, ok := c.get(&AIProvider{ID: "aip_0"}, now.Add(modelsTTL)); ok || len(c.lists) != 99 {
		t.Errorf("an expired list met: kept %v, %d lists left; want it dropped", ok, len(c.lists))
	}
	later := now.Add(modelsTTL + time.Second)
	c.put(&AIProvider{ID: "aip_new"}, big[:1], later)
	if one := 100 + int(unsafe.Sizeof(Model{})); len(c.lists) != 1 || c.bytes != one {
		t.Errorf("a TTL on, after one more put: %d lists, %d bytes; want the new one alone, %d bytes", len(c.lists), c.bytes, one)
	}
	for i := range maxModelBytes/perList + 1 {
		c.put(&AIProvider{ID: fmt.Sprint("aip_big_", i)}, big, later)
		if c.bytes > maxModelBytes {
			t.Fatalf("%d bytes of models and names kept, more than %d", c.bytes, maxModelBytes)
		}
	}
}
