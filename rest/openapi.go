package rest

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v5"
)

// openAPI describes the REST API; a test checks that it lists every route.
//
//go:embed openapi.json
var openAPI []byte

func handleOpenAPI(c *echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openAPI)
}
