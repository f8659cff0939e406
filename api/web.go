package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// routeWeb serves the web client (Options.Web) under /app/, outside /v1:
// its files need no token, and a browser opening the server's root is sent
// there.
func (a *api) routeWeb(r *gin.Engine) {
	if a.opts.Web == nil {
		return
	}
	files := http.StripPrefix("/app", a.opts.Web)
	serve := func(c *gin.Context) { files.ServeHTTP(c.Writer, c.Request) }
	r.GET("/app/*file", serve)
	r.HEAD("/app/*file", serve)
	toApp := func(c *gin.Context) { c.Redirect(http.StatusFound, "/app/") }
	r.GET("/", toApp)
}
