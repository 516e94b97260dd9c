-- Refresh tokens: only their SHA-256 hash (64 hex digits) is stored. Rotated tokens are
-- spent, not deleted, so a reuse can be detected and the whole family revoked.
create table refresh_tokens (
    token_hash varchar(128) not null,
    member_id binary(16) not null,
    family_id binary(16) not null,
    expires_at datetime(6) not null,
    spent_at datetime(6),
    revoked_at datetime(6),
    created_at datetime(6) not null,
    updated_at datetime(6) not null,
    primary key (token_hash),
    key refresh_tokens_family_idx (family_id),
    key refresh_tokens_member_idx (member_id),
    constraint refresh_tokens_member_id_fkey foreign key (member_id) references members (id)
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;
