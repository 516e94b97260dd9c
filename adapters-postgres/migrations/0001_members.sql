-- Members. E-mails compare and sort byte-wise (collation "C"), like SQLite's, so prefix
-- search is a plain index range and its order does not depend on the server's locale.
create table members (
    id uuid primary key,
    email text collate "C" not null,
    name text not null,
    phone text not null,
    password_hash text not null,
    role text not null,
    status text not null,
    last_login_at timestamptz,
    withdrawn_at timestamptz,
    anonymised_at timestamptz,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint members_role_check check (role in ('rider', 'cx', 'admin')),
    constraint members_status_check check (status in ('active', 'withdrawn'))
);

-- Unique constraints and indexes are named: the adapter maps a violation to its rule by name.
create unique index members_email_key on members (email);

-- The anonymisation job's scan.
create index members_withdrawn_idx on members (status, withdrawn_at)
    where anonymised_at is null;
