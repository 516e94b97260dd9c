-- The CX admin web: notes on staff changes, browser sessions of staff, and the insurer
-- callbacks a policy received (with what each did).
alter table policy_audit add column note text;

-- Only the SHA-256 of the session cookie's token is stored.
create table staff_sessions (
    token_hash text primary key,
    member_id uuid not null references members (id),
    csrf_token text not null,
    created_at timestamptz not null,
    last_seen_at timestamptz not null,
    updated_at timestamptz not null
);

create index staff_sessions_member_idx on staff_sessions (member_id);

-- One row per applied callback; its id is the inbox's (derived from the insurer's event id).
create table insurer_callbacks (
    id uuid primary key,
    insurer_event_id text not null,
    policy_id uuid not null references policies (id),
    cancelled_at timestamptz not null,
    outcome text not null,
    received_at timestamptz not null,
    created_at timestamptz not null,
    constraint insurer_callbacks_outcome_check check (outcome in ('expired', 'expiry_moved_earlier', 'unchanged'))
);

create index insurer_callbacks_policy_idx on insurer_callbacks (policy_id, received_at);
