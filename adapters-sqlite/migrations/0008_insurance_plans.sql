-- Insurance plans that staff manage (see PostgreSQL's 0008).
create table insurance_plans (
    id text primary key not null,
    name text not null,
    hourly_premium integer not null,
    status text not null,
    created_at integer not null,
    updated_at integer not null,
    constraint insurance_plans_hourly_premium_check check (hourly_premium between 1 and 1000000),
    constraint insurance_plans_status_check check (status in ('active', 'retired'))
);

create index insurance_plans_status_idx on insurance_plans (status, name);

alter table policies add column plan_id text references insurance_plans (id);
