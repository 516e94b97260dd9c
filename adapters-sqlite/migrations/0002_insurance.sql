-- Time-based insurance: policies, their audit trail and driving sessions.
create table policies (
    id text primary key not null,
    member_id text not null references members (id),
    policy_number text not null,
    hourly_premium integer not null,
    coverage_start integer not null,
    status text not null,
    expired_at integer,
    expiry_reason text,
    expired_by text,
    version integer not null,
    created_at integer not null,
    updated_at integer not null
);

create unique index policies_policy_number_key on policies (policy_number);
-- One active policy per member.
create unique index policies_one_active_key on policies (member_id) where status = 'active';
create index policies_member_idx on policies (member_id, created_at);

-- Append-only: an audit row is never updated, so it has no updated_at.
create table policy_audit (
    id text primary key not null,
    policy_id text not null references policies (id),
    actor text not null,
    action text not null,
    reason text,
    previous_expired_at integer,
    new_expired_at integer,
    at integer not null,
    created_at integer not null
);

create index policy_audit_policy_idx on policy_audit (policy_id, at);

create table driving_sessions (
    id text primary key not null,
    member_id text not null references members (id),
    policy_id text not null references policies (id),
    started_at integer not null,
    ended_at integer,
    created_at integer not null,
    updated_at integer not null
);

-- One open driving session per member.
create unique index driving_sessions_one_open_key on driving_sessions (member_id)
    where ended_at is null;
create index driving_sessions_policy_idx on driving_sessions (policy_id, started_at);
