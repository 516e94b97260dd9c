-- Replica lag, measured: the primary's instances write the primary's clock here every
-- health interval, and a replica's lag is how old the row it has applied is.
-- `Seconds_Behind_Master` is no substitute: NULL while a replication thread is stopped, 0
-- while the IO thread is dead, and whole seconds only. MySQL/MariaDB only (PostgreSQL
-- reports replay times itself).
create table replication_heartbeat (
    id int not null primary key,
    beat_at datetime(6) not null
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;
