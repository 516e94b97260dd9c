-- Driving licences, their checks and the batch jobs' leases (see PostgreSQL's 0012).
create table licences (
    member_id binary(16) not null,
    number varchar(32) not null,
    expires_on datetime(6) not null,
    status varchar(16) not null,
    status_reason text,
    last_verified_at datetime(6) not null,
    registered_at datetime(6) not null,
    created_at datetime(6) not null,
    updated_at datetime(6) not null,
    primary key (member_id),
    key licences_status_expires_idx (status, expires_on),
    key licences_status_verified_idx (status, last_verified_at),
    constraint licences_member_id_fkey foreign key (member_id) references members (id),
    constraint licences_status_check check (status in ('valid', 'suspended', 'expired'))
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;

create table licence_checks (
    id binary(16) not null,
    member_id binary(16) not null,
    number varchar(32) not null,
    status varchar(16) not null,
    reason text,
    actor varchar(128) not null,
    checked_at datetime(6) not null,
    created_at datetime(6) not null,
    primary key (id),
    key licence_checks_member_idx (member_id, checked_at),
    constraint licence_checks_member_id_fkey foreign key (member_id) references members (id)
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;

create table jobs (
    name varchar(64) not null,
    holder varchar(128),
    lease_until datetime(6),
    resume_after varchar(128),
    run_started_at datetime(6),
    last_finished_at datetime(6),
    rows_done bigint not null,
    rows_failed bigint not null,
    created_at datetime(6) not null,
    updated_at datetime(6) not null,
    primary key (name)
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;
