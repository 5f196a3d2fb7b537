package domain

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
)

// Debug shows what went upstream with anything that looks like a
// credential replaced by "[redacted]":
var (
	// secretPattern: provider keys (sk-…, sk-ant-…), Parley keys (pk_…),
	// bearer tokens, the token formats of AWS (access key ids), GitHub,
	// Slack and Google, JWTs, and PEM private keys (to the text's end when
	// the key's end is missing); each goes whole.
	secretPattern = regexp.MustCompile(`\b(?:sk-[A-Za-z0-9_\-]{8,}|pk_[A-Za-z0-9_\-]{16,}|Bearer\s+[A-Za-z0-9._\-]{8,}|` +
		`(?:AKIA|ASIA)[A-Z0-9]{16}\b|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|xox[abprs]-[A-Za-z0-9\-]{10,}|` +
		`AIza[A-Za-z0-9_\-]{35}|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})|` +
		`-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)`)
	// secretHeader: the value of an Authorization (or Cookie) header, in
	// any scheme (Basic, Token, Digest with its quoted parameters, ...): to
	// the closing quote when quoted, else to the line's end or a quote that
	// opens none. The header's name and a scheme the value starts with stay.
	secretHeader = regexp.MustCompile(`(?i)(\b(?:proxy-)?authorization|\b(?:set-)?cookie)(["']?\s*[:=]\s*)` +
		`(?:(")(` + authScheme + `)?(?:[^"\\\r\n]|\\.)*"?|(')(` + authScheme + `)?(?:[^'\\\r\n]|\\.)*'?|(` + authScheme + `)?[^\s"'](?:[^\r\n"']|"[^"\r\n]*")*)`)
	// secretAssignment: a value given a credential's name (password=…,
	// "apiKey": "…", token: …, OPENAI_API_KEY=…, password := "…"); a quoted
	// value goes whole, to its closing quote. The name stays.
	secretAssignment = regexp.MustCompile(`(?i)((?:` + secretName + `)["']?\s*(?::=|=>|[:=])\s*)` +
		`(?:(")(?:[^"\\\r\n]|\\.)*"?|(')(?:[^'\\\r\n]|\\.)*'?|[^\s"',;&]+)`)
	// secretQuery: a URL query parameter that carries a credential
	// (?api_key=…, &access_token=…, &key=…, &sig=…, X-Amz-Signature=…).
	secretQuery = regexp.MustCompile(`(?i)([?&](?:` + secretName + `|(?:[A-Za-z0-9]+[_.-])*(?:key|sig|signature|auth))=)[^&#\s"'<>]+`)
	// urlCredentials: the password of a URL's user:password@ (also with no
	// user, redis://:password@, and with an @ of its own); the user stays.
	urlCredentials = regexp.MustCompile(`(://[^/\s:@]*:)[^/\s?#]+@`)
)

const (
	// secretName names a credential: the common names, and those that end
	// in _KEY, _SECRET, _TOKEN, _PASSWORD, _PASS (environment variables:
	// OPENAI_API_KEY, AWS_SECRET_ACCESS_KEY, DB_PASSWORD), matched from
	// their last part (_API_KEY), whatever comes before.
	secretName = `(?:\b|_)(?:password|passwd|pwd|secret|client[_-]?secret|api[_-]?key|access[_-]?key|secret[_-]?key|private[_-]?key|` +
		`access[_-]?token|auth[_-]?token|refresh[_-]?token|session[_-]?token|token)|_(?:key|pass)`
	// authScheme is an HTTP authentication scheme, kept before the
	// redacted credentials.
	authScheme = `(?:Basic|Bearer|Token|Digest|Negotiate|NTLM|OAuth|ApiKey|Bot|SSWS|AWS4-HMAC-SHA256)\s+`
)

// redactMessages copies msgs with the provider key and anything that looks
// like a credential replaced by "[redacted]".
func redactMessages(msgs []LLMMessage, key string) []LLMMessage {
	out := make([]LLMMessage, len(msgs))
	for i, m := range msgs {
		m.Content, m.Refusal, m.ToolCallID = redact(m.Content, key), redact(m.Refusal, key), redact(m.ToolCallID, key)
		if len(m.ToolCalls) > 0 {
			calls := make([]ToolCall, len(m.ToolCalls))
			for j, c := range m.ToolCalls {
				c.ID, c.Name, c.Arguments = redact(c.ID, key), redact(c.Name, key), redact(c.Arguments, key)
				c.ExtraContent = redactJSON(c.ExtraContent, key)
				calls[j] = c
			}
			m.ToolCalls = calls
		}
		out[i] = m
	}
	return out
}

// redactJSON is doc, a JSON document, with redact applied to each of its
// strings, members' names too, so that it stays JSON; nil when it is not
// JSON.
func redactJSON(doc []byte, key string) []byte {
	if len(doc) == 0 {
		return doc
	}
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber() // numbers as they came
	var v any
	if d.Decode(&v) != nil {
		return nil
	}
	out, err := asItCame(redactStrings(v, key))
	if err != nil {
		return nil
	}
	return out
}

// redactStrings applies redact to every string in v, a decoded JSON value.
func redactStrings(v any, key string) any {
	switch v := v.(type) {
	case string:
		return redact(v, key)
	case []any:
		for i := range v {
			v[i] = redactStrings(v[i], key)
		}
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[redact(k, key)] = redactStrings(e, key)
		}
		return out
	}
	return v
}

// redact replaces key and anything in s that looks like a credential with
// "[redacted]". A header goes first, so that its scheme stays.
func redact(s, key string) string {
	if key != "" {
		s = strings.ReplaceAll(s, key, "[redacted]")
	}
	s = secretHeader.ReplaceAllString(s, "${1}${2}${3}${4}${5}${6}${7}[redacted]${3}${5}")
	s = secretPattern.ReplaceAllString(s, "[redacted]")
	s = secretAssignment.ReplaceAllString(s, "${1}${2}${3}[redacted]${2}${3}")
	s = secretQuery.ReplaceAllString(s, "${1}[redacted]")
	return urlCredentials.ReplaceAllString(s, "${1}[redacted]@")
}
