-- Refresh tokens: only their SHA-256 hash is stored. Rotated tokens are spent, not deleted,
-- so a reuse can be detected and the whole family revoked.
create table refresh_tokens (
    token_hash text primary key,
    member_id uuid not null references members (id),
    family_id uuid not null,
    expires_at timestamptz not null,
    spent_at timestamptz,
    revoked_at timestamptz,
    created_at timestamptz not null,
    updated_at timestamptz not null
);

create index refresh_tokens_family_idx on refresh_tokens (family_id);
create index refresh_tokens_member_idx on refresh_tokens (member_id);
