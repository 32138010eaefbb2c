-- Enterprise single sign-on (OpenID Connect), one connection per tenant (docs/sso.md).
-- Everything here is control-plane state, read and written through the control pool only.

-- The tenant's OpenID Provider. `client_secret` is AES-256-GCM ciphertext (the keyring);
-- `key_id` repeats the key id inside it so rotation finds rows under an old key.
-- `enforced_at`: when SSO became required (null: optional).
create table control.sso_connections (
    tenant_id uuid not null references control.tenants (id) on delete cascade,
    issuer text not null,
    client_id text not null,
    client_secret bytea not null,
    key_id text not null,
    default_role text not null,
    enforced_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint sso_connections_pkey primary key (tenant_id),
    constraint sso_connections_default_role_check check (default_role in ('ADMIN', 'MEMBER', 'VIEWER'))
);

create index sso_connections_key_id_idx on control.sso_connections (key_id);

-- Email domains a tenant claims for SSO, proven like custom domains (a token served over
-- HTTP). A domain is verified by at most one tenant.
create table control.sso_domains (
    tenant_id uuid not null references control.tenants (id) on delete cascade,
    domain text not null,
    token text not null,
    verified_at timestamptz,
    created_at timestamptz not null default now(),
    constraint sso_domains_pkey primary key (tenant_id, domain)
);

create unique index sso_domains_verified_key on control.sso_domains (domain) where verified_at is not null;

-- Sign-ins under way: `state` (hashed) is single use and short-lived; `browser_hash` is the
-- hash of the key only the browser that started the flow holds; `sealed` holds the nonce and
-- the PKCE verifier, encrypted. After the callback, `code_hash` is the one-time code the
-- frontend exchanges (with the browser key) for tokens, and `refresh_sealed` the provider's
-- refresh token until the session takes it.
create table control.sso_flows (
    id uuid not null,
    tenant_id uuid not null references control.tenants (id) on delete cascade,
    state_hash bytea not null,
    browser_hash bytea not null,
    sealed bytea not null,
    redirect_url text not null,
    expires_at timestamptz not null,
    callback_at timestamptz,
    code_hash bytea,
    user_id uuid references control.users (id) on delete cascade,
    refresh_sealed bytea,
    completed_at timestamptz,
    created_at timestamptz not null default now(),
    constraint sso_flows_pkey primary key (id),
    constraint sso_flows_state_key unique (state_hash),
    constraint sso_flows_code_key unique (code_hash)
);

create index sso_flows_expires_at_idx on control.sso_flows (expires_at);

-- Sessions (refresh-token families) opened by SSO, with the provider's refresh token
-- (encrypted) that every `refreshSession` presents to the provider again.
create table control.sso_sessions (
    family_id uuid not null,
    tenant_id uuid not null references control.tenants (id) on delete cascade,
    user_id uuid not null references control.users (id) on delete cascade,
    refresh_sealed bytea,
    created_at timestamptz not null default now(),
    constraint sso_sessions_pkey primary key (family_id)
);
