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
	proxies, err := console.ParseProxies(cfg.Console.Logins.TrustedProxies)
	if err != nil {
		return nil, err
	}
	ccfg := console.Config{
		Orders: svc, OrderRows: store, Spill: spill, Cache: cache, Payments: payments, Checks: checks,
		Breakers: []console.Breaker{
			{Name: "mysql (check-backs, placements)", State: txl.BreakerState},
			{Name: "rocketmq (spill)", State: spilling.BreakerState},
			{Name: "redis (every call)", State: m.redisBreaker.State},
		},
		Rates:    m.consoleRates(),
		Gatherer: m.registry,
		Admins:   admins, SessionSecret: secret, SessionTTL: cfg.Console.SessionTTL,
		SecureCookies: cfg.Console.SecureCookies, Revocations: revocations,
		Logins:     console.LoginLimit{Burst: cfg.Console.Logins.Burst, Every: cfg.Console.Logins.Every, TrustedProxies: proxies},
		Registerer: m.registry,
		Logger:     m.Logger,
	}
	if fc := m.fast.commits(); fc != nil {
		ccfg.FastCommits = fc
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

// consoleRates are the overview's per-minute rates: the check-backs
// answered, and the paid orders' events the fast commit released at once
// (the broker accepted the COMMIT) or left to the check-back (refused,
// failed or not sent). Rollbacks (the closer's) are not counted.
func (m *Main) consoleRates() []console.Rate {
	rates := []console.Rate{
		{Name: "check-back answers", Counters: []console.Counter{{Metric: "txorder_tx_check_total"}}},
	}
	if !m.Config.FastCommit.Enabled {
		note := "fast_commit.enabled is false: paid orders wait for their check-back"
		return append(rates, console.Rate{Name: "fast commits", Note: note},
			console.Rate{Name: "fast commits left to the check-back", Note: note})
	}
	commit := map[string]string{"action": "commit"}
	return append(rates,
		console.Rate{Name: "fast commits", Counters: []console.Counter{
			{Metric: "txorder_fastcommit_accepted_total", Labels: commit}}},
		console.Rate{Name: "fast commits left to the check-back", Counters: []console.Counter{
			{Metric: "txorder_fastcommit_refused_total", Labels: commit},
			{Metric: "txorder_fastcommit_failed_total", Labels: commit},
			{Metric: "txorder_fastcommit_skipped_total", Labels: commit}}},
	)
}
