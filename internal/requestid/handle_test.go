package requestid

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"
)

// oldHandler is handler as it added the attributes one by one.
type oldHandler struct{ slog.Handler }

func (h oldHandler) Handle(ctx context.Context, r slog.Record) error {
	if req, ok := ctx.Value(key{}).(*request); ok {
		nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
		nr.AddAttrs(slog.String("request_id", req.id))
		if user := req.user.Load(); user != nil {
			nr.AddAttrs(slog.String("user_id", *user))
		}
		req.mu.Lock()
		nr.AddAttrs(req.attrs...)
		req.mu.Unlock()
		r.Attrs(func(a slog.Attr) bool {
			nr.AddAttrs(a)
			return true
		})
		r = nr
	}
	return h.Handler.Handle(ctx, r)
}

// TestHandleAsBefore: the attributes gathered and added at once make the
// lines adding them one by one made.
func TestHandleAsBefore(t *testing.T) {
	at := time.Date(2026, 12, 7, 1, 2, 3, 4, time.UTC)
	for n := range 25 {
		for _, user := range []bool{false, true} {
			for _, json := range []bool{false, true} {
				ctx := With(context.Background(), "req_x")
				if user {
					SetUser(ctx, "usr_y")
				}
				for i := range n % 7 {
					Annotate(ctx, slog.String("a"+strconv.Itoa(i), "v"), slog.Group("empty"))
				}
				var bo, bn bytes.Buffer
				mk := func(b *bytes.Buffer) slog.Handler {
					if json {
						return slog.NewJSONHandler(b, &slog.HandlerOptions{AddSource: true})
					}
					return slog.NewTextHandler(b, nil)
				}
				lo, ln := slog.New(oldHandler{mk(&bo).WithAttrs([]slog.Attr{slog.Int("w", 1)})}), slog.New(handler{mk(&bn).WithAttrs([]slog.Attr{slog.Int("w", 1)})})
				for _, l := range []*slog.Logger{lo, ln} {
					r := slog.NewRecord(at, slog.LevelInfo, "request", 0)
					for i := range n {
						r.AddAttrs(slog.Int("k"+strconv.Itoa(i), i))
						if i%5 == 0 {
							r.AddAttrs(slog.Group("g", slog.String("x", "y\"z")), slog.Group("e"))
						}
					}
					_ = l.Handler().Handle(ctx, r)
				}
				if bo.String() != bn.String() {
					t.Fatalf("n=%d user=%v json=%v:\n%s\n%s", n, user, json, bo.String(), bn.String())
				}
			}
		}
	}
}
