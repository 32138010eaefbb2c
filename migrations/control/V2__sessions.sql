-- Refresh-token sessions. A family is one sign-in; every refresh rotates to a new row in it.
create table control.sessions (
    id uuid primary key,
    family_id uuid not null,
    user_id uuid not null references control.users (id) on delete cascade,
    token_hash bytea not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    rotated_at timestamptz,
    revoked_at timestamptz,
    constraint sessions_token_hash_key unique (token_hash)
);

create index sessions_family_id_idx on control.sessions (family_id);
create index sessions_user_id_idx on control.sessions (user_id);
