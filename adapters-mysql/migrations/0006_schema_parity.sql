-- The MariaDB side of adapters-postgres/migrations/0006_schema_parity.sql: wallet_ledger
-- and policy_audit get `seq` (the insertion order every reader sorts by) as their primary
-- key and `id` as the named unique key, as outbox already has it. The interim index that
-- the auto_increment `seq` needed goes in the same statement (an auto_increment column must
-- lead some index at every moment). Each `alter table` is one statement, so the table is
-- rebuilt once. `id` is already not null.
alter table wallet_ledger
    drop primary key,
    add primary key (seq),
    drop index wallet_ledger_seq_key,
    add constraint wallet_ledger_id_key unique (id);

alter table policy_audit
    drop primary key,
    add primary key (seq),
    drop index policy_audit_seq_key,
    add constraint policy_audit_id_key unique (id);
