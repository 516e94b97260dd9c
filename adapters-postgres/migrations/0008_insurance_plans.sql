-- Insurance plans that staff manage. A rider picks a plan at enrolment; the policy keeps
-- the plan's id and a copy of its hourly premium, so a later change of the plan never
-- re-prices a policy. Policies from before plans have no plan (null).
create table insurance_plans (
    id uuid primary key,
    name text not null,
    hourly_premium bigint not null,
    status text not null,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint insurance_plans_hourly_premium_check check (hourly_premium between 1 and 1000000),
    constraint insurance_plans_status_check check (status in ('active', 'retired'))
);

create index insurance_plans_status_idx on insurance_plans (status, name);

alter table policies add column plan_id uuid references insurance_plans (id);
