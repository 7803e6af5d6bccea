package main

import (
	"context"
	"crypto/rand"

	"github.com/txorder/txorder/console"
	"github.com/txorder/txorder/fallback"
	"github.com/txorder/txorder/listener"
	"github.com/txorder/txorder/order"
	"github.com/txorder/txorder/payment"
)

// newConsole builds the operator console, or returns nil when it is off
// (console.enabled false, or no admin keys to log in with). Its rate
// sampler runs with the background parts and stops with them.
func (m *Main) newConsole(admins map[string]string, svc *order.Service, store *order.Store, cache *fallback.OrderCache,
	spill *fallback.SpillQueue, spilling *fallback.SpillingPlacer, txl *listener.Transaction, checks []console.Check) (*console.Console, error) {
	cfg := m.Config
	if !cfg.Console.Enabled || len(admins) == 0 {
		return nil, nil
	}
	secret := []byte(cfg.Console.SessionSecret)
	if len(secret) == 0 {
		// Development only (configs refuses this in production mode).
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
		m.Logger.Warn("console.session_secret not set: console sessions end when this process does and work on this replica only")
	}
	payments, err := payment.NewReader(m.db, cfg.MySQL.Timeout)
	if err != nil {
		return nil, err
	}
	revocations, err := console.NewRedisRevocations(m.rdb, cfg.Redis.KeyPrefix, cfg.Redis.Timeout)
	if err != nil {
		return nil, err
	}
	ccfg := console.Config{
		Orders: svc, OrderRows: store, Spill: spill, Cache: cache, Payments: payments, Checks: checks,
		Breakers: []console.Breaker{
			{Name: "mysql (check-backs, placements)", State: txl.BreakerState},
			{Name: "rocketmq (spill)", State: spilling.BreakerState},
			// Issue 14 adds the Redis breaker here.
		},
		Rates: []console.Rate{
			{Name: "check-back answers", Metric: "txorder_tx_check_total"},
			// Issue 13 (fast commits) names its counter; put it in Metric.
			{Name: "fast commits", Note: "not measured yet: the fast-commit path (issue 13) adds its counter"},
		},
		Gatherer: m.registry,
		Admins:   admins, SessionSecret: secret, SessionTTL: cfg.Console.SessionTTL,
		SecureCookies: cfg.Console.SecureCookies, Revocations: revocations,
		Logger: m.Logger,
	}
	if cfg.Console.DeadLetters.Enabled {
		dl, err := listener.NewDeadLetters(m.db, cfg.Console.DeadLetters.Group, cfg.MySQL.Timeout, m.Logger)
		if err != nil {
			return nil, err
		}
		ccfg.DeadLetters = dl
	}
	c, err := console.New(ccfg)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	prev := m.stopBackground
	m.stopBackground = func() {
		stop()
		if prev != nil {
			prev()
		}
	}
	m.background.Add(1)
	go func() { defer m.background.Done(); c.Run(ctx) }()
	return c, nil
}
