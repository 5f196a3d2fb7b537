package wire

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/parleyhq/parley/domain"
)

// TestSchemaTagsFollowTheDomain: the schemas' bounds and choices are
// struct tags, which cannot name the domain's constants; they are held to
// them here, so that a limit changed in the domain fails until the schemas
// say it too.
func TestSchemaTagsFollowTheDomain(t *testing.T) {
	for _, tc := range []struct {
		of         any
		field, key string
		want       string
	}{
		{CompletionFields{}, "Messages", "max", strconv.Itoa(domain.MaxMessages)},
		{CompletionFields{}, "DataSources", "max", strconv.Itoa(domain.MaxDataSources)},
		{CompletionFields{}, "Names", "max", strconv.Itoa(domain.MaxDataSources)},
		{CompletionFields{}, "ReasoningEffort", "enum", "," + strings.Join(domain.ReasoningEfforts, ",")},
		{Thinking{}, "BudgetTokens", "min", strconv.Itoa(domain.MinThinkingBudget)},
		{Thinking{}, "Type", "enum", strings.Join([]string{domain.ThinkingEnabled, domain.ThinkingAdaptive, domain.ThinkingDisabled}, ",")},
		{Function{}, "Name", "pattern", domain.ToolNamePattern},
		{JSONSchema{}, "Name", "pattern", domain.ToolNamePattern},
		{Thinking{}, "Display", "enum", "," + domain.ThinkingSummarized + "," + domain.ThinkingOmitted}, // "" for the model's default
	} {
		if got := tag(tc.of, tc.field, tc.key); got != tc.want {
			t.Errorf("%T.%s's %s tag = %q, want %q, the domain's", tc.of, tc.field, tc.key, got, tc.want)
		}
	}
}

// tag returns the tag key of the field of the struct v (a value of its type).
func tag(v any, field, key string) string {
	f, ok := reflect.TypeOf(v).FieldByName(field)
	if !ok {
		panic(reflect.TypeOf(v).String() + " has no field " + field)
	}
	return f.Tag.Get(key)
}
