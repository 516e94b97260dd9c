-- Members (MariaDB 10.11 / MySQL). The same schema as adapters-postgres/migrations, in
-- MariaDB's types: ids are binary(16) (how sqlx encodes uuid::Uuid for MySQL), times
-- datetime(6) in UTC (sqlx converts an OffsetDateTime to UTC; the session time_zone is
-- '+00:00'), money and counters bigint. Every table is InnoDB in utf8mb4_bin: e-mails
-- compare and sort byte-wise (code point order), like PostgreSQL's collation "C" and SQLite,
-- so the prefix search is a plain index range. utf8mb4_bin is a PAD SPACE collation:
-- trailing spaces do not count in comparisons ('a' = 'a '), which the domain's e-mail
-- validation (no whitespace) makes moot.
--
-- sqlx runs each file as one multi-statement script. MariaDB commits implicitly after each
-- DDL statement, so a file that fails halfway is not rolled back.
create table members (
    id binary(16) not null,
    email varchar(320) not null,
    name text not null,
    phone text not null,
    password_hash text not null,
    role varchar(16) not null,
    status varchar(16) not null,
    last_login_at datetime(6),
    withdrawn_at datetime(6),
    anonymised_at datetime(6),
    created_at datetime(6) not null,
    updated_at datetime(6) not null,
    -- A primary key is always named PRIMARY in MariaDB (PostgreSQL's is members_pkey).
    primary key (id),
    -- Unique constraints and indexes are named: the adapter maps a violation to its rule by
    -- name (error 1062 names the key).
    unique key members_email_key (email),
    -- The anonymisation job's scan. PostgreSQL's is partial, (status, withdrawn_at) where
    -- anonymised_at is null; MariaDB has no partial indexes, so the predicate's column joins
    -- the key: `status = ? and anonymised_at is null` is an equality prefix, and the scan
    -- reads withdrawn_at (then the primary key, which InnoDB appends) in order.
    key members_withdrawn_idx (status, anonymised_at, withdrawn_at),
    constraint members_role_check check (role in ('rider', 'cx', 'admin')),
    constraint members_status_check check (status in ('active', 'withdrawn'))
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;
