-- `key` is a reserved word in MySQL and MariaDB: the column every dialect shares is
-- `request_key`, so the shared statements need no quoting.
alter table idempotency_keys rename column key to request_key;
