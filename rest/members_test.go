package rest_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestMembersLastOwnerRace demotes one of a project's two owners while
// removing the other, at once, many times: one request must succeed and
// the other be refused with 409, and the project must keep an owner.
func TestMembersLastOwnerRace(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		aliceID, alice := h.user("alice")
		bobID, _ := h.user("bob")
		for i := range 50 {
			prj := h.project(alice, fmt.Sprintf("race %d", i))
			h.setRole(alice, prj, bobID, "owner")
			members := "/api/v1/projects/" + prj + "/members/"

			start := make(chan struct{})
			var demote, remove *response
			var demoteErr, removeErr error
			var wg sync.WaitGroup
			wg.Go(func() {
				<-start
				demote, demoteErr = h.send("PUT", members+aliceID, h.admin, map[string]any{"role": "viewer"})
			})
			wg.Go(func() {
				<-start
				remove, removeErr = h.send("DELETE", members+bobID, h.admin, nil)
			})
			close(start)
			wg.Wait()
			if err := errors.Join(demoteErr, removeErr); err != nil {
				t.Fatalf("try %d: %v", i, err)
			}

			statuses := [2]int{demote.Status, remove.Status}
			if statuses != [2]int{200, 409} && statuses != [2]int{409, 200} {
				t.Fatalf("try %d: demote = %d %s, remove = %d %s; want one 200 and one 409",
					i, demote.Status, demote.Body, remove.Status, remove.Body)
			}
			loser := demote
			if loser.Status == 200 {
				loser = remove
			}
			want := fmt.Sprintf("project %s must keep at least one owner; make another member owner first", prj)
			if loser.ErrorCode() != "conflict" || loser.ErrorMessage() != want {
				t.Fatalf("try %d: 409 body = %s; want conflict %q", i, loser.Body, want)
			}

			list := h.must(200, "GET", "/api/v1/projects/"+prj+"/members", h.admin, nil)
			owners := 0
			for _, m := range list["data"].([]any) {
				if m.(map[string]any)["role"] == "owner" {
					owners++
				}
			}
			if got, want := owners, 1; got != want {
				t.Fatalf("try %d: owners = %d; want %d: %v", i, got, want, list)
			}
		}
	})
}

// TestMemberPutOfTheSameRoleChangesNothing: PUT is idempotent: giving a
// member the role it has answers it as it is, updatedAt kept, as a PATCH
// with nothing new does; a new role moves updatedAt, and createdAt stays.
func TestMemberPutOfTheSameRoleChangesNothing(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		prj := h.project(h.admin, "p")
		aliceID, _ := h.user("alice")
		path := "/api/v1/projects/" + prj + "/members/" + aliceID
		first := h.must(200, "PUT", path, h.admin, map[string]any{"role": "viewer"})
		time.Sleep(5 * time.Millisecond) // updatedAt has milliseconds: a write now would show
		if again := h.must(200, "PUT", path, h.admin, map[string]any{"role": "viewer"}); again["updatedAt"] != first["updatedAt"] || again["createdAt"] != first["createdAt"] {
			t.Errorf("PUT of the same role answered %v, want the member as it was, %v", again, first)
		}
		listed := h.must(200, "GET", "/api/v1/projects/"+prj+"/members", h.admin, nil)["data"].([]any)
		for _, m := range listed {
			if m := m.(map[string]any); m["userId"] == aliceID && m["updatedAt"] != first["updatedAt"] {
				t.Errorf("after a PUT of the same role the member is listed with updatedAt %v, want %v", m["updatedAt"], first["updatedAt"])
			}
		}
		time.Sleep(5 * time.Millisecond)
		if editor := h.must(200, "PUT", path, h.admin, map[string]any{"role": "editor"}); editor["updatedAt"] == first["updatedAt"] || editor["createdAt"] != first["createdAt"] {
			t.Errorf("PUT of a new role answered %v, want updatedAt moved and createdAt %v", editor, first["createdAt"])
		}
	})
}

// TestMembersLeave: any member may remove itself from a project (leave),
// whatever its role, and then sees the project no more; removing another
// member still takes an owner, and the last owner cannot leave.
func TestMembersLeave(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		aliceID, alice := h.user("alice")
		bobID, bob := h.user("bob")
		carolID, carol := h.user("carol")
		prj := h.project(alice, "team")
		h.setRole(alice, prj, bobID, "viewer")
		h.setRole(alice, prj, carolID, "editor")
		members := "/api/v1/projects/" + prj + "/members/"

		if r := h.call("DELETE", members+carolID, bob, nil); r.Status != 403 {
			t.Errorf("a viewer removing another member = %d %s, want 403", r.Status, r.Body)
		}
		h.must(200, "DELETE", members+bobID, bob, nil)
		if r := h.call("GET", "/api/v1/projects/"+prj, bob, nil); r.Status != 404 {
			t.Errorf("the project after leaving it = %d %s, want 404", r.Status, r.Body)
		}
		if r := h.call("DELETE", members+bobID, bob, nil); r.Status != 404 {
			t.Errorf("leaving again = %d %s, want 404", r.Status, r.Body)
		}
		h.must(200, "DELETE", members+carolID, carol, nil)
		if r := h.call("DELETE", members+aliceID, alice, nil); r.Status != 409 || r.ErrorCode() != "conflict" {
			t.Errorf("the last owner leaving = %d %s, want 409", r.Status, r.Body)
		}
		got := h.must(200, "GET", "/api/v1/projects/"+prj+"/members", alice, nil)["data"].([]any)
		if len(got) != 1 || got[0].(map[string]any)["userId"] != aliceID {
			t.Errorf("members after bob and carol left = %v, want alice alone", got)
		}
	})
}
