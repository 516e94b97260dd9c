-- The transactional outbox (drained by the relay) and the consumers' inbox. The payload is
-- the JSON envelope kept as text (longtext, not json: it is sent byte for byte as it was
-- written, and MariaDB's json is only longtext with a validity check anyway).
create table outbox (
    seq bigint not null auto_increment,
    id binary(16) not null,
    topic varchar(255) not null,
    event_type varchar(255) not null,
    aggregate_id varchar(255) not null,
    payload longtext not null,
    status varchar(16) not null default 'pending',
    attempts integer not null default 0,
    available_at datetime(6) not null,
    claimed_by varchar(255),
    claimed_until datetime(6),
    last_error text,
    created_at datetime(6) not null,
    updated_at datetime(6) not null,
    sent_at datetime(6),
    primary key (seq),
    unique key outbox_id_key (id),
    -- The relay's scan, and the per-aggregate "earlier pending row" probe. PostgreSQL's are
    -- partial on status = 'pending': (available_at, seq) and (aggregate_id, seq). MariaDB has
    -- no partial indexes, so `status` joins each key where the statements' equality on it
    -- lets it narrow the range to pending rows (the probe then never walks the sent rows of
    -- an aggregate).
    key outbox_pending_idx (status, available_at, seq),
    key outbox_aggregate_idx (aggregate_id, status, seq),
    constraint outbox_status_check check (status in ('pending', 'sent', 'dead'))
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;

create table inbox (
    consumer varchar(255) not null,
    event_id binary(16) not null,
    processed_at datetime(6) not null,
    primary key (consumer, event_id)
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;
