-- Single-use, expiring tokens mailed to users: email verification and password reset.
create table control.email_tokens (
    id uuid primary key,
    user_id uuid not null references control.users (id) on delete cascade,
    purpose text not null,
    token_hash bytea not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    used_at timestamptz,
    constraint email_tokens_purpose_check check (purpose in ('verify_email', 'reset_password')),
    constraint email_tokens_token_hash_key unique (token_hash)
);

create index email_tokens_user_id_idx on control.email_tokens (user_id);
