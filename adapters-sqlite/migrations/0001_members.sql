-- Members. Times are unix microseconds (integer), ids hyphenated uuid text.
create table members (
    id text primary key not null,
    email text not null,
    name text not null,
    phone text not null,
    password_hash text not null,
    role text not null,
    status text not null,
    last_login_at integer,
    withdrawn_at integer,
    anonymised_at integer,
    created_at integer not null,
    updated_at integer not null
);

create unique index members_email_key on members (email);

-- The anonymisation job's scan.
create index members_withdrawn_idx on members (status, withdrawn_at)
    where anonymised_at is null;
