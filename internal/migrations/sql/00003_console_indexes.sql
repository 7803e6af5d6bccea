-- +goose Up
-- The operator console lists a consumer group's pending dead letters,
-- oldest first, by keyset (listener.DeadLetters.Page): without this index
-- that listing walks every replayed row before the pending ones.
CREATE INDEX idx_dead_letters_pending ON dead_letters (consumer_group, replayed_at, id);

-- +goose Down
DROP INDEX idx_dead_letters_pending ON dead_letters;
