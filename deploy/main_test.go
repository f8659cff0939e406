// Package deploy_test checks the deployment files in deploy/ against chatd
// itself: the Kubernetes manifests against its configuration and HTTP
// endpoints, the Grafana dashboard against the metrics a running node exports.
package deploy_test

import (
	"os"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/internal/pgtest"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	os.Exit(pgtest.Main(m))
}
