package llm

import (
	"encoding/json"
	"maps"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/parleyhq/parley/domain"
)

// reasoningDetails joins the pieces of reasoning_details an OpenAI-wire
// stream sends (OpenRouter's delta.reasoning_details) into the details a
// whole reply would have given, which go back with the reply's calls
// (domain.ReasoningDetailsExtra): a piece of the same type and index as the
// detail before it continues that detail, its text, summary and data
// appended and its other members (a signature, the id of the call an
// encrypted detail belongs to, the format) filling in what the detail
// lacked; a text or summary piece without an index continues one without
// an index too. Any other piece is a detail of its own, in the order it
// came: OpenRouter refuses details rearranged. Past
// domain.MaxExtraContent of pieces, none are kept, as a call's
// extra_content could not carry them.
type reasoningDetails struct {
	items []map[string]any
	// texts holds, per item, the text, summary and data its pieces
	// append to, joined into the item only by json: a stream's thousands
	// of pieces each copying all before them cost a gigabyte.
	texts []map[string]*strings.Builder
	bytes int
}

// add joins a chunk's pieces.
func (d *reasoningDetails) add(pieces []jsontext.Value) {
	for _, p := range pieces {
		if d.bytes += len(p); d.bytes > domain.MaxExtraContent {
			d.items, d.texts = nil, nil
			return
		}
		var item map[string]any
		if jsonv2.Unmarshal(p, &item, lenient) != nil || item == nil {
			continue
		}
		n := len(d.items)
		if n == 0 || !continues(d.items[n-1], item) {
			d.items, d.texts = append(d.items, map[string]any{}), append(d.texts, map[string]*strings.Builder{})
			n++
		}
		last, texts := d.items[n-1], d.texts[n-1]
		for k, v := range item {
			if s, isText := v.(string); isText && (k == "text" || k == "summary" || k == "data") {
				if texts[k] == nil {
					texts[k] = &strings.Builder{}
				}
				texts[k].WriteString(s)
				continue
			}
			if old, had := last[k].(string); last[k] == nil || had && old == "" {
				last[k] = v
			}
		}
	}
}

// continues says whether piece continues detail last (see
// reasoningDetails).
func continues(last, piece map[string]any) bool {
	if last["type"] != piece["type"] {
		return false
	}
	li, lok := last["index"].(float64)
	pi, pok := piece["index"].(float64)
	if lok || pok {
		return lok && pok && li == pi
	}
	return piece["type"] == "reasoning.text" || piece["type"] == "reasoning.summary"
}

// json is the details joined so far as a JSON array; nil when there are
// none.
func (d *reasoningDetails) json() jsontext.Value {
	if d.bytes > domain.MaxExtraContent || len(d.items) == 0 {
		return nil
	}
	items := make([]map[string]any, len(d.items))
	for i, item := range d.items {
		items[i] = maps.Clone(item)
		for k, b := range d.texts[i] {
			items[i][k] = b.String()
		}
	}
	out, err := jsonv2.Marshal(items, jsonv2.Deterministic(true))
	if err != nil {
		return nil
	}
	return out
}

// withReasoningDetails puts a reply's reasoning_details (a JSON array) in
// its first call's extra_content, where explicitContent finds them to send
// back; nothing when there are none or no calls.
func withReasoningDetails(calls []domain.ToolCall, details jsontext.Value) {
	if len(calls) > 0 && len(details) > 0 && details[0] == '[' {
		calls[0].ExtraContent = domain.ExtraWith(calls[0].ExtraContent, domain.ReasoningDetailsExtra, json.RawMessage(details))
	}
}

// wholeReplyReasoningDetails is the reasoning_details of a whole reply, as
// it sent them, which go-openai's types have no field for (see
// keptChoice).
func wholeReplyReasoningDetails(ex *exchange) jsontext.Value {
	c := keptChoice[struct {
		Message struct {
			ReasoningDetails jsontext.Value `json:"reasoning_details"`
		} `json:"message"`
	}](ex, "reasoning_details")
	return c.Message.ReasoningDetails
}
