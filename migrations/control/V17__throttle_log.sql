-- Throttles as sliding windows: per bucket and key, the times of the hits admitted within the
-- last window (at most the limit of them), updated by one atomic upsert, so every replica sees
-- one log and no span of one window's length admits more than the limit — fixed windows let
-- twice the limit through across a boundary. Keys are SHA-256 digests, as in throttle_hits
-- (left in place for replicas of the previous release during a rolling deploy; drop it in a
-- later release).
create table control.throttle_log (
    bucket text not null,
    key_hash bytea not null,
    hits timestamptz[] not null,
    expires_at timestamptz not null,
    constraint throttle_log_pkey primary key (bucket, key_hash)
);

create index throttle_log_expires_at_idx on control.throttle_log (expires_at);
