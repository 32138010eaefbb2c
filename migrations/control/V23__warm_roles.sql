-- Tenant roles made ahead, in batches, for tenants not provisioned yet (docs/SCALING.md, "Roles
-- made ahead"). Every change to role memberships makes each PostgreSQL backend rebuild its
-- list of the login role's memberships, which is a member of every tenant role; a batch costs
-- one rebuild where a role per provisioning cost one each time. A provisioning takes a row and
-- names its tenant and schema after it. A role here has rights on nothing.
create table control.warm_roles (
    tenant_id uuid primary key,
    created_at timestamptz not null default now()
);
