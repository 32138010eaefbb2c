-- The background job queue (src/jobs). A job row is inserted in the transaction of its cause,
-- so it exists only if that committed. Workers claim `queued` rows with FOR UPDATE SKIP LOCKED
-- and hold them under a lease (`locked_until`); an expired lease puts the job back in the queue.
create table control.jobs (
    id uuid primary key,
    kind text not null,
    -- The tenant the job works for; its tenant data is reached only through that tenant's
    -- TenantTx. No foreign key: a job for a purged tenant ends cleanly instead of vanishing.
    tenant_id uuid,
    payload jsonb not null default '{}',
    -- Encrypted part of the payload (tokens, addresses): AES-GCM with the keyring, bound to the id.
    sealed bytea,
    state text not null default 'queued',
    run_at timestamptz not null default now(),
    attempts integer not null default 0,
    max_attempts integer not null default 5,
    locked_by text,
    locked_until timestamptz,
    last_error text,
    -- At most one queued job per key (e.g. one storage recomputation per tenant).
    unique_key text,
    created_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz,
    constraint jobs_state_check check (state in ('queued', 'running', 'done', 'dead', 'cancelled')),
    constraint jobs_attempts_check check (attempts >= 0 and max_attempts >= 1)
);

create index jobs_ready on control.jobs (run_at) where state = 'queued';
create index jobs_leased on control.jobs (locked_until) where state = 'running';
create index jobs_finished on control.jobs (finished_at) where state in ('done', 'cancelled');
create index jobs_dead on control.jobs (finished_at) where state = 'dead';
create unique index jobs_unique_queued on control.jobs (unique_key) where state = 'queued';

-- Recurring jobs: one row per schedule. The worker that locks a due row (SKIP LOCKED) enqueues
-- its job and moves `next_run_at` to the next period in one statement: once per period, cluster-wide.
create table control.recurring_jobs (
    name text primary key,
    kind text not null,
    period_secs integer not null,
    next_run_at timestamptz not null default now(),
    constraint recurring_jobs_period_check check (period_secs >= 1)
);
