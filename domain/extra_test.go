package domain

import "testing"

// TestExtraWithout: a member of a tool call's extra_content is taken out,
// the others kept as they came (< > & not escaped); nil when none is left;
// anything else as it is.
func TestExtraWithout(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"anthropic":{"thinking":[]},"google":{"thought_signature":"a<b&c>"}}`, `{"google":{"thought_signature":"a<b&c>"}}`},
		{`{"anthropic":{"thinking":[]}}`, ""},
		{`{"google":{"note":"anthropic"}}`, `{"google":{"note":"anthropic"}}`},
		{`["anthropic"]`, `["anthropic"]`},
		{``, ``},
	} {
		if got := string(ExtraWithout([]byte(tc.in), AnthropicExtra)); got != tc.want {
			t.Errorf("ExtraWithout(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
