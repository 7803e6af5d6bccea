package api

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/txorder/txorder/fallback"
)

// Spill is what the admin endpoints read of the spill queue
// (fallback.SpillQueue).
type Spill interface {
	Dead(ctx context.Context) ([]fallback.DeadEntry, error)
	Pending(ctx context.Context, limit int64) ([]uuid.UUID, error)
}

// maxPendingListed bounds GET /v1/admin/spill?state=pending.
const maxPendingListed = 1000

// registerAdmin serves /v1/admin/* to holders of an admin key. Without admin
// keys or a spill queue the routes do not exist.
func registerAdmin(r *gin.Engine, cfg Config, limits *limiter) {
	if len(cfg.Admins) == 0 || cfg.Spill == nil {
		return
	}
	admin := r.Group("/v1/admin", newAuthenticator(nil, cfg.Admins).middleware(), limits.middleware())
	admin.GET("/spill", func(c *gin.Context) {
		switch state := c.DefaultQuery("state", "dead"); state {
		case "dead":
			dead, err := cfg.Spill.Dead(c.Request.Context())
			if err != nil {
				abortRedisDown(c)
				return
			}
			c.JSON(http.StatusOK, gin.H{"state": state, "entries": dead})
		case "pending":
			ids, err := cfg.Spill.Pending(c.Request.Context(), maxPendingListed)
			if err != nil {
				abortRedisDown(c)
				return
			}
			c.JSON(http.StatusOK, gin.H{"state": state, "order_ids": ids, "limit": maxPendingListed})
		default:
			abort(c, http.StatusBadRequest, CodeInvalidQuery, "Invalid query", "state is dead or pending")
		}
	})
}

func abortRedisDown(c *gin.Context) {
	abort(c, http.StatusServiceUnavailable, CodeUnavailable, "Service unavailable", "the spill queue (Redis) cannot be read")
}
