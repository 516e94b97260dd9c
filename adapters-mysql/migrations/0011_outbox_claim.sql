-- The relay's claim (`status = 'pending' and available_at <= now … order by seq limit n`)
-- read the pending rows through (status, available_at, seq): a range on available_at, so
-- the rows came in due-time order and were sorted by seq (a filesort of every due pending
-- row for each claim; 11 ms with 1,000 pending among 500,000, the query-plan test's scale
-- database). (status, seq) gives the pending rows in seq order: the claim stops after its
-- limit, the due time and lease a filter on the rows it reads, as PostgreSQL's partial
-- index (seq) where status = 'pending' does. The backlog figures (count and oldest of the
-- pending rows) read the same range.
alter table outbox drop key outbox_pending_idx, add key outbox_pending_idx (status, seq);
