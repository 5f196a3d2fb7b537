package rest

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v5"
	"github.com/labstack/echo/v5/middleware"

	"github.com/parleyhq/parley/internal/wire"
)

// cors lets pages at origins, and at loopback ones (a developer's dev
// server), call the API from a browser: their preflights, which carry no
// key, are answered before authentication, and every answer names the
// origin and lets the page read the headers a client acts on (a 429's
// wait and the rate limits, the request id, X-Should-Retry, an
// authentication challenge). Without it the TypeScript client failed from
// any page but Parley's own origin, as if Parley were down. Only the API
// takes part: /healthz, /readyz and /metrics answer no page, and MCP's
// endpoints answer their own (mcp.Limits). The key is a header, never a
// cookie, so no credentials are allowed.
func cors(origins []string) echo.MiddlewareFunc {
	allowed := func(_ *echo.Context, origin string) (string, bool, error) {
		return origin, wire.OriginAllowed(origins, origin), nil
	}
	mw := middleware.CORSWithConfig(middleware.CORSConfig{
		Skipper:               func(c *echo.Context) bool { return !strings.HasPrefix(c.Request().URL.Path, apiPrefix+"/") },
		UnsafeAllowOriginFunc: allowed,
		AllowHeaders:          []string{"Authorization", "Content-Type", "Accept", "Idempotency-Key", headerRequestID},
		ExposeHeaders: []string{"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy",
			headerRequestID, "X-Should-Retry", "WWW-Authenticate", replayedHeader},
		MaxAge: 3600,
	})
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		h := mw(next)
		return func(c *echo.Context) error {
			// A public page calling a Parley on a private address (a local
			// one) is asked about by Chromium too (Private Network Access).
			r := c.Request()
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Private-Network") == "true" &&
				strings.HasPrefix(r.URL.Path, apiPrefix+"/") && wire.OriginAllowed(origins, r.Header.Get("Origin")) {
				c.Response().Header().Set("Access-Control-Allow-Private-Network", "true")
			}
			return h(c)
		}
	}
}
