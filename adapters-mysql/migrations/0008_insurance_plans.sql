-- Insurance plans that staff manage (see PostgreSQL's 0008). InnoDB creates an index for
-- the new foreign key, named like the constraint (policies_plan_id_fkey).
create table insurance_plans (
    id binary(16) not null,
    name text not null,
    hourly_premium bigint not null,
    status varchar(16) not null,
    created_at datetime(6) not null,
    updated_at datetime(6) not null,
    primary key (id),
    key insurance_plans_status_idx (status, name(100)),
    constraint insurance_plans_hourly_premium_check check (hourly_premium between 1 and 1000000),
    constraint insurance_plans_status_check check (status in ('active', 'retired'))
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;

alter table policies
    add column plan_id binary(16),
    add constraint policies_plan_id_fkey foreign key (plan_id) references insurance_plans (id);
