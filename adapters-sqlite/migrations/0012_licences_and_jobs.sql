-- Driving licences, their checks and the batch jobs' leases (see PostgreSQL's 0012).
create table licences (
    member_id text primary key not null references members (id),
    number text not null,
    expires_on integer not null,
    status text not null,
    status_reason text,
    last_verified_at integer not null,
    registered_at integer not null,
    created_at integer not null,
    updated_at integer not null,
    constraint licences_status_check check (status in ('valid', 'suspended', 'expired'))
);

create index licences_status_expires_idx on licences (status, expires_on);
create index licences_status_verified_idx on licences (status, last_verified_at);

create table licence_checks (
    id text primary key not null,
    member_id text not null references members (id),
    number text not null,
    status text not null,
    reason text,
    actor text not null,
    checked_at integer not null,
    created_at integer not null
);

create index licence_checks_member_idx on licence_checks (member_id, checked_at);

create table jobs (
    name text primary key not null,
    holder text,
    lease_until integer,
    resume_after text,
    run_started_at integer,
    last_finished_at integer,
    rows_done integer not null,
    rows_failed integer not null,
    created_at integer not null,
    updated_at integer not null
);
