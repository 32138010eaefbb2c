-- Tenant schemas created and migrated ahead of time, claimed whole by `createTenant`
-- (docs/SCALING.md, "The warm pool"). A row here is not a tenant: no listing, metric or
-- request reaches it until a claim turns it into a `control.tenants` row.
create table control.warm_schemas (
    schema_name text primary key,
    tenant_id uuid not null unique,
    migration_version integer not null,
    created_at timestamptz not null default now()
);
create index warm_schemas_version_idx on control.warm_schemas (migration_version);
