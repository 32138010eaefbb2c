-- Who did what in this tenant. Actors and targets are ids from the control plane (no foreign keys).
create table audit_log (
    id bigint generated always as identity primary key,
    actor_id uuid,
    actor_kind text not null,
    action text not null,
    target_type text not null,
    target_id text,
    details jsonb not null default '{}',
    created_at timestamptz not null default now(),
    constraint audit_log_actor_kind_check check (actor_kind in ('user', 'api_key', 'system'))
);
