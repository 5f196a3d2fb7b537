package domain

import (
	"fmt"
	"testing"
	"time"
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
