-- The staff search for text anywhere (sql-store members.rs: `lower(email) like '%text%' or
-- lower(name) like … or phone like …`, by e-mail, limit n) read every member. pg_trgm's GIN
-- operator class answers `like` patterns that hold a trigram (3 characters) from an index: one
-- index over the three expressions the search names, which the planner ORs as bitmaps (or,
-- for text most members match, it walks members_email_key in order and stops at n). Other
-- databases have no such index, so this one is described as PostgreSQL's own by the schema
-- parity test. pg_trgm is a trusted extension: the database owner may create it.
create extension if not exists pg_trgm;

create index members_search_idx on members
    using gin (lower(email) gin_trgm_ops, lower(name) gin_trgm_ops, phone gin_trgm_ops);
