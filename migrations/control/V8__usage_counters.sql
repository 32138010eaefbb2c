-- Usage counters: one row per tenant, metric and UTC day; a month is the sum of its days.
-- Replicas add their in-memory counts with one multi-row upsert per flush.
create table control.usage_counters (
    tenant_id uuid not null references control.tenants (id) on delete cascade,
    metric text not null,
    day date not null,
    value bigint not null,
    constraint usage_counters_pkey primary key (tenant_id, metric, day),
    constraint usage_counters_metric_check check (metric in ('api_requests')),
    constraint usage_counters_value_check check (value >= 0)
);

-- Flush batches already applied. A batch whose outcome was lost (connection dropped after the
-- commit) is retried with the same id and then skipped, so it is never counted twice.
create table control.usage_flushes (
    id uuid primary key,
    applied_at timestamptz not null default now()
);

create index usage_flushes_applied_at_idx on control.usage_flushes (applied_at);
