package mcp

import (
	"bytes"
	stdjson "encoding/json"
	"reflect"
	"strconv"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/wire"
)

// decodeArgs decodes a tool call's arguments into v strictly, as REST
// decodes bodies: exact (case-sensitive) names, no unknown or duplicate
// fields, the right types, and every required field present. Errors are
// Invalid and name the field.
func decodeArgs(req mcpgo.CallToolRequest, v any) error {
	raw := []byte(req.Params.RawArguments)
	if len(raw) == 0 && req.Params.Arguments != nil {
		if r, ok := req.Params.Arguments.(stdjson.RawMessage); ok {
			raw = r
		} else {
			var err error
			if raw, err = stdjson.Marshal(req.Params.Arguments); err != nil {
				return domain.Errorf(domain.Invalid, "the arguments must be a JSON object")
			}
		}
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		raw = []byte("{}")
	}
	if raw[0] != '{' {
		return domain.Errorf(domain.Invalid, "the arguments must be a JSON object")
	}
	if err := wire.Unmarshal(raw, v, "argument"); err != nil {
		return err
	}
	var present map[string]jsontext.Value
	if err := json.Unmarshal(raw, &present); err != nil {
		return domain.Errorf(domain.Invalid, "the arguments must be a JSON object")
	}
	for _, name := range requiredFields(reflect.TypeOf(v).Elem()) {
		if _, ok := present[name]; !ok {
			return domain.Invalidf(name, "%s is required", name)
		}
	}
	return nil
}

// page validates the limit, cursor and order arguments of a list tool with the
// same rules as REST's query parameters.
func page(limit *int, cursor, order string) (domain.Page, error) {
	l := ""
	if limit != nil {
		l = strconv.Itoa(*limit)
	}
	return domain.ParsePage(l, cursor, order)
}

// parseTime and timestamp read and write times as REST does.
var (
	parseTime = wire.ParseTime
	timestamp = wire.Timestamp
)
