//! What exists once per process, however many applications it builds (the test binary builds
//! ~150): the metrics recorder — the `metrics` facade has one global recorder — and an allocator
//! setting. Everything else belongs to one application.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::telemetry::metrics::{BUCKETS, describe, resolve_handles};

/// The Prometheus recorder, installed on first use; every application renders `/metrics` from it.
pub fn metrics_recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
            .expect("non-empty buckets")
            .install_recorder()
            .expect("the only metrics recorder in this process");
        describe();
        resolve_handles();
        handle
    })
}

/// Makes glibc serve every allocation of 1 MiB or more (argon2's 19 MiB block array) straight
/// from `mmap` and give it back with `munmap` when freed. By default glibc raises that threshold
/// after the first such free, and the arrays then come from its per-thread arenas, which keep
/// them: measured, a flood of sign-ins left 7 arenas of ~57 MiB (+350 MiB) resident for good.
pub fn return_large_blocks_at_once() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::sync::Once;
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            // SAFETY: `mallopt` only changes an allocator tunable; it is thread-safe in glibc
            // and takes plain integers.
            #[allow(unsafe_code, reason = "a libc call; no safe wrapper for mallopt")]
            let ok = unsafe { nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 1 << 20) };
            if ok != 1 {
                tracing::warn!(
                    "could not set the allocator's mmap threshold; memory may stay high after a sign-in flood"
                );
            }
        });
    }
}
