-- Tenant API keys: `tk_<prefix>_<secret>`; only a hash of the secret is kept.
create table control.api_keys (
    id uuid primary key,
    tenant_id uuid not null references control.tenants (id) on delete cascade,
    name text not null,
    role text not null,
    prefix text not null,
    secret_hash bytea not null,
    created_by uuid references control.users (id) on delete set null,
    created_at timestamptz not null default now(),
    last_used_at timestamptz,
    revoked_at timestamptz,
    constraint api_keys_role_check check (role in ('ADMIN', 'MEMBER', 'VIEWER')),
    constraint api_keys_name_check check (char_length(name) between 1 and 100),
    constraint api_keys_prefix_key unique (prefix)
);

create index api_keys_tenant_id_idx on control.api_keys (tenant_id);
