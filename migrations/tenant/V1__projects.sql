-- The example feature a SaaS team copies: a tenant-owned table, no references into control.
create table projects (
    id uuid primary key default gen_random_uuid(),
    name text not null,
    description text,
    created_by uuid,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint projects_name_check check (char_length(name) between 1 and 200)
);

create index projects_created_at_id_idx on projects (created_at, id);
