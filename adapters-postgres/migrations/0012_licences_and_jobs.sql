-- Driving licences (one per member), their verification trail, and the batch jobs' leases.

-- `expires_on` is the last day the licence is in force, stored as that day's midnight UTC
-- (a timestamp every dialect binds alike).
create table licences (
    member_id uuid primary key references members (id),
    number text not null,
    expires_on timestamptz not null,
    status text not null,
    status_reason text,
    last_verified_at timestamptz not null,
    registered_at timestamptz not null,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint licences_status_check check (status in ('valid', 'suspended', 'expired'))
);

-- The re-verification batch finds due licences by either condition.
create index licences_status_expires_idx on licences (status, expires_on);
create index licences_status_verified_idx on licences (status, last_verified_at);

create table licence_checks (
    id uuid primary key,
    member_id uuid not null references members (id),
    number text not null,
    status text not null,
    reason text,
    actor text not null,
    checked_at timestamptz not null,
    created_at timestamptz not null
);

create index licence_checks_member_idx on licence_checks (member_id, checked_at);

-- One row per scheduled job: who holds its lease, until when, and where its run stands.
create table jobs (
    name text primary key,
    holder text,
    lease_until timestamptz,
    resume_after text,
    run_started_at timestamptz,
    last_finished_at timestamptz,
    rows_done bigint not null,
    rows_failed bigint not null,
    created_at timestamptz not null,
    updated_at timestamptz not null
);
