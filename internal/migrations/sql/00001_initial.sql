-- +goose Up
-- Orders as the order service records them. Ids are UUIDv7 strings, so the
-- primary key grows in time order. Times are UTC, microsecond precision.
CREATE TABLE orders (
    id                 CHAR(36) CHARACTER SET ascii NOT NULL,
    customer_id        VARCHAR(64) NOT NULL,
    currency           CHAR(3) CHARACTER SET ascii NOT NULL,
    total_amount       BIGINT NOT NULL,
    status             VARCHAR(16) CHARACTER SET ascii NOT NULL,
    payment_deadline   DATETIME(6) NOT NULL,
    created_at         DATETIME(6) NOT NULL,
    updated_at         DATETIME(6) NOT NULL,
    paid_at            DATETIME(6) NULL,
    closed_at          DATETIME(6) NULL,
    -- last time a check-back answered COMMIT for this order
    commit_answered_at DATETIME(6) NULL,
    -- set by the publish tracker when ORDER_PAID reached the topic
    published_at       DATETIME(6) NULL,
    PRIMARY KEY (id),
    KEY idx_orders_status_deadline (status, payment_deadline),
    KEY idx_orders_status_published (status, published_at, paid_at),
    CONSTRAINT chk_orders_status CHECK (status IN ('PENDING_PAYMENT', 'PAID', 'CLOSED')),
    CONSTRAINT chk_orders_total CHECK (total_amount > 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE order_items (
    order_id   CHAR(36) CHARACTER SET ascii NOT NULL,
    line_no    SMALLINT NOT NULL,
    sku        VARCHAR(64) NOT NULL,
    name       VARCHAR(200) NOT NULL,
    quantity   INT NOT NULL,
    unit_price BIGINT NOT NULL,
    PRIMARY KEY (order_id, line_no),
    CONSTRAINT fk_order_items_order FOREIGN KEY (order_id) REFERENCES orders (id),
    CONSTRAINT chk_order_items_quantity CHECK (quantity BETWEEN 1 AND 1000),
    CONSTRAINT chk_order_items_price CHECK (unit_price > 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Idempotency keys are scoped by API client, so two clients may use the
-- same key. request_hash tells a replay from a conflicting reuse.
CREATE TABLE idempotency_keys (
    client_id    VARCHAR(64) CHARACTER SET ascii NOT NULL,
    idem_key     VARCHAR(255) CHARACTER SET ascii NOT NULL,
    request_hash CHAR(64) CHARACTER SET ascii NOT NULL,
    order_id     CHAR(36) CHARACTER SET ascii NOT NULL,
    created_at   DATETIME(6) NOT NULL,
    PRIMARY KEY (client_id, idem_key),
    UNIQUE KEY uq_idempotency_keys_order (order_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Payment notifications. provider_txn_id is unique, so a replayed webhook
-- is a no-op. No foreign key on order_id: a notification for an unknown
-- order is still evidence worth keeping.
CREATE TABLE payments (
    id              BIGINT NOT NULL AUTO_INCREMENT,
    provider_txn_id VARCHAR(128) CHARACTER SET ascii NOT NULL,
    order_id        CHAR(36) CHARACTER SET ascii NOT NULL,
    amount          BIGINT NOT NULL,
    currency        CHAR(3) CHARACTER SET ascii NOT NULL,
    -- APPLIED, AMOUNT_MISMATCH, REFUND_REQUIRED
    status          VARCHAR(24) CHARACTER SET ascii NOT NULL,
    received_at     DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_payments_provider_txn (provider_txn_id),
    KEY idx_payments_order (order_id),
    KEY idx_payments_status (status)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Downstream (fulfillment) side. Each consumer group applies an order once:
-- the unique key on (consumer_group, order_id) is the idempotency guard.
CREATE TABLE consumed_messages (
    consumer_group VARCHAR(128) CHARACTER SET ascii NOT NULL,
    order_id       CHAR(36) CHARACTER SET ascii NOT NULL,
    msg_id         VARCHAR(64) CHARACTER SET ascii NOT NULL,
    consumed_at    DATETIME(6) NOT NULL,
    PRIMARY KEY (consumer_group, order_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Deliberately no unique key on order_id: consumed_messages is the guard,
-- and the auditor must be able to see a duplicate if that guard ever fails.
CREATE TABLE shipments (
    id         BIGINT NOT NULL AUTO_INCREMENT,
    order_id   CHAR(36) CHARACTER SET ascii NOT NULL,
    msg_id     VARCHAR(64) CHARACTER SET ascii NOT NULL,
    status     VARCHAR(16) CHARACTER SET ascii NOT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    KEY idx_shipments_order (order_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE dead_letters (
    id              BIGINT NOT NULL AUTO_INCREMENT,
    consumer_group  VARCHAR(128) CHARACTER SET ascii NOT NULL,
    original_msg_id VARCHAR(64) CHARACTER SET ascii NOT NULL,
    msg_key         VARCHAR(128) NOT NULL,
    body            MEDIUMBLOB NOT NULL,
    reconsume_times INT NOT NULL,
    reason          TEXT NOT NULL,
    first_seen_at   DATETIME(6) NOT NULL,
    last_seen_at    DATETIME(6) NOT NULL,
    replayed_at     DATETIME(6) NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_dead_letters_msg (consumer_group, original_msg_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- +goose Down
DROP TABLE dead_letters;
DROP TABLE shipments;
DROP TABLE consumed_messages;
DROP TABLE payments;
DROP TABLE idempotency_keys;
DROP TABLE order_items;
DROP TABLE orders;
