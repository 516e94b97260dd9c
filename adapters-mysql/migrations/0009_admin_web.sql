-- The CX admin web (see PostgreSQL's 0009).
alter table policy_audit add column note text;

create table staff_sessions (
    token_hash varchar(128) not null,
    member_id binary(16) not null,
    csrf_token text not null,
    created_at datetime(6) not null,
    last_seen_at datetime(6) not null,
    updated_at datetime(6) not null,
    primary key (token_hash),
    key staff_sessions_member_idx (member_id),
    constraint staff_sessions_member_id_fkey foreign key (member_id) references members (id)
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;

create table insurer_callbacks (
    id binary(16) not null,
    insurer_event_id text not null,
    policy_id binary(16) not null,
    cancelled_at datetime(6) not null,
    outcome varchar(32) not null,
    received_at datetime(6) not null,
    created_at datetime(6) not null,
    primary key (id),
    key insurer_callbacks_policy_idx (policy_id, received_at),
    constraint insurer_callbacks_policy_id_fkey foreign key (policy_id) references policies (id),
    constraint insurer_callbacks_outcome_check check (outcome in ('expired', 'expiry_moved_earlier', 'unchanged'))
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;
