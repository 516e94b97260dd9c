-- Time-based insurance: policies, their audit trail and driving sessions.
create table policies (
    id uuid primary key,
    member_id uuid not null references members (id),
    policy_number text not null,
    hourly_premium bigint not null,
    coverage_start timestamptz not null,
    status text not null,
    expired_at timestamptz,
    expiry_reason text,
    expired_by text,
    version bigint not null,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint policies_status_check check (status in ('active', 'expired')),
    constraint policies_expiry_reason_check
        check (expiry_reason in ('member_withdrawn', 'insurer_cancellation', 'admin_request'))
);

create unique index policies_policy_number_key on policies (policy_number);
-- One active policy per member.
create unique index policies_one_active_key on policies (member_id) where status = 'active';
create index policies_member_idx on policies (member_id, created_at);

-- Append-only: an audit row is never updated, so it has no updated_at. `seq` orders rows
-- of the same instant by insertion.
create table policy_audit (
    seq bigint generated always as identity,
    id uuid primary key,
    policy_id uuid not null references policies (id),
    actor text not null,
    action text not null,
    reason text,
    previous_expired_at timestamptz,
    new_expired_at timestamptz,
    at timestamptz not null,
    created_at timestamptz not null,
    constraint policy_audit_action_check check (action in ('enrolled', 'expired', 'expiry_moved_earlier')),
    constraint policy_audit_reason_check
        check (reason in ('member_withdrawn', 'insurer_cancellation', 'admin_request'))
);

create index policy_audit_policy_idx on policy_audit (policy_id, at, seq);

create table driving_sessions (
    id uuid primary key,
    member_id uuid not null references members (id),
    policy_id uuid not null references policies (id),
    started_at timestamptz not null,
    ended_at timestamptz,
    created_at timestamptz not null,
    updated_at timestamptz not null
);

-- One open driving session per member.
create unique index driving_sessions_one_open_key on driving_sessions (member_id)
    where ended_at is null;
create index driving_sessions_policy_idx on driving_sessions (policy_id, started_at);
