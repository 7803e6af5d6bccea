package main

import (
	"context"
	"log/slog"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/txorder/txorder/api"
	"github.com/txorder/txorder/configs"
	"github.com/txorder/txorder/halfmsg"
	"github.com/txorder/txorder/listener"
)

// fastCommit is the fast-commit wiring: the recorder of half-message
// coordinates and the committer. Its zero value is "disabled": every
// accessor then returns a nil interface (never a typed nil).
type fastCommit struct {
	recorder  *halfmsg.Recorder
	committer *halfmsg.Committer
}

// newFastCommit builds the recorder and the committer; nameServers is the
// resolver every RocketMQ client of orderd uses (host names allowed).
func newFastCommit(cfg configs.Orderd, rdb *redis.Client, nameServers func() []string, reg prometheus.Registerer,
	logger *slog.Logger) (*fastCommit, error) {
	fc := &fastCommit{}
	f := cfg.FastCommit
	if !f.Enabled {
		logger.Info("fast commit disabled: paid orders wait for their check-back")
		return fc, nil
	}
	store, err := halfmsg.NewStore(rdb, halfmsg.StoreConfig{Prefix: cfg.Redis.KeyPrefix, Timeout: cfg.Redis.Timeout,
		TTL: f.CoordinatesTTLOr(cfg)})
	if err != nil {
		return nil, err
	}
	if fc.recorder, err = halfmsg.NewRecorder(store, reg, logger, halfmsg.RecorderConfig{
		ProducerGroup: cfg.RocketMQ.ProducerGroup, Queue: f.RecordQueue}); err != nil {
		return nil, err
	}
	fc.committer, err = halfmsg.NewCommitter(store, reg, logger, halfmsg.CommitterConfig{
		NameServers: nameServers, Topic: cfg.RocketMQ.Topic, Workers: f.Workers, Queue: f.Queue,
		Timeout: f.Timeout, RouteTTL: f.RouteTTL, ConnsPerAddr: f.ConnsPerBroker, DialTimeout: f.DialTimeout})
	return fc, err
}

func (fc *fastCommit) halves() listener.HalfMessages {
	if fc.recorder == nil {
		return nil
	}
	return fc.recorder
}

func (fc *fastCommit) moves() interface {
	Moved(id uuid.UUID, msg *primitive.MessageExt)
} {
	if fc.recorder == nil {
		return nil
	}
	return fc.recorder
}

func (fc *fastCommit) commits() interface {
	Committed(ctx context.Context, id uuid.UUID) (bool, error)
} {
	if fc.committer == nil {
		return nil
	}
	return fc.committer
}

func (fc *fastCommit) rollbacks() interface{ Rollback(id uuid.UUID) } {
	if fc.committer == nil {
		return nil
	}
	return fc.committer
}

// payments wraps the payment service so that a payment that moved its
// order to PAID queues the fast commit.
func (fc *fastCommit) payments(svc api.Payments) api.Payments {
	if fc.committer == nil {
		return svc
	}
	return halfmsg.NewPayments(svc, fc.committer)
}

// run starts the recorder and the committer with run.
func (fc *fastCommit) run(ctx context.Context, run func(func())) {
	if fc.committer == nil {
		return
	}
	run(func() { _ = fc.recorder.Run(ctx) })
	run(func() { _ = fc.committer.Run(ctx) })
}

// close closes the committer's connections; call it after run's
// goroutines returned.
func (fc *fastCommit) close() {
	if fc.committer != nil {
		fc.committer.Close()
	}
}
