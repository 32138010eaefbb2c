-- Cluster-wide throttles (sign-ups and reset mail, per address and per client IP): one row per
-- bucket, key and fixed window, counted by an atomic upsert, so every replica sees one count.
-- Keys are stored as SHA-256 digests: no email address or IP address sits in this table.
create table control.throttle_hits (
    bucket text not null,
    key_hash bytea not null,
    window_start timestamptz not null,
    expires_at timestamptz not null,
    hits integer not null,
    constraint throttle_hits_pkey primary key (bucket, key_hash, window_start)
);

create index throttle_hits_expires_at_idx on control.throttle_hits (expires_at);
