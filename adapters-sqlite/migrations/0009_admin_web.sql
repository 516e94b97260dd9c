-- The CX admin web (see PostgreSQL's 0009).
alter table policy_audit add column note text;

create table staff_sessions (
    token_hash text primary key not null,
    member_id text not null references members (id),
    csrf_token text not null,
    created_at integer not null,
    last_seen_at integer not null,
    updated_at integer not null
);

create index staff_sessions_member_idx on staff_sessions (member_id);

create table insurer_callbacks (
    id text primary key not null,
    insurer_event_id text not null,
    policy_id text not null references policies (id),
    cancelled_at integer not null,
    outcome text not null,
    received_at integer not null,
    created_at integer not null,
    constraint insurer_callbacks_outcome_check check (outcome in ('expired', 'expiry_moved_earlier', 'unchanged'))
);

create index insurer_callbacks_policy_idx on insurer_callbacks (policy_id, received_at);
