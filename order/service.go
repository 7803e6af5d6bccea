package order

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Outcome says where a placement recorded the order.
type Outcome string

// The outcomes of Place. The API maps them to 201 (stored), 202 (cached,
// queued) and 503 (refused).
const (
	// OutcomeStored: the order is a row in MySQL.
	OutcomeStored Outcome = "STORED"
	// OutcomeCached: MySQL was down; the order is in the Redis order cache
	// and a check-back will write it to MySQL.
	OutcomeCached Outcome = "CACHED"
	// OutcomeQueued: RocketMQ was unreachable; the order is in the Redis
	// spill queue and the drainer will place it.
	OutcomeQueued Outcome = "QUEUED"
)

// ErrRefused means the order could not be recorded durably anywhere. The
// client may retry with the same idempotency key.
var ErrRefused = errors.New("order refused: no durable store available")

// ErrNotSent means the placement's half message did not reach the broker
// (no route, NameServer or broker unreachable, send timeout, or a send
// status other than SEND_OK): no local transaction ran, nothing was
// written. A placer returns it wrapped in ErrRefused, so that without a
// spill queue in front the client gets a 503; the spill queue takes these.
var ErrNotSent = errors.New("half message not sent")

// Placer records a new, valid order durably and says where. It returns
// ErrRefused (wrapped) when nothing could record it, ErrConflict when the
// order or its idempotency key already exists.
type Placer interface {
	Place(ctx context.Context, o *Order) (Outcome, error)
}

// DirectPlacer writes orders straight to MySQL, without any message. It is
// the placement used before the transactional flow is wired, and by tests
// of the store.
type DirectPlacer struct{ Store *Store }

// Place implements Placer.
func (p DirectPlacer) Place(ctx context.Context, o *Order) (Outcome, error) {
	if err := p.Store.Create(ctx, o); err != nil {
		if IsUnavailable(err) {
			return "", fmt.Errorf("%w: %w", ErrRefused, err)
		}
		return "", err
	}
	return OutcomeStored, nil
}

// Cache is where orders wait while MySQL is down (fallback.OrderCache). The
// service reads it to answer GET and idempotent retries during an outage.
type Cache interface {
	// Get returns a cached order or ErrNotFound.
	Get(ctx context.Context, id uuid.UUID) (*Order, error)
	// LookupKey returns what an idempotency key points at, or ErrNotFound.
	LookupKey(ctx context.Context, clientID, key string) (IdempotencyRecord, error)
	// ClaimKey records rec under the key unless a record exists; then it
	// returns that record and false.
	ClaimKey(ctx context.Context, clientID, key string, rec IdempotencyRecord) (IdempotencyRecord, bool, error)
	// ReplaceKey gives the key to rec's order if it still names old's.
	ReplaceKey(ctx context.Context, clientID, key string, old, rec IdempotencyRecord) (bool, error)
	// ReleaseKey frees the key if it still names orderID.
	ReleaseKey(ctx context.Context, clientID, key string, orderID uuid.UUID) error
}

// ErrInProgress means the idempotency key belongs to a placement that has
// not finished (or whose outcome is not known yet): retry shortly.
var ErrInProgress = errors.New("idempotency key in use by a placement in progress")

// Queue is where orders wait while RocketMQ is unreachable
// (fallback.SpillQueue).
type Queue interface {
	// Get returns a queued order or ErrNotFound.
	Get(ctx context.Context, id uuid.UUID) (*Order, error)
}

// Service places and reads orders.
type Service struct {
	store     *Store
	cache     Cache
	queue     Queue
	placer    Placer
	validator *Validator
	window    time.Duration
	inFlight  time.Duration
	now       func() time.Time
	newID     func() (uuid.UUID, error)
}

// ServiceConfig tunes a Service.
type ServiceConfig struct {
	// PaymentWindow is how long a new order waits for payment. Required.
	PaymentWindow time.Duration
	// Cache, when set, answers reads and idempotent retries while MySQL
	// is down, and holds the index of recent idempotency keys.
	Cache Cache
	// Queue, when set, answers reads and retries of orders waiting for
	// RocketMQ.
	Queue Queue
	// InFlight is how long a claimed key whose order is nowhere yet counts
	// as a placement in progress (ErrInProgress) rather than an abandoned
	// claim a new request may take over. It must exceed the longest
	// placement (send, local transaction, cache write). Default 30s.
	InFlight time.Duration
	// Now and NewID default to time.Now and uuid.NewV7; tests inject them.
	Now   func() time.Time
	NewID func() (uuid.UUID, error)
}

// NewService returns a Service. placer decides how orders are recorded.
func NewService(store *Store, placer Placer, cfg ServiceConfig) (*Service, error) {
	if store == nil || placer == nil {
		return nil, errors.New("order service: nil store or placer")
	}
	if cfg.PaymentWindow <= 0 {
		return nil, errors.New("order service: payment window must be positive")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = uuid.NewV7
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = 30 * time.Second
	}
	return &Service{store: store, cache: cfg.Cache, queue: cfg.Queue, placer: placer, validator: NewValidator(),
		window: cfg.PaymentWindow, inFlight: cfg.InFlight, now: cfg.Now, newID: cfg.NewID}, nil
}

// Validator returns the service's request validator.
func (s *Service) Validator() *Validator { return s.validator }

// PlaceRequest is one placement: who asks, with which idempotency key, for what.
type PlaceRequest struct {
	ClientID       string
	IdempotencyKey string
	Order          NewOrder
}

// PlaceResult is the placed (or replayed) order.
type PlaceResult struct {
	Order   *Order
	Outcome Outcome
	// Replayed is true when the idempotency key was seen before with the
	// same request: Order is the original and nothing new was written.
	Replayed bool
}

// Place validates req and records a new order, or returns the original one
// when the idempotency key was used before with the same request. Errors:
// *ValidationError, ErrIdempotencyMismatch, ErrInProgress, ErrRefused (wrapping
// ErrOutcomeUnknown when the order may exist), ErrUnavailable.
func (s *Service) Place(ctx context.Context, req PlaceRequest) (PlaceResult, error) {
	if err := s.validator.Validate(req.Order); err != nil {
		return PlaceResult{}, err
	}
	hash := req.Order.Hash()
	o, err := s.build(req, hash)
	if err != nil {
		return PlaceResult{}, err
	}
	claimed, res, err := s.claim(ctx, req, o)
	if err != nil || res.Order != nil {
		return res, err
	}
	outcome, err := s.placer.Place(ctx, o)
	if err != nil && claimed && !errors.Is(err, ErrOutcomeUnknown) {
		// Refused or conflicting: nothing of this order was recorded, so
		// the key is free again. (With an unknown outcome the claim stays:
		// a retry finds the order if it was stored, or, once the claim is
		// older than InFlight, takes it over.)
		_ = s.cache.ReleaseKey(context.WithoutCancel(ctx), req.ClientID, req.IdempotencyKey, o.ID)
	}
	if errors.Is(err, ErrConflict) {
		// The key is taken in MySQL: Redis had forgotten it (older than
		// its TTL, or Redis was down when it was claimed).
		res, err := s.replayStored(ctx, req, hash)
		if errors.Is(err, ErrNotFound) {
			return PlaceResult{}, ErrConflict
		}
		return res, err
	}
	if err != nil {
		return PlaceResult{}, err
	}
	return PlaceResult{Order: o, Outcome: outcome}, nil
}

// claim takes the idempotency key for o before anything is sent, so that a
// concurrent or retried request with the same key finds this placement
// instead of starting a second order. A new key (the common case) costs one
// Redis round trip (SET NX). When the key is taken, claim returns the
// original order (Replayed), ErrInProgress while its placement has not
// finished, ErrIdempotencyMismatch for another body, or takes over a claim
// whose order never materialised. Redis remembers every key placed within
// redis.idempotency_ttl, whether its order went to MySQL, the cache or the
// spill queue; MySQL's unique (client, key) backs it up: a key Redis forgot
// makes the insert conflict, and Place then replays from MySQL. Without
// Redis, MySQL decides, and the key is not claimed (nothing can be cached
// or queued then anyway).
func (s *Service) claim(ctx context.Context, req PlaceRequest, o *Order) (bool, PlaceResult, error) {
	if s.cache == nil {
		res, err := s.replayOrNew(ctx, req, o.RequestHash)
		return false, res, err
	}
	rec := IdempotencyRecord{OrderID: o.ID, RequestHash: o.RequestHash, ClaimedAt: o.CreatedAt}
	existing, ok, err := s.cache.ClaimKey(ctx, req.ClientID, req.IdempotencyKey, rec)
	switch {
	case err != nil:
		res, err := s.replayOrNew(ctx, req, o.RequestHash)
		return false, res, err
	case ok:
		return true, PlaceResult{}, nil
	}
	res, err := s.replayRecord(ctx, req, o.RequestHash, existing)
	var stale *staleClaimError
	if !errors.As(err, &stale) {
		return false, res, err
	}
	if ok, err := s.cache.ReplaceKey(ctx, req.ClientID, req.IdempotencyKey, stale.rec, rec); err != nil || !ok {
		return false, PlaceResult{}, ErrInProgress // another request took it over first
	}
	return true, PlaceResult{}, nil
}

// staleClaimError: the key was claimed longer than InFlight ago by a
// placement whose order is nowhere (refused without releasing it, or its
// outcome was unknown and it was not stored). Place may take it over.
type staleClaimError struct{ rec IdempotencyRecord }

func (e *staleClaimError) Error() string {
	return "idempotency key claimed by order " + e.rec.OrderID.String() + ", which is nowhere"
}

// replayRecord finds the order a claimed key names: waiting in Redis, or
// stored in MySQL.
func (s *Service) replayRecord(ctx context.Context, req PlaceRequest, hash string, rec IdempotencyRecord) (PlaceResult, error) {
	if rec.RequestHash != hash {
		return PlaceResult{}, ErrIdempotencyMismatch
	}
	loc, err := s.locateWaiting(ctx, rec.OrderID)
	if err == nil {
		return PlaceResult{Order: loc.Order, Outcome: loc.Where, Replayed: true}, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return PlaceResult{}, fmt.Errorf("%w: order %s of this key cannot be read now: %w", ErrRefused, rec.OrderID, err)
	}
	o, err := s.store.Get(ctx, rec.OrderID)
	switch {
	case err == nil:
		return PlaceResult{Order: o, Outcome: OutcomeStored, Replayed: true}, nil
	case s.now().Sub(rec.ClaimedAt) < s.inFlight:
		// Claimed moments ago: its placement is most likely still running
		// (or MySQL, which may hold it, cannot be asked). Retry shortly.
		return PlaceResult{}, ErrInProgress
	case !errors.Is(err, ErrNotFound):
		// MySQL down: the order may be there; never place it twice.
		return PlaceResult{}, fmt.Errorf("%w: order %s of this key cannot be read now: %w", ErrRefused, rec.OrderID, err)
	}
	return PlaceResult{}, &staleClaimError{rec: rec}
}

// replayOrNew replays from MySQL, with no result and no error when MySQL
// does not know the key (a new one).
func (s *Service) replayOrNew(ctx context.Context, req PlaceRequest, hash string) (PlaceResult, error) {
	res, err := s.replayStored(ctx, req, hash)
	if errors.Is(err, ErrNotFound) {
		return PlaceResult{}, nil
	}
	return res, err
}

// replayStored answers from MySQL's idempotency keys, the authority for
// stored orders; ErrNotFound means MySQL does not know the key.
func (s *Service) replayStored(ctx context.Context, req PlaceRequest, hash string) (PlaceResult, error) {
	rec, err := s.store.LookupIdempotencyKey(ctx, req.ClientID, req.IdempotencyKey)
	if err != nil {
		if IsUnavailable(err) {
			return PlaceResult{}, fmt.Errorf("%w: %w", ErrRefused, err)
		}
		return PlaceResult{}, err
	}
	if rec.RequestHash != hash {
		return PlaceResult{}, ErrIdempotencyMismatch
	}
	o, err := s.store.Get(ctx, rec.OrderID)
	if err != nil {
		return PlaceResult{}, fmt.Errorf("%w: replay order %s: %w", ErrRefused, rec.OrderID, err)
	}
	return PlaceResult{Order: o, Outcome: OutcomeStored, Replayed: true}, nil
}

// locateWaiting finds an order that waits in Redis: the cache, then the
// spill queue.
func (s *Service) locateWaiting(ctx context.Context, id uuid.UUID) (Located, error) {
	var lastErr error = ErrNotFound
	if s.cache != nil {
		o, err := s.cache.Get(ctx, id)
		if err == nil {
			return Located{Order: o, Where: OutcomeCached}, nil
		}
		if !errors.Is(err, ErrNotFound) {
			lastErr = err
		}
	}
	if s.queue != nil {
		o, err := s.queue.Get(ctx, id)
		if err == nil {
			return Located{Order: o, Where: OutcomeQueued}, nil
		}
		if !errors.Is(err, ErrNotFound) {
			lastErr = err
		}
	}
	return Located{}, lastErr
}

func (s *Service) build(req PlaceRequest, hash string) (*Order, error) {
	id, err := s.newID()
	if err != nil {
		return nil, fmt.Errorf("new order id: %w", err)
	}
	now := s.now().UTC().Truncate(time.Microsecond) // MySQL DATETIME(6)
	items := make([]Item, len(req.Order.Items))
	for i, it := range req.Order.Items {
		items[i] = Item(it)
	}
	return &Order{
		ID:              id,
		CustomerID:      req.Order.CustomerID,
		Currency:        req.Order.Currency,
		Items:           items,
		Total:           computeTotal(items),
		Status:          StatusPendingPayment,
		PaymentDeadline: now.Add(s.window),
		CreatedAt:       now,
		UpdatedAt:       now,
		ClientID:        req.ClientID,
		IdempotencyKey:  req.IdempotencyKey,
		RequestHash:     hash,
	}, nil
}

// Located is an order and where it was found: OutcomeStored (MySQL) or
// OutcomeCached (Redis, waiting for MySQL).
type Located struct {
	Order *Order
	Where Outcome
}

// Get returns an order by id, from MySQL or, when it is not there (yet) or
// MySQL is down, from Redis (cache or spill queue). Errors: ErrNotFound,
// ErrUnavailable.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (Located, error) {
	o, err := s.store.Get(ctx, id)
	if err == nil {
		return Located{Order: o, Where: OutcomeStored}, nil
	}
	if !(errors.Is(err, ErrNotFound) || IsUnavailable(err)) {
		return Located{}, err
	}
	loc, werr := s.locateWaiting(ctx, id)
	switch {
	case werr == nil:
		return loc, nil
	case errors.Is(werr, ErrNotFound):
		return Located{}, err // MySQL's answer: not found, or unavailable
	case errors.Is(err, ErrNotFound):
		// MySQL says absent but Redis cannot be asked: it may be there.
		return Located{}, &UnavailableError{Err: werr}
	}
	return Located{}, err
}

// FindByKey returns the order that client's idempotency key made, wherever
// it is: MySQL's key table first, then the Redis claim of a key whose order
// waits in Redis (or whose MySQL is down). Errors: ErrNotFound (no such
// key, or a claim whose order never materialised), ErrUnavailable.
func (s *Service) FindByKey(ctx context.Context, clientID, key string) (Located, error) {
	rec, err := s.store.LookupIdempotencyKey(ctx, clientID, key)
	if err == nil {
		return s.Get(ctx, rec.OrderID)
	}
	if !(errors.Is(err, ErrNotFound) || IsUnavailable(err)) || s.cache == nil {
		return Located{}, err
	}
	claim, cerr := s.cache.LookupKey(ctx, clientID, key)
	switch {
	case cerr == nil:
		return s.Get(ctx, claim.OrderID)
	case errors.Is(cerr, ErrNotFound):
		return Located{}, err // MySQL's answer: not found, or unavailable
	case errors.Is(err, ErrNotFound):
		return Located{}, &UnavailableError{Err: cerr}
	}
	return Located{}, err
}
