-- Brings the PostgreSQL schema and the SQLite one to the same shape; tests/tests/schema_parity.rs
-- checks that the two stay equal. The SQLite side of this change is its own 0006.
--
-- wallet_ledger and policy_audit: `seq` (the insertion order every reader sorts by) becomes
-- the primary key and `id` a named unique key, as outbox already has it. SQLite can only
-- number rows in insertion order through its primary key (`integer primary key`, the rowid),
-- so this is the one shape both dialects can share. The constraint names are kept: the
-- adapter maps unique violations to rules by name.
--
-- Each `alter table` is one statement so the table is locked and its indexes rebuilt once;
-- PostgreSQL runs the drops of a statement before its adds, so the primary key's name can
-- be reused in the same statement. The identity column is already not null; `id` is set
-- not null explicitly since it was only implied by the primary key being dropped (a no-op
-- where dropping the key keeps it, as PostgreSQL 15 does).
alter table wallet_ledger
    alter column id set not null,
    drop constraint wallet_ledger_pkey,
    add constraint wallet_ledger_pkey primary key (seq),
    add constraint wallet_ledger_id_key unique (id);

alter table policy_audit
    alter column id set not null,
    drop constraint policy_audit_pkey,
    add constraint policy_audit_pkey primary key (seq),
    add constraint policy_audit_id_key unique (id);
