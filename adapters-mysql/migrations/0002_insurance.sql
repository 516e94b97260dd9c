-- Time-based insurance: policies, their audit trail and driving sessions.
--
-- Foreign keys carry PostgreSQL's default names (<table>_<column>_fkey). InnoDB needs an
-- index whose leading columns are a foreign key's; where the schema has none it creates
-- one named like the constraint (here driving_sessions_member_id_fkey), which PostgreSQL
-- does not need.
create table policies (
    id binary(16) not null,
    member_id binary(16) not null,
    policy_number varchar(64) not null,
    hourly_premium bigint not null,
    coverage_start datetime(6) not null,
    status varchar(16) not null,
    expired_at datetime(6),
    expiry_reason varchar(32),
    expired_by text,
    version bigint not null,
    created_at datetime(6) not null,
    updated_at datetime(6) not null,
    -- One active policy per member. PostgreSQL says it with a partial unique index,
    -- (member_id) where status = 'active', which MariaDB does not have. This column is the
    -- member id while the policy is active and null otherwise; a unique index admits any
    -- number of nulls, so it holds one active policy per member and any number of expired
    -- ones. Stored (persistent) so the unique check reads no base columns, invisible so that
    -- `select *` returns PostgreSQL's columns; the application never writes it.
    active_member_id binary(16) as (case when status = 'active' then member_id end)
        persistent invisible,
    primary key (id),
    unique key policies_policy_number_key (policy_number),
    unique key policies_one_active_key (active_member_id),
    key policies_member_idx (member_id, created_at),
    constraint policies_member_id_fkey foreign key (member_id) references members (id),
    constraint policies_status_check check (status in ('active', 'expired')),
    constraint policies_expiry_reason_check
        check (expiry_reason in ('member_withdrawn', 'insurer_cancellation', 'admin_request'))
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;

-- Append-only: an audit row is never updated, so it has no updated_at. `seq` orders rows
-- of the same instant by insertion. An auto_increment column must lead an index, hence
-- policy_audit_seq_key until 0006 makes `seq` the primary key, as PostgreSQL's 0006 does.
-- (InnoDB keeps the auto_increment counter across restarts: a seq is never handed out twice.)
create table policy_audit (
    seq bigint not null auto_increment,
    id binary(16) not null,
    policy_id binary(16) not null,
    actor text not null,
    action varchar(32) not null,
    reason varchar(32),
    previous_expired_at datetime(6),
    new_expired_at datetime(6),
    at datetime(6) not null,
    created_at datetime(6) not null,
    primary key (id),
    unique key policy_audit_seq_key (seq),
    key policy_audit_policy_idx (policy_id, at, seq),
    constraint policy_audit_policy_id_fkey foreign key (policy_id) references policies (id),
    constraint policy_audit_action_check check (action in ('enrolled', 'expired', 'expiry_moved_earlier')),
    constraint policy_audit_reason_check
        check (reason in ('member_withdrawn', 'insurer_cancellation', 'admin_request'))
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;

create table driving_sessions (
    id binary(16) not null,
    member_id binary(16) not null,
    policy_id binary(16) not null,
    started_at datetime(6) not null,
    ended_at datetime(6),
    created_at datetime(6) not null,
    updated_at datetime(6) not null,
    -- One open driving session per member: PostgreSQL's partial unique index (member_id)
    -- where ended_at is null, emulated as for policies_one_active_key.
    open_member_id binary(16) as (case when ended_at is null then member_id end)
        persistent invisible,
    primary key (id),
    unique key driving_sessions_one_open_key (open_member_id),
    key driving_sessions_policy_idx (policy_id, started_at),
    constraint driving_sessions_member_id_fkey foreign key (member_id) references members (id),
    constraint driving_sessions_policy_id_fkey foreign key (policy_id) references policies (id)
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;
