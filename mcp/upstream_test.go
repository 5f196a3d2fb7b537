package mcp

import (
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/llm"
	"github.com/parleyhq/parley/llm/llmtest"
)

// upstream is the tests' AI provider: llmtest's HTTP fake speaking the
// OpenAI wire protocol, reached through the real llm client.
type upstream struct {
	*llmtest.Server
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{llmtest.NewServer(t)}
	u.reply("Hello", ", ", "world", "!")
	return u
}

func (u *upstream) llm() domain.LLM { return llm.New(llm.Config{AllowPrivate: true, MaxRetries: -1}) }

// reply makes every later request answer with these deltas.
func (u *upstream) reply(deltas ...string) {
	u.Script(func(int, llmtest.Request) llmtest.Behavior { return llmtest.Behavior{Deltas: deltas} })
}

// hang makes the next request wait for its caller to go away; started
// closes when that request arrives, canceled when the fake sees it
// abandoned.
func (u *upstream) hang() (started, canceled <-chan struct{}) {
	before := u.Count()
	u.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang})
	s, c := make(chan struct{}), make(chan struct{})
	go func() {
		for deadline := time.Now().Add(20 * time.Second); u.Count() == before; {
			if time.Now().After(deadline) {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		close(s)
		if u.WaitCanceledN(before, 20*time.Second) {
			close(c)
		}
	}()
	return s, c
}

// lastMessages returns the messages of the last request, as "role: content".
func (u *upstream) lastMessages() []string {
	var out []string
	for _, m := range u.Last().Messages {
		out = append(out, m.Role+": "+m.Content)
	}
	return out
}
