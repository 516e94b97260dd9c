-- The transactional outbox (drained by the relay) and the consumers' inbox.
create table outbox (
    seq integer primary key autoincrement,
    id text not null unique,
    topic text not null,
    event_type text not null,
    aggregate_id text not null,
    payload text not null,
    status text not null default 'pending',
    attempts integer not null default 0,
    available_at integer not null,
    claimed_by text,
    claimed_until integer,
    last_error text,
    created_at integer not null,
    sent_at integer
);

-- The relay's scan, and the per-aggregate "earlier pending row" probe.
create index outbox_pending_idx on outbox (status, available_at);
create index outbox_aggregate_idx on outbox (aggregate_id, seq);

create table inbox (
    consumer text not null,
    event_id text not null,
    processed_at integer not null,
    primary key (consumer, event_id)
);
