-- The staff search for text anywhere (`lower(email) like '%text%' or …`) read every member.
-- MariaDB has no index for a `like` that starts with `%` (its full-text indexes find words,
-- not parts of them), so the store keeps the trigrams (3-character substrings) of each
-- member's lower-cased e-mail, name and phone here, rewritten in the member's own
-- transaction (sql-store members.rs), and the search reads only the members having three of
-- the text's trigrams before its `like` decides. The primary key is the lookup: a trigram's
-- members. No foreign key: it would add an index on member_id the size of the table, and
-- members are never deleted. The schema parity test describes this table as MariaDB's own.
create table member_trigrams (
    trigram varchar(3) not null,
    member_id binary(16) not null,
    primary key (trigram, member_id)
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;

-- The members already there (the same statement as the store's, for every member).
insert into member_trigrams (trigram, member_id)
with recursive n (i) as (select 1 union all select i + 1 from n where i < 318)
select distinct substring(f.v, n.i, 3), f.id
from (select id, lower(email) as v from members
      union all select id, lower(name) from members
      union all select id, lower(phone) from members) f
join n on n.i <= char_length(f.v) - 2;
