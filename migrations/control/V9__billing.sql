-- Stripe billing: each tenant's subscription state, and the Stripe events already applied.
create table control.billing (
    tenant_id uuid primary key references control.tenants (id) on delete cascade,
    subscription_id text,
    -- Stripe's subscription status, or 'none' before the first subscription.
    status text not null default 'none',
    current_period_end timestamptz,
    cancel_at_period_end boolean not null default false,
    -- When the first failed payment of the current dunning run happened.
    past_due_since timestamptz,
    -- Set when billing (not an operator) suspended the tenant, so a payment may restore it.
    suspended_by_billing boolean not null default false,
    -- `created` of the newest event applied: older events arriving later are ignored.
    last_event_at timestamptz,
    updated_at timestamptz not null default now(),
    constraint billing_status_check check (status in (
        'none', 'active', 'trialing', 'past_due', 'unpaid', 'canceled', 'incomplete',
        'incomplete_expired', 'paused'))
);

create index billing_past_due_idx on control.billing (past_due_since) where past_due_since is not null;

create table control.stripe_events (
    id text primary key,
    type text not null,
    created timestamptz not null,
    outcome text not null,
    received_at timestamptz not null default now()
);

create unique index tenants_stripe_customer_id_key on control.tenants (stripe_customer_id)
    where stripe_customer_id is not null;
