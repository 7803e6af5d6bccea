package halfmsg

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// RecorderConfig tunes a Recorder.
type RecorderConfig struct {
	// ProducerGroup is the transactional producer's group. Required.
	ProducerGroup string
	// Queue bounds the coordinates waiting to be written (default 4096);
	// beyond it they are dropped, and those orders' events wait for their
	// check-back.
	Queue int
	// Batch bounds the coordinates written in one pipelined round trip
	// (default 256).
	Batch int
	// Writers is the number of round trips in flight (default 2).
	Writers int
}

// Recorder writes placements' coordinates to the Store off the placement's
// path, and moves them to the copy each check-back names: Record and
// Moved only queue, and Run writes whatever is queued in one pipelined
// round trip, then the next batch. Neither a placement nor a check-back
// ever waits on Redis for it; what cannot be written is counted and left
// to the check-back.
type Recorder struct {
	store  *Store
	cfg    RecorderConfig
	ch     chan Record
	logger *slog.Logger

	recorded *prometheus.CounterVec
	downLog  atomic.Bool // a failure was logged, the next success is too
}

// NewRecorder returns a Recorder; reg may be nil.
func NewRecorder(store *Store, reg prometheus.Registerer, logger *slog.Logger, cfg RecorderConfig) (*Recorder, error) {
	if store == nil || logger == nil || cfg.ProducerGroup == "" {
		return nil, errors.New("halfmsg: recorder needs a store, a logger and the producer group")
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 4096
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 256
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 2
	}
	r := &Recorder{store: store, cfg: cfg, ch: make(chan Record, cfg.Queue), logger: logger.With("component", "halfmsg_recorder"),
		recorded: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "txorder", Subsystem: "fastcommit",
			Name: "coordinates_total",
			Help: "Half-message coordinates by outcome: written (a placement's), moved (to the copy a check-back named), dropped (queue full), failed (Redis error), invalid (unusable send result)."},
			[]string{"outcome"}),
	}
	if reg != nil {
		if err := reg.Register(r.recorded); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Record queues the coordinates of the half message res describes, for
// order id. It never blocks.
func (r *Recorder) Record(id uuid.UUID, res *primitive.SendResult) {
	c, err := FromSendResult(r.cfg.ProducerGroup, res)
	if err != nil {
		r.recorded.WithLabelValues("invalid").Inc()
		r.logger.Warn("half message coordinates not recorded", "order_id", id.String(), "error", err)
		return
	}
	select {
	case r.ch <- Record{OrderID: id, Coordinates: c}:
	default:
		r.recorded.WithLabelValues("dropped").Inc()
	}
}

// Moved queues a move of the order's coordinates to the copy of its half
// message that the check-back msg names: each check re-puts the half
// message and only the copy it names can end the transaction. Call it for
// a check answered UNKNOWN (a COMMIT or ROLLBACK ends the transaction
// anyway). It never blocks.
func (r *Recorder) Moved(id uuid.UUID, msg *primitive.MessageExt) {
	rec := Record{OrderID: id, Moved: true, Coordinates: Coordinates{QueueOffset: msg.QueueOffset, CommitLogOffset: msg.CommitLogOffset}}
	select {
	case r.ch <- rec:
	default:
		r.recorded.WithLabelValues("dropped").Inc()
	}
}

// Run writes queued coordinates with Writers round trips in flight until
// ctx is done, then writes what is still queued (a batch per writer,
// bounded by the store's timeout) and returns nil.
func (r *Recorder) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range r.cfg.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := make([]Record, 0, r.cfg.Batch)
			for {
				select {
				case <-ctx.Done():
					r.write(r.fill(batch[:0]))
					return
				case rec := <-r.ch:
					r.write(r.fill(append(batch[:0], rec)))
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// fill adds what is queued to batch, up to the batch size, without waiting.
func (r *Recorder) fill(batch []Record) []Record {
	for len(batch) < r.cfg.Batch {
		select {
		case rec := <-r.ch:
			batch = append(batch, rec)
		default:
			return batch
		}
	}
	return batch
}

func (r *Recorder) write(batch []Record) {
	if len(batch) == 0 {
		return
	}
	// Not Run's context: a batch already taken is written even while
	// orderd shuts down, within the store's timeout.
	if err := r.store.Put(context.Background(), batch); err != nil {
		r.recorded.WithLabelValues("failed").Add(float64(len(batch)))
		if r.downLog.CompareAndSwap(false, true) {
			r.logger.Warn("half message coordinates not written; those orders are released by their check-back",
				"count", len(batch), "error", err)
		}
		return
	}
	if r.downLog.CompareAndSwap(true, false) {
		r.logger.Info("half message coordinates written again")
	}
	moved := 0
	for _, rec := range batch {
		if rec.Moved {
			moved++
		}
	}
	r.recorded.WithLabelValues("written").Add(float64(len(batch) - moved))
	r.recorded.WithLabelValues("moved").Add(float64(moved))
}
