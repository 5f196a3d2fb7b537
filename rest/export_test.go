package rest

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/parleyhq/parley/domain"
)

// encodedChunk is the encoder's JSON of the chunk of a stream of
// id, created and model, as stream.chunk makes it, with choice, and
// messageID and conversationID.
func encodedChunk(id string, created int64, model string, choice chunkChoice, messageID, conversationID string) string {
	st := &stream{meta: domain.CompletionMeta{MessageID: id, Created: time.Unix(created, 0), Model: model}}
	c := st.chunk()
	c.Choices, c.MessageID, c.ConversationID = []chunkChoice{choice}, messageID, conversationID
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(c); err != nil {
		panic(err)
	}
	return string(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

// FirstChunkJSONForTest is the encoder's opening chunk of a stream.
func FirstChunkJSONForTest(id string, created int64, model, messageID, conversationID string) string {
	empty := ""
	return encodedChunk(id, created, model, chunkChoice{Delta: chunkDelta{Role: "assistant", Content: &empty}}, messageID, conversationID)
}

// FinishChunkJSONForTest is the encoder's finishing chunk of a stream.
func FinishChunkJSONForTest(id string, created int64, model, reason string) string {
	return encodedChunk(id, created, model, chunkChoice{Delta: chunkDelta{}, FinishReason: &reason}, "", "")
}
