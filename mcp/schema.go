package mcp

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/wire"
)

// Tool schemas are generated from the argument and result structs, so that
// what a handler decodes and returns is what its schema says. Struct tags:
//
//	json:"name,omitempty"  the field name; omitempty makes the field optional
//	desc:"..."             the field's description (every field has one)
//	enum:"a,b"             allowed string values
//	min:"0" max:"2"        numeric bounds (minItems/maxItems on arrays,
//	                       minLength/maxLength in characters on strings)
//	format:"date-time"     a string format
//	pattern:"^...$"        a string's regular expression
//	nullable:"true"        the value may be null (results only)

// stopSchema is the shape the reflection cannot see in wire.StopList: a
// string or an array of up to 4 strings, none empty.
func stopSchema() map[string]any {
	return map[string]any{"anyOf": []any{
		map[string]any{"type": "string", "minLength": 1},
		map[string]any{"type": "array", "items": map[string]any{"type": "string", "minLength": 1}, "maxItems": 4},
	}}
}

// contentSchema is the shape of wire.Content: a string, or an array of
// text parts.
func contentSchema() map[string]any {
	return map[string]any{"anyOf": []any{
		map[string]any{"type": "string"},
		map[string]any{"type": "array", "items": map[string]any{"type": "object", "required": []string{"type", "text"},
			"additionalProperties": false, "properties": map[string]any{
				"type": map[string]any{"type": "string", "enum": []string{"text"}, "description": "Always \"text\"."},
				"text": map[string]any{"type": "string", "description": "The part's text."},
			}}},
	}}
}

// toolChoiceSchema is the shape of wire.ToolChoice: a mode, or the
// function to call.
func toolChoiceSchema() map[string]any {
	return map[string]any{"anyOf": []any{
		map[string]any{"type": "string", "enum": []string{"auto", "none", "required"}},
		map[string]any{"type": "object", "required": []string{"type", "function"}, "additionalProperties": false, "properties": map[string]any{
			"type": map[string]any{"type": "string", "enum": []string{"function"}, "description": "Always \"function\"."},
			"function": map[string]any{"type": "object", "required": []string{"name"}, "additionalProperties": false,
				"description": "The function the model must call.",
				"properties":  map[string]any{"name": map[string]any{"type": "string", "pattern": domain.ToolNamePattern, "description": "The name of one of the tools given in tools."}}},
		}},
	}}
}

// objectSchema returns the properties, their order and the required names
// of struct type t. Input objects reject unknown properties.
func objectSchema(t reflect.Type, input bool) (props map[string]any, order, required []string) {
	props = map[string]any{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			p, o, r := objectSchema(f.Type, input)
			for k, v := range p {
				props[k] = v
			}
			order = append(order, o...)
			required = append(required, r...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		desc := f.Tag.Get("desc")
		if desc == "" {
			panic(fmt.Sprintf("mcp: field %s.%s has no desc tag; every tool field needs a description", t.Name(), f.Name))
		}
		s := typeSchema(f.Type, input)
		s["description"] = desc
		if e := f.Tag.Get("enum"); e != "" {
			s["enum"] = strings.Split(e, ",")
		}
		if v := f.Tag.Get("format"); v != "" {
			s["format"] = v
		}
		if v := f.Tag.Get("pattern"); v != "" {
			s["pattern"] = v
		}
		minKey, maxKey := "minimum", "maximum"
		switch s["type"] {
		case "array":
			minKey, maxKey = "minItems", "maxItems"
		case "string":
			minKey, maxKey = "minLength", "maxLength"
		}
		if v := f.Tag.Get("min"); v != "" {
			s[minKey] = number(v)
		}
		if v := f.Tag.Get("max"); v != "" {
			s[maxKey] = number(v)
		}
		if f.Tag.Get("nullable") == "true" {
			s["type"] = []any{s["type"], "null"}
		}
		req := !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero")
		if input && req && s["type"] == "string" && strings.HasSuffix(name, "Id") {
			s["minLength"] = 1 // a required id is never empty
		}
		props[name] = s
		order = append(order, name)
		if req {
			required = append(required, name)
		}
	}
	return props, order, required
}

func number(s string) any {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		panic("mcp: bad numeric schema tag " + s)
	}
	return f
}

// typeSchema returns the schema of a value of type t.
func typeSchema(t reflect.Type, input bool) map[string]any {
	switch t {
	case reflect.TypeFor[wire.StopList]():
		return stopSchema()
	case reflect.TypeFor[wire.Content]():
		return contentSchema()
	case reflect.TypeFor[wire.ToolChoice]():
		return toolChoiceSchema()
	case reflect.TypeFor[wire.RawJSON]():
		return map[string]any{"type": "object"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeSchema(t.Elem(), input)
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": typeSchema(t.Elem(), input)}
	case reflect.Map:
		return map[string]any{"type": "object"}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		props, order, required := objectSchema(t, input)
		s := map[string]any{"type": "object", "properties": props}
		if len(required) > 0 {
			s["required"] = required
		}
		if input {
			s["additionalProperties"] = false
		}
		_ = order // nested property order is not kept by JSON objects
		return s
	}
	panic("mcp: no schema for type " + t.String())
}

// withSchemas sets the tool's input schema from In and its output schema
// from Out. Both are objects, as MCP requires of output schemas.
func withSchemas[In, Out any]() mcpgo.ToolOption {
	return func(t *mcpgo.Tool) {
		props, order, required := objectSchema(reflect.TypeFor[In](), true)
		t.InputSchema = mcpgo.ToolInputSchema{Type: "object", Properties: props, Required: required,
			AdditionalProperties: false, PropertyOrder: order}
		props, order, required = objectSchema(reflect.TypeFor[Out](), false)
		t.OutputSchema = mcpgo.ToolOutputSchema{Type: "object", Properties: props, Required: required, PropertyOrder: order}
	}
}

var requiredCache sync.Map // reflect.Type → []string

// requiredFields returns the names of the required fields of struct type t.
func requiredFields(t reflect.Type) []string {
	if r, ok := requiredCache.Load(t); ok {
		return r.([]string)
	}
	_, _, required := objectSchema(t, true)
	requiredCache.Store(t, required)
	return required
}
