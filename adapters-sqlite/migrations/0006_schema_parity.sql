-- Brings the SQLite schema to the shape of the PostgreSQL one (same tables, columns,
-- nullability, keys, unique and plain indexes and foreign keys; outbox_pending_idx alone
-- keeps a SQLite shape, see below); tests/tests/schema_parity.rs checks that the two stay
-- equal. sqlx runs this file in one transaction.
--
-- SQLite cannot add a primary key, drop a column constraint or rename an automatic index in
-- place, so three tables are rebuilt: create `<t>_new`, copy the rows, drop `<t>`, rename.
-- Nothing references outbox, wallet_ledger or policy_audit, so dropping them never trips a
-- foreign key (`pragma foreign_keys` cannot be switched off inside a transaction anyway).

-- 1. `updated_at` as PostgreSQL has it. Adding a not-null column needs a default; existing
-- rows then take their creation time.
alter table idempotency_keys add column updated_at integer not null default 0;
update idempotency_keys set updated_at = created_at;

alter table refresh_tokens add column updated_at integer not null default 0;
update refresh_tokens set updated_at = created_at;

-- 2. outbox: the unique key on `id` was the unnamed `unique` column constraint (index
-- `sqlite_autoindex_outbox_1`); it becomes the named index `outbox_id_key`, as in
-- PostgreSQL. The rebuild also adds `updated_at` (in PostgreSQL's column order).
create table outbox_new (
    seq integer primary key autoincrement,
    id text not null,
    topic text not null,
    event_type text not null,
    aggregate_id text not null,
    payload text not null,
    status text not null default 'pending',
    attempts integer not null default 0,
    available_at integer not null,
    claimed_by text,
    claimed_until integer,
    last_error text,
    created_at integer not null,
    updated_at integer not null default 0,
    sent_at integer
);

-- Carry the autoincrement high-water mark over before copying, so a `seq` handed out to a
-- since-deleted row is never handed out again (copying alone would only keep max(seq)).
insert into sqlite_sequence (name, seq)
    select 'outbox_new', seq from sqlite_sequence where name = 'outbox';

insert into outbox_new (seq, id, topic, event_type, aggregate_id, payload, status, attempts,
                        available_at, claimed_by, claimed_until, last_error, created_at,
                        updated_at, sent_at)
    select seq, id, topic, event_type, aggregate_id, payload, status, attempts,
           available_at, claimed_by, claimed_until, last_error, created_at,
           created_at, sent_at
    from outbox
    order by seq;

-- Dropping `outbox` drops its indexes and its sqlite_sequence row; the rename moves
-- `outbox_new`'s row over.
drop table outbox;
alter table outbox_new rename to outbox;

create unique index outbox_id_key on outbox (id);
-- The per-aggregate "earlier pending row" probe: partial on pending rows like PostgreSQL's,
-- so it no longer walks every sent row of the aggregate (the relay's statements say
-- `status = 'pending'` literally, which is what lets SQLite use a partial index).
create index outbox_aggregate_idx on outbox (aggregate_id, seq) where status = 'pending';
-- The relay's scan keeps its SQLite shape on purpose, the one index that differs from
-- PostgreSQL's partial (available_at, seq): without table statistics SQLite plans the
-- claim's `order by seq limit n` as a scan of the whole outbox in seq order instead of using
-- that partial index, so every claim would read every row ever sent.
create index outbox_pending_idx on outbox (status, available_at);

-- 3. wallet_ledger: `seq` becomes the primary key (an alias of the rowid, which the ledger
-- was ordered by until now) and `id` a named unique key. Each row keeps its rowid as its
-- `seq`, so the order of rows of the same instant is unchanged.
create table wallet_ledger_new (
    seq integer primary key autoincrement,
    id text not null,
    member_id text not null references members (id),
    kind text not null,
    amount integer not null,
    balance_after integer not null,
    reference text,
    created_at integer not null
);

insert into wallet_ledger_new (seq, id, member_id, kind, amount, balance_after, reference,
                               created_at)
    select rowid, id, member_id, kind, amount, balance_after, reference, created_at
    from wallet_ledger
    order by rowid;

drop table wallet_ledger;
alter table wallet_ledger_new rename to wallet_ledger;

create unique index wallet_ledger_id_key on wallet_ledger (id);
create index wallet_ledger_member_idx on wallet_ledger (member_id, created_at, seq);

-- 4. policy_audit: the same change as wallet_ledger.
create table policy_audit_new (
    seq integer primary key autoincrement,
    id text not null,
    policy_id text not null references policies (id),
    actor text not null,
    action text not null,
    reason text,
    previous_expired_at integer,
    new_expired_at integer,
    at integer not null,
    created_at integer not null
);

insert into policy_audit_new (seq, id, policy_id, actor, action, reason, previous_expired_at,
                              new_expired_at, at, created_at)
    select rowid, id, policy_id, actor, action, reason, previous_expired_at,
           new_expired_at, at, created_at
    from policy_audit
    order by rowid;

drop table policy_audit;
alter table policy_audit_new rename to policy_audit;

create unique index policy_audit_id_key on policy_audit (id);
create index policy_audit_policy_idx on policy_audit (policy_id, at, seq);
