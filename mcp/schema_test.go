package mcp

import (
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	validator "github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/store"
)

// TestInputSchemasRefuseWhatTheServerRefuses: arguments the server refuses
// for their form alone (an empty id or stop sequence, a tool name or an
// idempotency key of characters it does not take) are refused by the
// tool's input schema too, so that a client that validates before calling
// is told without a round trip; and the same arguments, made right, pass.
func TestInputSchemasRefuseWhatTheServerRefuses(t *testing.T) {
	tools := NewServer(&domain.Services{}, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}).ListTools()
	schema := func(t *testing.T, name string) *validator.Schema {
		t.Helper()
		b, err := json.Marshal(tools[name].Tool.InputSchema)
		must(t, err)
		doc, err := validator.UnmarshalJSON(strings.NewReader(string(b)))
		must(t, err)
		c := validator.NewCompiler()
		must(t, c.AddResource(name+".json", doc))
		s, err := c.Compile(name + ".json")
		must(t, err)
		return s
	}
	valid := func(s *validator.Schema, args obj) error {
		b, err := json.Marshal(args)
		if err != nil {
			return err
		}
		inst, err := validator.UnmarshalJSON(strings.NewReader(string(b)))
		if err != nil {
			return err
		}
		return s.Validate(inst)
	}
	msgs := []obj{{"role": "user", "content": "hi"}}
	tool := func(name string) obj {
		return obj{"type": "function", "function": obj{"name": name, "parameters": obj{"type": "object"}}}
	}
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		chat := e.supportChat()
		admin := e.connect(overHTTP, "admin", Options{})
		for _, tc := range []struct {
			tool      string
			bad, good obj
		}{
			{"get-chat", obj{"chatId": ""}, obj{"chatId": chat.ID}},
			{"create-chat-completion-for-chat",
				obj{"chatId": chat.ID, "messages": msgs, "stop": ""},
				obj{"chatId": chat.ID, "messages": msgs, "stop": "END"}},
			{"create-chat-completion-for-chat",
				obj{"chatId": chat.ID, "messages": msgs, "stop": []string{"END", ""}},
				obj{"chatId": chat.ID, "messages": msgs, "stop": []string{"END", "STOP"}}},
			{"create-chat-completion-for-chat",
				obj{"chatId": chat.ID, "messages": msgs, "maxHistoryMessages": domain.MaxHistoryMessages + 1},
				obj{"chatId": chat.ID, "messages": msgs, "maxHistoryMessages": domain.MaxHistoryMessages}},
			{"create-chat-completion-for-chat",
				obj{"chatId": chat.ID, "messages": msgs, "maxHistoryMessages": -1},
				obj{"chatId": chat.ID, "messages": msgs, "maxHistoryMessages": 0}},
			{"create-chat-completion-for-chat",
				obj{"chatId": chat.ID, "messages": msgs, "idempotencyKey": "two words"},
				obj{"chatId": chat.ID, "messages": msgs, "idempotencyKey": "two-words"}},
			{"create-chat-completion-for-chat",
				obj{"chatId": chat.ID, "messages": msgs, "tools": []obj{tool("look up")}},
				obj{"chatId": chat.ID, "messages": msgs, "tools": []obj{tool("look_up")}}},
			{"create-chat-completion-for-chat",
				obj{"chatId": chat.ID, "messages": msgs, "responseFormat": obj{"type": "json_schema", "jsonSchema": obj{"name": "a.b", "schema": obj{"type": "object"}}}},
				obj{"chatId": chat.ID, "messages": msgs, "responseFormat": obj{"type": "json_schema", "jsonSchema": obj{"name": "a_b", "schema": obj{"type": "object"}}}}},
		} {
			s := schema(t, tc.tool)
			if err := valid(s, tc.good); err != nil {
				t.Errorf("%s(%v): the input schema refuses it: %v", tc.tool, tc.good, err)
			}
			if valid(s, tc.bad) == nil {
				t.Errorf("%s(%v): the input schema takes what the server refuses", tc.tool, tc.bad)
			}
			admin.fails(t, tc.tool, tc.bad, "invalid_request")
		}
	})
}
