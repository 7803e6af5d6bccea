-- +goose Up
-- 00001 declared identifiers CHARACTER SET ascii without a collation, so
-- they took ascii_general_ci: 'X-Txn-Ab' and 'x-txn-ab' were one provider
-- transaction, one idempotency key, one client (issue 12, findings 1–2).
-- Identifiers are opaque bytes: every one becomes ascii_bin. The free-text
-- columns (customer_id, sku, name, dead_letters.msg_key) were utf8mb4_bin
-- already.
--
-- Cost on a live database (MariaDB 10.11, measured with ALGORITHM=INPLACE,
-- LOCK=NONE): the new columns, the index and the collation of secondary
-- and unique index columns (payments.provider_txn_id, orders.status,
-- shipments, dead_letters) are changed in place with writes going on;
-- primary key columns (orders, order_items, idempotency_keys,
-- consumed_messages) and re-adding the foreign key need ALGORITHM=COPY,
-- which blocks writes to that table until its copy is done. orderd takes
-- MySQL that does not answer within mysql.timeout as down: placements are
-- cached in Redis (202), payments answered 503 and retried by the
-- provider; fulfillmentd's deliveries fail and are redelivered. On large
-- tables run `ordertool migrate` in a quiet hour, or with an online schema
-- change tool.
--
-- Identifier columns made binary here:
--   orders.id, currency, status
--   order_items.order_id
--   idempotency_keys.client_id, idem_key, request_hash, order_id
--   payments.provider_txn_id, order_id, currency, status
--   consumed_messages.consumer_group, order_id, msg_id
--   shipments.order_id, msg_id, status
--   dead_letters.consumer_group, original_msg_id
-- and the new orders.client_id, payments.outcome and payment_conflicts.*.
--
-- Down fails if case variants were stored meanwhile (they would collide
-- again under the case-insensitive collation): that is the point of Up.

-- The foreign key pins the collation of both of its columns: drop it,
-- change both, add it back.
ALTER TABLE order_items DROP FOREIGN KEY fk_order_items_order;

ALTER TABLE orders
    MODIFY id       CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    MODIFY currency CHAR(3) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    MODIFY status   VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- The API client that placed the order (the name in auth.api_keys):
    -- only it, and admin keys, may read it. NULL only for rows placed
    -- before this migration whose idempotency key was not recorded.
    ADD COLUMN client_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER id;

ALTER TABLE order_items
    MODIFY order_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    ADD CONSTRAINT fk_order_items_order FOREIGN KEY (order_id) REFERENCES orders (id);

ALTER TABLE idempotency_keys
    MODIFY client_id    VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    MODIFY idem_key     VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    MODIFY request_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    MODIFY order_id     CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- The expiry sweeper deletes keys older than redis.idempotency_ttl,
    -- oldest first, in small batches.
    ADD KEY idx_idempotency_keys_created (created_at);

-- Every order placed so far recorded its owner with its idempotency key.
UPDATE orders o JOIN idempotency_keys k ON k.order_id = o.id SET o.client_id = k.client_id;

ALTER TABLE payments
    MODIFY provider_txn_id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    MODIFY order_id        CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    MODIFY currency        CHAR(3) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    MODIFY status          VARCHAR(24) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- What the provider was answered the first time, so that a replay of
    -- the notification gets the same answer: APPLIED (200),
    -- AMOUNT_MISMATCH (422), ORDER_CLOSED or ALREADY_PAID (409; both are
    -- status REFUND_REQUIRED).
    ADD COLUMN outcome VARCHAR(24) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '' AFTER status;

-- A REFUND_REQUIRED payment was answered order_closed when its order is
-- CLOSED, order_already_paid when it is PAID (both statuses are final).
UPDATE payments p LEFT JOIN orders o ON o.id = p.order_id
SET p.outcome = CASE
    WHEN p.status = 'APPLIED' THEN 'APPLIED'
    WHEN p.status = 'AMOUNT_MISMATCH' THEN 'AMOUNT_MISMATCH'
    WHEN o.status = 'CLOSED' THEN 'ORDER_CLOSED'
    ELSE 'ALREADY_PAID'
END;

ALTER TABLE payments
    ALTER COLUMN outcome DROP DEFAULT,
    ADD CONSTRAINT chk_payments_outcome CHECK (outcome IN ('APPLIED', 'AMOUNT_MISMATCH', 'ORDER_CLOSED', 'ALREADY_PAID'));

-- Notifications that reused a recorded provider transaction id for another
-- order, amount or currency: answered 409 provider_txn_reused, nothing
-- applied. One row per distinct variant, counted, so a provider bug that
-- repeats cannot grow the table without bound.
CREATE TABLE payment_conflicts (
    id              BIGINT NOT NULL AUTO_INCREMENT,
    provider_txn_id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- the payment recorded under that id
    payment_id      BIGINT NOT NULL,
    order_id        CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    amount          BIGINT NOT NULL,
    currency        CHAR(3) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    times_seen      INT NOT NULL,
    first_seen_at   DATETIME(6) NOT NULL,
    last_seen_at    DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_payment_conflicts_variant (provider_txn_id, order_id, amount, currency),
    KEY idx_payment_conflicts_payment (payment_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

ALTER TABLE consumed_messages
    MODIFY consumer_group VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    MODIFY order_id       CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    MODIFY msg_id         VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL;

ALTER TABLE shipments
    MODIFY order_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    MODIFY msg_id   VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    MODIFY status   VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL;

ALTER TABLE dead_letters
    MODIFY consumer_group  VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    MODIFY original_msg_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL;

-- +goose Down
ALTER TABLE dead_letters
    MODIFY consumer_group  VARCHAR(128) CHARACTER SET ascii NOT NULL,
    MODIFY original_msg_id VARCHAR(64) CHARACTER SET ascii NOT NULL;

ALTER TABLE shipments
    MODIFY order_id CHAR(36) CHARACTER SET ascii NOT NULL,
    MODIFY msg_id   VARCHAR(64) CHARACTER SET ascii NOT NULL,
    MODIFY status   VARCHAR(16) CHARACTER SET ascii NOT NULL;

ALTER TABLE consumed_messages
    MODIFY consumer_group VARCHAR(128) CHARACTER SET ascii NOT NULL,
    MODIFY order_id       CHAR(36) CHARACTER SET ascii NOT NULL,
    MODIFY msg_id         VARCHAR(64) CHARACTER SET ascii NOT NULL;

DROP TABLE payment_conflicts;

ALTER TABLE payments
    DROP CONSTRAINT chk_payments_outcome,
    DROP COLUMN outcome,
    MODIFY provider_txn_id VARCHAR(128) CHARACTER SET ascii NOT NULL,
    MODIFY order_id        CHAR(36) CHARACTER SET ascii NOT NULL,
    MODIFY currency        CHAR(3) CHARACTER SET ascii NOT NULL,
    MODIFY status          VARCHAR(24) CHARACTER SET ascii NOT NULL;

ALTER TABLE idempotency_keys
    DROP KEY idx_idempotency_keys_created,
    MODIFY client_id    VARCHAR(64) CHARACTER SET ascii NOT NULL,
    MODIFY idem_key     VARCHAR(255) CHARACTER SET ascii NOT NULL,
    MODIFY request_hash CHAR(64) CHARACTER SET ascii NOT NULL,
    MODIFY order_id     CHAR(36) CHARACTER SET ascii NOT NULL;

ALTER TABLE order_items DROP FOREIGN KEY fk_order_items_order;

ALTER TABLE orders
    DROP COLUMN client_id,
    MODIFY id       CHAR(36) CHARACTER SET ascii NOT NULL,
    MODIFY currency CHAR(3) CHARACTER SET ascii NOT NULL,
    MODIFY status   VARCHAR(16) CHARACTER SET ascii NOT NULL;

ALTER TABLE order_items
    MODIFY order_id CHAR(36) CHARACTER SET ascii NOT NULL,
    ADD CONSTRAINT fk_order_items_order FOREIGN KEY (order_id) REFERENCES orders (id);
