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
}

// Service places and reads orders.
type Service struct {
	store     *Store
	cache     Cache
	placer    Placer
	validator *Validator
	window    time.Duration
	now       func() time.Time
	newID     func() (uuid.UUID, error)
}

// ServiceConfig tunes a Service.
type ServiceConfig struct {
	// PaymentWindow is how long a new order waits for payment. Required.
	PaymentWindow time.Duration
	// Cache, when set, answers reads and idempotent retries while MySQL
	// is down.
	Cache Cache
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
	return &Service{store: store, cache: cfg.Cache, placer: placer, validator: NewValidator(),
		window: cfg.PaymentWindow, now: cfg.Now, newID: cfg.NewID}, nil
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
// *ValidationError, ErrIdempotencyMismatch, ErrRefused, ErrUnavailable.
func (s *Service) Place(ctx context.Context, req PlaceRequest) (PlaceResult, error) {
	if err := s.validator.Validate(req.Order); err != nil {
		return PlaceResult{}, err
	}
	hash := req.Order.Hash()
	if res, err := s.replay(ctx, req, hash); !errors.Is(err, ErrNotFound) {
		return res, err
	}
	o, err := s.build(req, hash)
	if err != nil {
		return PlaceResult{}, err
	}
	outcome, err := s.placer.Place(ctx, o)
	if errors.Is(err, ErrConflict) {
		// A concurrent request with the same key won the insert.
		return s.replay(ctx, req, hash)
	}
	if err != nil {
		return PlaceResult{}, err
	}
	return PlaceResult{Order: o, Outcome: outcome}, nil
}

// replay looks the idempotency key up; ErrNotFound means it is new.
//
// While MySQL is down the key is looked up in the cache, which remembers
// every recent key (see fallback.OrderCache). A key found there whose order
// is still cached is replayed from the cache; one whose order is in MySQL
// cannot be shown now, so the retry is refused (503) rather than placed a
// second time.
func (s *Service) replay(ctx context.Context, req PlaceRequest, hash string) (PlaceResult, error) {
	rec, err := s.store.LookupIdempotencyKey(ctx, req.ClientID, req.IdempotencyKey)
	outcome := OutcomeStored
	if IsUnavailable(err) && s.cache != nil {
		rec, err = s.cache.LookupKey(ctx, req.ClientID, req.IdempotencyKey)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return PlaceResult{}, fmt.Errorf("%w: mysql down and cache lookup failed: %w", ErrRefused, err)
		}
		outcome = OutcomeCached
	}
	if err != nil {
		if IsUnavailable(err) {
			return PlaceResult{}, fmt.Errorf("%w: %w", ErrRefused, err)
		}
		return PlaceResult{}, err
	}
	if rec.RequestHash != hash {
		return PlaceResult{}, ErrIdempotencyMismatch
	}
	var o *Order
	if outcome == OutcomeCached {
		o, err = s.cache.Get(ctx, rec.OrderID)
		if errors.Is(err, ErrNotFound) {
			return PlaceResult{}, fmt.Errorf("%w: order %s of this key is in MySQL, which is down", ErrRefused, rec.OrderID)
		}
	} else {
		o, err = s.store.Get(ctx, rec.OrderID)
	}
	if err != nil {
		return PlaceResult{}, fmt.Errorf("%w: replay order %s: %w", ErrRefused, rec.OrderID, err)
	}
	return PlaceResult{Order: o, Outcome: outcome, Replayed: true}, nil
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
// MySQL is down, from the cache. Errors: ErrNotFound, ErrUnavailable.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (Located, error) {
	o, err := s.store.Get(ctx, id)
	if err == nil {
		return Located{Order: o, Where: OutcomeStored}, nil
	}
	if s.cache == nil || !(errors.Is(err, ErrNotFound) || IsUnavailable(err)) {
		return Located{}, err
	}
	cached, cerr := s.cache.Get(ctx, id)
	if cerr == nil {
		return Located{Order: cached, Where: OutcomeCached}, nil
	}
	if errors.Is(cerr, ErrNotFound) {
		return Located{}, err // MySQL's answer: not found, or unavailable
	}
	if errors.Is(err, ErrNotFound) {
		// MySQL says absent but the cache cannot be asked: it may be there.
		return Located{}, &UnavailableError{Err: cerr}
	}
	return Located{}, err
}
