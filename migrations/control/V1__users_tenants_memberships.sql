-- The control plane. Never on a tenant's search_path.
create table control.users (
    id uuid primary key,
    email text not null,
    name text not null,
    password_hash text not null,
    email_verified_at timestamptz,
    created_at timestamptz not null default now(),
    constraint users_email_key unique (email),
    constraint users_name_check check (char_length(name) between 1 and 100)
);

create table control.tenants (
    id uuid primary key,
    name text not null,
    subdomain text not null,
    domain text,
    plan text not null default 'free',
    status text not null default 'active',
    expires_at timestamptz,
    settings jsonb not null default '{}',
    stripe_customer_id text,
    owner_id uuid references control.users (id) on delete set null,
    schema_name text not null,
    migration_version integer not null default 0,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint tenants_name_check check (char_length(name) between 2 and 100),
    constraint tenants_subdomain_check check (subdomain ~ '^[a-z0-9-]{3,50}$'),
    constraint tenants_status_check check (status in ('active', 'suspended', 'expired')),
    constraint tenants_subdomain_key unique (subdomain),
    constraint tenants_domain_key unique (domain),
    constraint tenants_schema_name_key unique (schema_name)
);

create index tenants_migration_version_idx on control.tenants (migration_version);

create table control.memberships (
    tenant_id uuid not null references control.tenants (id) on delete cascade,
    user_id uuid not null references control.users (id) on delete cascade,
    role text not null,
    created_at timestamptz not null default now(),
    primary key (tenant_id, user_id),
    constraint memberships_role_check check (role in ('OWNER', 'ADMIN', 'MEMBER', 'VIEWER'))
);

create index memberships_user_id_idx on control.memberships (user_id);
