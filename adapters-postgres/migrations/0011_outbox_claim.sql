-- The relay's claim (`status = 'pending' and available_at <= now … order by seq limit n`)
-- walked the primary key in `seq` order past every sent row to the pending ones, which are
-- the newest: 124 ms with 500,000 sent rows (the query-plan test's scale database). Pending
-- rows in `seq` order are what it reads, so that is the partial index; the due time is a
-- filter on those few rows.
drop index outbox_pending_idx;
create index outbox_pending_idx on outbox (seq) where status = 'pending';
