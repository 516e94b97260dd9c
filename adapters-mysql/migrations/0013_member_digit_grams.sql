-- The staff search for part of a phone number narrowed its candidates by three trigrams of
-- the digits, and a trigram of digits belongs to some ten thousand members at a million
-- (each phone has nine of them): 18 ms a search. Four digits in a row belong to a few
-- hundred, so the store also keeps, here, the 4-digit substrings of each member's e-mail,
-- name and phone (only those made of digits), rewritten with the member's trigrams
-- (sql-store members.rs). Digits of four or more are narrowed by two of them; text that is
-- only digits needs no trigram at all (its e-mail, name and phone matches all have them).
-- The primary key is the lookup; no foreign key, as for member_trigrams.
create table member_digit_grams (
    gram varchar(4) not null,
    member_id binary(16) not null,
    primary key (gram, member_id)
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;

-- The members already there (the same statement as the store's, for every member).
insert into member_digit_grams (gram, member_id)
with recursive n (i) as (select 1 union all select i + 1 from n where i < 318)
select distinct substring(f.v, n.i, 4), f.id
from (select id, email as v from members
      union all select id, name from members
      union all select id, phone from members) f
join n on n.i <= char_length(f.v) - 3
where substring(f.v, n.i, 4) regexp '^[0-9]{4}$';
