-- The transactional outbox (drained by the relay) and the consumers' inbox. The payload is
-- the JSON envelope kept as text: it is sent byte for byte as it was written.
create table outbox (
    seq bigint generated always as identity primary key,
    id uuid not null,
    topic text not null,
    event_type text not null,
    aggregate_id text not null,
    payload text not null,
    status text not null default 'pending',
    attempts integer not null default 0,
    available_at timestamptz not null,
    claimed_by text,
    claimed_until timestamptz,
    last_error text,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    sent_at timestamptz,
    constraint outbox_id_key unique (id),
    constraint outbox_status_check check (status in ('pending', 'sent', 'dead'))
);

-- The relay's scan, and the per-aggregate "earlier pending row" probe.
create index outbox_pending_idx on outbox (available_at, seq) where status = 'pending';
create index outbox_aggregate_idx on outbox (aggregate_id, seq) where status = 'pending';

create table inbox (
    consumer text not null,
    event_id uuid not null,
    processed_at timestamptz not null,
    constraint inbox_pkey primary key (consumer, event_id)
);
