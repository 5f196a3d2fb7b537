package rest

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/wire"
)

type userResponse struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	IsAdmin   bool   `json:"isAdmin"`
	CreatedAt string `json:"createdAt" jsonschema:"format=date-time"`
}

func toUserResponse(u *domain.User) userResponse {
	return userResponse{ID: u.ID, Name: u.Name, IsAdmin: u.IsAdmin, CreatedAt: timestamp(u.CreatedAt)}
}

type apiKeyResponse struct {
	ID        string  `json:"id"`
	UserID    string  `json:"userId"`
	Name      string  `json:"name"`
	Hint      string  `json:"hint"`
	CreatedAt string  `json:"createdAt" jsonschema:"format=date-time"`
	RevokedAt *string `json:"revokedAt" jsonschema:"nullable,format=date-time"`
	ExpiresAt *string `json:"expiresAt" jsonschema:"nullable,format=date-time" desc:"When the key stops working (ISO 8601 UTC); null: it does not expire."`
}

// createdAPIKeyResponse is the one answer that carries the secret: the
// response to the request that created the key.
type createdAPIKeyResponse struct {
	apiKeyResponse
	Key string `json:"key" desc:"The secret, to send as a bearer token; shown only here, never again."`
}

func toAPIKeyResponse(k *domain.APIKey) apiKeyResponse {
	r := apiKeyResponse{ID: k.ID, UserID: k.UserID, Name: k.Name, Hint: k.Hint + "…", CreatedAt: timestamp(k.CreatedAt)}
	r.RevokedAt = timestampOrNil(k.RevokedAt)
	r.ExpiresAt = timestampOrNil(k.ExpiresAt)
	return r
}

func timestampOrNil(t *time.Time) *string {
	if t == nil {
		return nil
	}
	return wire.OptionalTimestamp(*t)
}

func (s *Server) handleMe(c *echo.Context) error {
	u, err := s.svcs.Users.Me(ctx(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toUserResponse(u))
}

func (s *Server) handleUserList(c *echo.Context) error {
	p, err := page(c)
	if err != nil {
		return err
	}
	l, err := s.svcs.Users.List(ctx(c), p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toList(l, toUserResponse))
}

type userCreateRequest struct {
	Name    string `json:"name" jsonschema:"required" min:"1" max:"200"`
	IsAdmin bool   `json:"isAdmin"`
}

func (s *Server) handleUserCreate(c *echo.Context) error {
	var req userCreateRequest
	if err := s.bind(c, &req); err != nil {
		return err
	}
	u, err := s.svcs.Users.Create(ctx(c), domain.UserCreate{Name: req.Name, IsAdmin: req.IsAdmin})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, toUserResponse(u))
}

type apiKeyCreateRequest struct {
	Name      string  `json:"name" jsonschema:"required" min:"1" max:"200"`
	ExpiresAt *string `json:"expiresAt" jsonschema:"nullable,format=date-time" desc:"When the key stops working: an RFC 3339 time, in the future and at most 10 years ahead, and no later than the expiry of the key making the request if that expires. Left out or null: it does not expire (refused when the key making the request expires)."`
}

func (r apiKeyCreateRequest) toDomain() (domain.APIKeyCreate, error) {
	in := domain.APIKeyCreate{Name: r.Name}
	if r.ExpiresAt != nil {
		t, err := wire.ParseDateTime("expiresAt", *r.ExpiresAt)
		if err != nil {
			return in, err
		}
		in.ExpiresAt = &t
	}
	return in, nil
}

func (s *Server) handleAPIKeyCreate(c *echo.Context) error {
	var req apiKeyCreateRequest
	if err := s.bind(c, &req); err != nil {
		return err
	}
	in, err := req.toDomain()
	if err != nil {
		return err
	}
	k, err := s.svcs.Users.CreateAPIKey(ctx(c), c.Param("userId"), in)
	if err != nil {
		return err
	}
	r := createdAPIKeyResponse{apiKeyResponse: toAPIKeyResponse(&k.APIKey), Key: k.Secret}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, r)
}

func (s *Server) handleAPIKeyList(c *echo.Context) error {
	p, err := page(c)
	if err != nil {
		return err
	}
	l, err := s.svcs.Users.ListAPIKeys(ctx(c), c.Param("userId"), p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toList(l, toAPIKeyResponse))
}

// handleAPIKeyRevoke answers the revoked key as it stays listed, rather
// than {id, deleted: true}: a revoked key is not deleted.
func (s *Server) handleAPIKeyRevoke(c *echo.Context) error {
	k, err := s.svcs.Users.RevokeAPIKey(ctx(c), c.Param("userId"), c.Param("keyId"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toAPIKeyResponse(k))
}
