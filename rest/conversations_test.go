package rest_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/secret"
	"github.com/parleyhq/parley/store"
)

// usageConversations returns the conversation_id of chat's usage records
// with outcome, once the batcher wrote them.
func usageConversations(t *testing.T, h *harness, chat, outcome string) []string {
	t.Helper()
	h.app.FlushUsage()
	var ids []string
	if err := h.app.Store.DB().Raw("SELECT conversation_id FROM usage_records WHERE chat_id = ? AND outcome = ? ORDER BY created_at, id",
		chat, outcome).Scan(&ids).Error; err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestUnstoredFirstTurnNamesNoConversation: a completion that would have
// started a conversation but whose turn could not be stored (its chat was
// deleted meanwhile, by another instance, which cannot stop it) created no
// conversation, so its usage record names none, as that of a first turn
// the upstream failed does; it named an id that never existed.
func TestUnstoredFirstTurnNamesNoConversation(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		h.up.Enqueue(llmtest.Behavior{Delay: 300 * time.Millisecond})
		before := h.up.Count()
		done := make(chan *response, 1)
		go func() {
			done <- h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("hi")}})
		}()
		for deadline := time.Now().Add(5 * time.Second); h.up.Count() == before; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the completion did not reach the upstream within 5s")
			}
		}
		// As another instance deletes it: in the database, past this
		// instance's services.
		if err := h.app.Store.DeleteChat(context.Background(), w.chat); err != nil {
			t.Fatal(err)
		}
		if r := <-done; r.Status != 404 {
			t.Fatalf("completion = %d %s, want 404", r.Status, r.Body)
		}
		if got := usageConversations(t, h, w.chat, "not_stored"); len(got) != 1 || got[0] != "" {
			t.Errorf("the unstored first turn's usage names conversations %q, want one record naming none", got)
		}
	})
}

// deletedMidway posts body to path, streamed or not, and once the upstream
// is answering it (slowly: 30 s before a JSON reply, a word each 100 ms of
// a 100-word stream) runs del: a delete of what the completion would store
// its turn in. The delete must stop the completion: its upstream call is
// cancelled, and its answer, which it returns, comes within 10 s.
func deletedMidway(t *testing.T, h *harness, path string, body map[string]any, stream bool, del func()) *response {
	t.Helper()
	b := llmtest.Behavior{Delay: 30 * time.Second}
	if stream {
		b = llmtest.Behavior{Deltas: strings.Fields(strings.Repeat("word ", 100)), ChunkDelay: 100 * time.Millisecond}
	}
	h.up.Enqueue(b)
	before := h.up.Count()
	body["stream"] = stream
	done := make(chan *response, 1)
	go func() { done <- h.call("POST", path, h.admin, body) }()
	for deadline := time.Now().Add(5 * time.Second); h.up.Count() == before; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the completion did not reach the upstream within 5s")
		}
	}
	if stream {
		time.Sleep(300 * time.Millisecond) // a few words streamed
	}
	del()
	if !h.up.WaitCanceledN(before, 5*time.Second) {
		t.Error("the upstream call went on after the delete")
	}
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the completion went on after the delete")
		return nil
	}
}

// wasDeleted checks that r, a completion's answer, says that what (a
// "conversation", "chat" or "project" id) was deleted while it ran: a 404,
// or once streaming an error event and [DONE] after fewer words than the
// whole reply.
func wasDeleted(t *testing.T, r *response, stream bool, what, id string) {
	t.Helper()
	msg := what + " " + id + " was deleted while this completion ran"
	body := string(r.Body)
	if stream {
		if r.Status != 200 || !strings.Contains(body, `"code":"not_found"`) || !strings.Contains(body, msg) || !strings.HasSuffix(strings.TrimSpace(body), "data: [DONE]") {
			t.Errorf("stream: %d %s, want an error event not_found saying %q, then [DONE]", r.Status, body, msg)
		}
		if n := strings.Count(body, `"content":"word`); n == 0 || n >= 100 {
			t.Errorf("stream: %d words before the error event, want some and not all 100", n)
		}
		return
	}
	if r.Status != 404 || r.ErrorCode() != "not_found" || !strings.Contains(r.ErrorMessage(), msg) {
		t.Errorf("%d %s, want 404 not_found saying %q", r.Status, body, msg)
	}
}

// TestRefusedContinuationFreesTheConversation: a continuation refused
// once it had claimed its conversation (a documentId of no document, a
// tool message answering no call, a maxTokens the chat's model refuses
// never reaches this point) lets the next one through. The claim was
// released only for errors of its own block: after any of these refusals
// every later continuation of the conversation answered 409 "being
// continued by another request" until the server restarted.
func TestRefusedContinuationFreesTheConversation(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/chats/" + w.chat + "/completions"
		conv := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("first")}})["conversationId"].(string)
		for name, msg := range map[string]map[string]any{
			"a missing document":        {"role": "user", "documentId": "doc_06h3vckvh8y3bm3bhga67qvzgc"},
			"a tool message of no call": {"role": "tool", "toolCallId": "call_x", "content": "18C"},
		} {
			r := h.call("POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{msg}})
			if r.Status != 400 {
				t.Fatalf("%s: %d %s, want 400", name, r.Status, r.Body)
			}
			r = h.call("POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{userMessage("again after " + name)}})
			if r.Status != 200 {
				t.Errorf("continuing after %s: %d %s, want 200", name, r.Status, r.Body)
			}
		}
	})
}

// TestConcurrentContinuations: tabs that continue one conversation at the
// same time on one instance: the first goes upstream, and the others get a
// 409 conflict at once, before any upstream call (so nobody pays for a
// reply that could not be stored) and with no usage recorded. Sending a
// refused request again once the first has answered continues after its
// turn.
func TestConcurrentContinuations(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		for _, stream := range []bool{false, true} {
			w := h.world()
			path := "/api/v1/chats/" + w.chat + "/completions"
			conv := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("first")}})["conversationId"].(string)
			const tabs = 3
			h.up.Enqueue(llmtest.Behavior{Delay: 500 * time.Millisecond})
			before := len(h.up.Requests())
			res := sendTogether(t, tabs, func(i int) (*response, error) {
				return h.send("POST", path, h.admin, continueWith(conv, stream, i))
			})
			if n := len(h.up.Requests()) - before; n != 1 {
				t.Fatalf("stream %v: %d tabs went upstream, want 1", stream, n)
			}
			var won, lost []int
			for i, r := range res {
				switch {
				case r.Status == 200 && !strings.Contains(string(r.Body), `"error"`):
					won = append(won, i)
				case r.Status == 409 && r.ErrorCode() == "conflict" &&
					r.ErrorMessage() == "conversation "+conv+" is being continued by another request; wait for its reply, then send this request again":
					lost = append(lost, i)
				default:
					t.Fatalf("stream %v: tab %d got %d %s, want the reply or a conflict", stream, i, r.Status, r.Body)
				}
			}
			if len(won) != 1 {
				t.Fatalf("stream %v: %d tabs stored their turn, want 1", stream, len(won))
			}
			want := []string{"user: first", "assistant: echo: first", fmt.Sprint("user: tab ", won[0]), fmt.Sprint("assistant: echo: tab ", won[0])}
			if got := conversationMessages(t, h, conv); strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("stream %v: stored %q, want %q", stream, got, want)
			}
			if got := usageConversations(t, h, w.chat, "not_stored"); len(got) != 0 {
				t.Errorf("stream %v: the refused tabs recorded usage %q, want none", stream, got)
			}

			h.must(200, "POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{userMessage(fmt.Sprint("tab ", lost[0]))}})
			want = append(want, fmt.Sprint("user: tab ", lost[0]), fmt.Sprint("assistant: echo: tab ", lost[0]))
			if got := conversationMessages(t, h, conv); strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("stream %v: after sending a refused tab again, stored %q, want %q", stream, got, want)
			}
		}
	})
}

// TestContinuingAConversationBeingStarted: the first chunk of a first
// turn's stream names its conversation before the turn is stored. A
// continuation of that id sent meanwhile (a client that stopped the stream
// and sends the next message at once, a second tab) gets the 409 of a
// conversation being continued, to send again once the reply is done, and
// sent again it goes upstream with the first turn. It got a 404 saying the
// conversation does not exist, and a client drops a conversation that
// does not exist.
func TestContinuingAConversationBeingStarted(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/chats/" + w.chat + "/completions"
		h.up.Enqueue(llmtest.Behavior{ChunkDelay: 100 * time.Millisecond})
		res := stream(t, h, path, map[string]any{"messages": []any{userMessage("one two three")}})
		sc := bufio.NewScanner(res.Body)
		conv := firstConversationID(t, sc)
		before := h.up.Count()
		r := h.call("POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{userMessage("next")}})
		if want := "conversation " + conv + " is being started by another request; wait for its reply, then send this request again"; r.Status != 409 || r.ErrorMessage() != want {
			t.Errorf("continuing while the first turn streams: %d %s, want 409: %s", r.Status, r.Body, want)
		}
		if h.up.Count() != before {
			t.Error("the refused continuation went upstream")
		}
		for sc.Scan() { // the first turn ends, stored
		}
		res.Body.Close()
		h.must(200, "POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{userMessage("next")}})
		if got, want := strings.Join(upstreamMessages(t, h), "|"), "system: You are a test.|user: one two three|assistant: echo: one two three|user: next"; got != want {
			t.Errorf("the continuation sent again went upstream with %q, want %q", got, want)
		}
	})
}

// TestDeletingAConversationBeingStarted: the first chunk of a first turn's
// stream names its conversation before the turn is stored. Deleting it
// meanwhile gets a 409 to retry when the reply ends (a 404 for a caller
// who may not see it, a 403 for one who may not delete it), and retried
// then it deletes the conversation. The delete answered 404, and the turn
// then stored the conversation the client was told does not exist.
func TestDeletingAConversationBeingStarted(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		viewer, viewerKey := h.user("viewer")
		h.setRole(h.admin, w.project, viewer, "viewer")
		_, outsiderKey := h.user("outsider")
		h.up.Enqueue(llmtest.Behavior{ChunkDelay: 100 * time.Millisecond})
		res := stream(t, h, "/api/v1/chats/"+w.chat+"/completions", map[string]any{"messages": []any{userMessage("one two three")}})
		sc := bufio.NewScanner(res.Body)
		conv := firstConversationID(t, sc)
		path := "/api/v1/conversations/" + conv
		r := h.call("DELETE", path, h.admin, nil)
		if want := "conversation " + conv + " cannot be deleted yet: its first reply is still being generated; retry when it ends"; r.Status != 409 || r.ErrorCode() != "conflict" || r.ErrorMessage() != want {
			t.Errorf("deleting while the first turn streams: %d %s, want 409: %s", r.Status, r.Body, want)
		}
		if r := h.call("DELETE", path, outsiderKey, nil); r.Status != 404 || r.ErrorMessage() != "conversation "+conv+" does not exist" {
			t.Errorf("an outsider deleting it: %d %s, want 404", r.Status, r.Body)
		}
		if r := h.call("DELETE", path, viewerKey, nil); r.Status != 403 {
			t.Errorf("a viewer deleting it: %d %s, want 403", r.Status, r.Body)
		}
		for sc.Scan() { // the first turn ends, stored
		}
		res.Body.Close()
		if got, want := strings.Join(conversationMessages(t, h, conv), "|"), "user: one two three|assistant: echo: one two three"; got != want {
			t.Errorf("the first turn stored %q, want %q", got, want)
		}
		h.must(200, "DELETE", path, h.admin, nil)
		h.must(404, "GET", path, h.admin, nil)
		h.must(404, "DELETE", path, h.admin, nil)
	})
}

// TestConcurrentContinuationsAcrossInstances: continuations of one
// conversation sent at once to two instances of Parley on one database
// both go upstream (an instance knows only its own); the first turn stored
// wins, and the other gets a 409 conflict (a JSON error, or an error event
// after the streamed reply) and stores nothing. The history stays in
// order, each user message right before its reply, and sending the loser's
// request again continues after the winner's turn.
func TestConcurrentContinuationsAcrossInstances(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		key := secret.GenerateKey()
		sameKey := func(c *app.Config) { c.SecretKey = key }
		a, b := newHarness(t, st, sameKey), newHarness(t, st, sameKey)
		for _, stream := range []bool{false, true} {
			w := a.world() // its provider is a's fake upstream, for both
			path := "/api/v1/chats/" + w.chat + "/completions"
			conv := a.must(200, "POST", path, a.admin, map[string]any{"messages": []any{userMessage("first")}})["conversationId"].(string)
			a.up.Enqueue(llmtest.Behavior{Delay: 500 * time.Millisecond}, llmtest.Behavior{Delay: 500 * time.Millisecond})
			before := len(a.up.Requests())
			res := sendTogether(t, 2, func(i int) (*response, error) {
				h := []*harness{a, b}[i]
				return h.send("POST", path, h.admin, continueWith(conv, stream, i))
			})
			for _, r := range a.up.Requests()[before:] {
				if got, want := len(r.Messages), 4; got != want { // system, first, its reply, the tab's
					t.Fatalf("stream %v: an upstream request had %d messages, want %d: the instances did not run at the same time", stream, got, want)
				}
			}
			var won, lost []int
			for i, r := range res {
				body := string(r.Body)
				switch {
				case !stream && r.Status == 200, stream && r.Status == 200 && !strings.Contains(body, `"error"`):
					won = append(won, i)
				case !stream && r.Status == 409 && r.ErrorCode() == "conflict" && strings.Contains(r.ErrorMessage(), "send this request again"),
					stream && r.Status == 200 && strings.Contains(body, `"code":"conflict"`) && strings.Contains(body, `"content":"echo: "`): // after the reply
					lost = append(lost, i)
				default:
					t.Fatalf("stream %v: tab %d got %d %s, want the reply or a conflict", stream, i, r.Status, body)
				}
			}
			if len(won) != 1 || len(lost) != 1 {
				t.Fatalf("stream %v: %d tabs stored their turn and %d lost, want 1 and 1", stream, len(won), len(lost))
			}
			want := []string{"user: first", "assistant: echo: first", fmt.Sprint("user: tab ", won[0]), fmt.Sprint("assistant: echo: tab ", won[0])}
			if got := conversationMessages(t, a, conv); strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("stream %v: stored %q, want %q", stream, got, want)
			}
			loser := []*harness{a, b}[lost[0]]
			loser.app.FlushUsage()
			if got := usageConversations(t, a, w.chat, "not_stored"); len(got) != 1 || got[0] != conv {
				t.Errorf("stream %v: the loser's usage records name %q, want one naming %s", stream, got, conv)
			}

			a.must(200, "POST", path, a.admin, map[string]any{"conversationId": conv, "messages": []any{userMessage(fmt.Sprint("tab ", lost[0]))}})
			want = append(want, fmt.Sprint("user: tab ", lost[0]), fmt.Sprint("assistant: echo: tab ", lost[0]))
			if got := conversationMessages(t, a, conv); strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("stream %v: after sending the loser again, stored %q, want %q", stream, got, want)
			}
			if got := strings.Join(upstreamMessages(t, a)[1:], "|"); got != strings.Join(want[:len(want)-1], "|") {
				t.Errorf("stream %v: the loser sent again went upstream with %q, want the winner's turn in it", stream, got)
			}
		}
	})
}

// continueWith is tab i's continuation of conv.
func continueWith(conv string, stream bool, i int) map[string]any {
	return map[string]any{"stream": stream, "conversationId": conv, "messages": []any{userMessage(fmt.Sprint("tab ", i))}}
}

// sendTogether sends n requests at once and returns their responses.
func sendTogether(t *testing.T, n int, send func(i int) (*response, error)) []*response {
	t.Helper()
	res := make([]*response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := send(i)
			if err != nil {
				t.Error(err)
				return
			}
			res[i] = r
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return res
}

// conversationMessages returns a conversation's stored messages as
// "role: content", in order.
func conversationMessages(t *testing.T, h *harness, conv string) []string {
	t.Helper()
	var out []string
	for _, m := range h.must(200, "GET", "/api/v1/conversations/"+conv, h.admin, nil)["messages"].([]any) {
		mm := m.(map[string]any)
		out = append(out, fmt.Sprintf("%s: %s", mm["role"], mm["content"]))
	}
	return out
}

// TestDeletedDuringContinuation: a conversation, or its chat, deleted while
// a continuation of it runs on this instance stops that continuation: its
// upstream call is cancelled and it gets a 404 (an error event, once
// streaming) saying what was deleted, its usage is recorded as
// interrupted, and no message is left behind.
// TestChatDeletedDuringCompletion covers a first turn.
func TestDeletedDuringContinuation(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		for _, deleted := range []string{"conversation", "chat"} {
			for _, stream := range []bool{false, true} {
				w := h.world()
				path := "/api/v1/chats/" + w.chat + "/completions"
				conv := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("first")}})["conversationId"].(string)
				id, del := conv, "/api/v1/conversations/"+conv
				if deleted == "chat" {
					id, del = w.chat, "/api/v1/chats/"+w.chat
				}
				r := deletedMidway(t, h, path, map[string]any{"conversationId": conv, "messages": []any{userMessage("hi")}}, stream,
					func() { h.must(200, "DELETE", del, h.admin, nil) })
				wasDeleted(t, r, stream, deleted, id)
				if got := usageConversations(t, h, w.chat, "interrupted"); len(got) != 1 || got[0] != conv {
					t.Errorf("%s deleted, stream %v: interrupted usage of conversations %q, want one of %s", deleted, stream, got, conv)
				}
				var left int64
				if err := h.app.Store.DB().Raw("SELECT count(*) FROM messages WHERE conversation_id = ?", conv).Scan(&left).Error; err != nil {
					t.Fatal(err)
				}
				if left != 0 {
					t.Errorf("%s deleted, stream %v: %d messages left of the deleted conversation", deleted, stream, left)
				}
			}
		}
	})
}

// TestUnfinishedStreamTurns: a continuation the client stops midway keeps
// its turn as far as the reply went (TestStoppedStreamKeepsItsTurn has the
// first turns); one that the upstream cuts off without a finish reason
// stores no part of its turn (neither the request's message nor the
// partial reply); a continuation right after goes upstream with the
// history as stored.
func TestUnfinishedStreamTurns(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/chats/" + w.chat + "/completions"
		conv := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("first")}})["conversationId"].(string)
		stored := []string{"user: first", "assistant: echo: first"}

		h.up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang, AfterDeltas: 2})
		before := h.up.Count()
		ctx, cancel := context.WithCancel(context.Background())
		res := streamCtx(t, h, ctx, path, map[string]any{"conversationId": conv, "messages": []any{userMessage("abandoned one")}})
		// Stop once both deltas have arrived: the turn keeps the reply as
		// far as Parley had it, and one read may hold only the first.
		var seen []byte
		for buf := make([]byte, 256); !bytes.Contains(seen, []byte("abandoned ")); {
			n, err := res.Body.Read(buf)
			if seen = append(seen, buf[:n]...); err != nil {
				t.Fatalf("the stream ended before its second delta: %v, after %q", err, seen)
			}
		}
		cancel()
		res.Body.Close()
		if !h.up.WaitCanceledN(before, 2*time.Second) {
			t.Fatal("the upstream did not see the abandoned stream cancelled")
		}
		stored = append(stored, "user: abandoned one", "assistant: echo: abandoned ")
		var got []string
		for deadline := time.Now().Add(5 * time.Second); len(got) != len(stored) && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			got = conversationMessages(t, h, conv) // stored once the upstream call has ended
		}
		if strings.Join(got, "|") != strings.Join(stored, "|") {
			t.Errorf("after the abandoned stream: %q, want %q", got, stored)
		}

		h.up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultTruncate, AfterDeltas: 2})
		events := readSSE(t, stream(t, h, path, map[string]any{"conversationId": conv, "messages": []any{userMessage("cut one")}}))
		if e, _ := events[len(events)-2].data["error"].(map[string]any); e == nil || e["code"] != "upstream_error" {
			t.Fatalf("a truncated stream ended with %s, want an upstream_error event", events[len(events)-2].raw)
		}
		if got := conversationMessages(t, h, conv); strings.Join(got, "|") != strings.Join(stored, "|") {
			t.Errorf("after the truncated stream: %q, want %q", got, stored)
		}

		h.must(200, "POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{userMessage("next")}})
		if got, want := strings.Join(upstreamMessages(t, h), "|"), "system: You are a test.|user: first|assistant: echo: first|user: abandoned one|assistant: echo: abandoned |user: next"; got != want {
			t.Errorf("the continuation went upstream with %q, want %q", got, want)
		}
	})
}

// firstConversationID reads a stream up to its first chunk and returns the
// conversationId it names; the rest of the stream is left in sc.
func firstConversationID(t *testing.T, sc *bufio.Scanner) string {
	t.Helper()
	var first struct {
		ConversationID string `json:"conversationId"`
	}
	for first.ConversationID == "" && sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			if err := json.Unmarshal([]byte(data), &first); err != nil {
				t.Fatalf("first chunk: %v: %s", err, data)
			}
		}
	}
	if first.ConversationID == "" {
		t.Fatal("the stream's first chunk named no conversation")
	}
	return first.ConversationID
}

// TestConversationsOfProject: ?projectId= lists a project's conversations,
// of all its chats, to its members; with chatId, or for a project the
// caller cannot see, it is refused, and its cursors belong to it.
func TestConversationsOfProject(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		chat2 := h.chat(h.admin, w.project, w.provider, nil)
		other := h.world()
		var want []string
		for _, chat := range []string{w.chat, chat2, other.chat, w.chat} {
			id := h.must(200, "POST", "/api/v1/chats/"+chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("hi")}})["conversationId"].(string)
			if chat != other.chat {
				want = append(want, id)
			}
		}
		var got []string
		path := "/api/v1/conversations?projectId=" + w.project + "&limit=2"
		for next := path; ; {
			page := h.must(200, "GET", next, h.admin, nil)
			for _, c := range page["data"].([]any) {
				got = append(got, c.(map[string]any)["id"].(string))
			}
			cursor, _ := page["nextCursor"].(string)
			if cursor == "" {
				break
			}
			next = path + "&cursor=" + cursor
		}
		if !slices.Equal(got, want) {
			t.Errorf("the project's conversations = %q, want %q", got, want)
		}

		_, key := h.user("stranger")
		if r := h.call("GET", "/api/v1/conversations?projectId="+w.project, key, nil); r.Status != 404 {
			t.Errorf("a non-member's list = %d %s, want 404", r.Status, r.Body)
		}
		if r := h.call("GET", "/api/v1/conversations?projectId="+w.project+"&chatId="+w.chat, h.admin, nil); r.Status != 400 || r.ErrorField() != "projectId" {
			t.Errorf("projectId with chatId = %d %s, want 400 on projectId", r.Status, r.Body)
		}
		cursor := h.must(200, "GET", path, h.admin, nil)["nextCursor"].(string)
		if r := h.call("GET", "/api/v1/conversations?chatId="+w.chat+"&cursor="+cursor, h.admin, nil); r.Status != 400 {
			t.Errorf("a project list's cursor passed to a chat's = %d %s, want 400", r.Status, r.Body)
		}
	})
}

// TestSentAssistantMessagesHaveNoUsage: an assistant message a turn's
// caller sent (a few-shot example) is stored with the turn, but is no
// model's reply: it is shown without the usage, model and finish reason a
// reply has, not with a usage of zeros, over REST and MCP alike.
func TestSentAssistantMessagesHaveNoUsage(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		conv := h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{
			userMessage("2+2?"), map[string]any{"role": "assistant", "content": "4"}, userMessage("3+3?"),
		}})["conversationId"].(string)
		msgs := h.must(200, "GET", "/api/v1/conversations/"+conv, h.admin, nil)["messages"].([]any)
		if len(msgs) != 4 {
			t.Fatalf("%d messages stored, want 4: %v", len(msgs), msgs)
		}
		sent, reply := msgs[1].(map[string]any), msgs[3].(map[string]any)
		if _, ok := sent["usage"]; ok || sent["role"] != "assistant" || sent["content"] != "4" {
			t.Errorf("the sent assistant message is shown as %v; want it without usage", sent)
		}
		if u, _ := reply["usage"].(map[string]any); u == nil || u["totalTokens"].(float64) <= 0 || reply["model"] == nil {
			t.Errorf("the reply is shown as %v; want its usage and model", reply)
		}
	})
}
