-- Invitations to join a tenant. At most one pending invitation per tenant and email.
create table control.invitations (
    id uuid primary key,
    tenant_id uuid not null references control.tenants (id) on delete cascade,
    email text not null,
    role text not null,
    token_hash bytea not null,
    invited_by uuid references control.users (id) on delete set null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    accepted_at timestamptz,
    revoked_at timestamptz,
    constraint invitations_role_check check (role in ('OWNER', 'ADMIN', 'MEMBER', 'VIEWER')),
    constraint invitations_token_hash_key unique (token_hash)
);

create unique index invitations_pending_email_key on control.invitations (tenant_id, email)
    where accepted_at is null and revoked_at is null;
