-- Tenant integration secrets (outgoing webhook signing secrets, third-party API tokens), each
-- encrypted with AES-256-GCM. `key_id` repeats the key id inside the ciphertext so that
-- `tenantry keys rotate` finds the rows still under an old key with an index.
create table control.tenant_secrets (
    tenant_id uuid not null references control.tenants (id) on delete cascade,
    name text not null,
    ciphertext bytea not null,
    key_id text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint tenant_secrets_pkey primary key (tenant_id, name),
    constraint tenant_secrets_name_check check (name ~ '^[a-z][a-z0-9_]{0,62}$')
);

create index tenant_secrets_key_id_idx on control.tenant_secrets (key_id);
