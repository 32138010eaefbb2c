//! The open websockets of this process: how many per client IP and per tenant (bounded), and
//! who each belongs to, so that a change heard on the NOTIFY bus (a tenant suspended, a member
//! removed or demoted, an API key revoked, a plan changed) reaches the sockets it concerns.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use uuid::Uuid;

use crate::request::context::Caller;

pub struct LiveSockets {
    max_per_ip: usize,
    max_per_tenant: usize,
    inner: Mutex<Inner>,
    /// Subscriptions ended since the allocator was last asked to hand free memory back.
    released: AtomicUsize,
}

/// After this many subscriptions have ended, free memory is handed back to the OS.
const TRIM_AFTER: usize = 1_000;

#[derive(Default)]
struct Inner {
    next_id: u64,
    per_ip: HashMap<IpAddr, usize>,
    per_tenant: HashMap<Uuid, usize>,
    sockets: HashMap<u64, Socket>,
}

struct Socket {
    ip: Option<IpAddr>,
    /// Set once `connection_init` is accepted.
    owner: Option<Owner>,
    recheck: Arc<Notify>,
}

#[derive(Clone, Copy)]
struct Owner {
    tenant: Uuid,
    /// The user, for a signed-in caller; `None` for an API key.
    user: Option<Uuid>,
}

/// Sockets of an IPv6 client count per /64 (one subscriber usually holds a whole /64).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

impl LiveSockets {
    pub fn new(max_per_ip: usize, max_per_tenant: usize) -> Self {
        Self { max_per_ip, max_per_tenant, inner: Mutex::default(), released: AtomicUsize::new(0) }
    }

    /// A socket that held up to `subscriptions` at once closed. Its memory is free, but glibc
    /// keeps freed memory in its arenas (measured: +91 MiB resident after 5,000 subscriptions on
    /// one socket had closed; +1 to 2 MiB with this); once `TRIM_AFTER` subscriptions have ended, it is asked to return
    /// it, a second later (when the socket's buffers are gone too), once for a burst of closes.
    pub fn released(&self, subscriptions: usize) {
        let total = self.released.fetch_add(subscriptions, Ordering::Relaxed) + subscriptions;
        if total < TRIM_AFTER || self.released.swap(0, Ordering::Relaxed) < TRIM_AFTER {
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        tokio::spawn(async {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let _ = tokio::task::spawn_blocking(|| {
                // SAFETY: `malloc_trim` only releases free memory of glibc's own arenas; it takes
                // their locks and is safe to call from any thread.
                #[allow(unsafe_code, reason = "a libc call; no safe wrapper for malloc_trim")]
                unsafe {
                    nix::libc::malloc_trim(0);
                }
            })
            .await;
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new socket from `ip`, or the reason it is refused (too many from that client).
    pub fn open(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Registration, String> {
        let ip = ip.map(client_key);
        let mut inner = self.lock();
        if let Some(ip) = ip {
            let count = inner.per_ip.entry(ip).or_default();
            if *count >= self.max_per_ip {
                let max = self.max_per_ip;
                if *count == 0 {
                    inner.per_ip.remove(&ip);
                }
                return Err(format!(
                    "too many websockets from your address (at most {max}); close one first"
                ));
            }
            *count += 1;
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let recheck = Arc::new(Notify::new());
        inner.sockets.insert(id, Socket { ip, owner: None, recheck: recheck.clone() });
        Ok(Registration { id, sockets: Arc::clone(self), recheck })
    }

    /// Open sockets (for tests and metrics).
    pub fn open_count(&self) -> usize {
        self.lock().sockets.len()
    }

    fn recheck_where(&self, affected: impl Fn(&Owner) -> bool) {
        let inner = self.lock();
        for socket in inner.sockets.values() {
            if socket.owner.as_ref().is_some_and(&affected) {
                socket.recheck.notify_one();
            }
        }
    }

    /// A tenant's status, plan or domain changed: its sockets check their access again.
    pub fn tenant_changed(&self, tenant: Uuid) {
        self.recheck_where(|owner| owner.tenant == tenant);
    }

    /// A membership was added, changed or removed.
    pub fn member_changed(&self, tenant: Uuid, user: Uuid) {
        self.recheck_where(|owner| owner.tenant == tenant && owner.user == Some(user));
    }

    /// An API key was revoked (the notice names its prefix, which sockets do not keep): every
    /// socket opened with a key checks it again.
    pub fn api_key_changed(&self) {
        self.recheck_where(|owner| owner.user.is_none());
    }

    /// Notifications may have been missed (the bus reconnected): every socket checks again.
    pub fn recheck_all(&self) {
        self.recheck_where(|_| true);
    }
}

/// One open socket's place in the registry; dropping it frees the place.
pub struct Registration {
    id: u64,
    sockets: Arc<LiveSockets>,
    recheck: Arc<Notify>,
}

impl Registration {
    /// The socket's `connection_init` was accepted for `caller` in `tenant`; refused (with the
    /// reason) when the tenant has as many sockets as it may.
    pub fn join(&self, tenant: Uuid, caller: &Caller) -> Result<(), String> {
        let user = match caller {
            Caller::User(user) => Some(*user),
            _ => None,
        };
        let max = self.sockets.max_per_tenant;
        let mut inner = self.sockets.lock();
        let count = inner.per_tenant.get(&tenant).copied().unwrap_or_default();
        if count >= max {
            return Err(format!("too many websockets for this tenant (at most {max}); close one first"));
        }
        inner.per_tenant.insert(tenant, count + 1);
        if let Some(socket) = inner.sockets.get_mut(&self.id) {
            socket.owner = Some(Owner { tenant, user });
        }
        Ok(())
    }

    /// Wakes when something the socket's access depends on changed.
    pub fn recheck(&self) -> &Notify {
        &self.recheck
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.sockets.lock();
        let Some(socket) = inner.sockets.remove(&self.id) else { return };
        if let Some(ip) = socket.ip
            && let Some(count) = inner.per_ip.get_mut(&ip)
        {
            *count -= 1;
            if *count == 0 {
                inner.per_ip.remove(&ip);
            }
        }
        if let Some(owner) = socket.owner
            && let Some(count) = inner.per_tenant.get_mut(&owner.tenant)
        {
            *count -= 1;
            if *count == 0 {
                inner.per_tenant.remove(&owner.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_per_ip_and_tenant_and_freed_on_drop() {
        let sockets = Arc::new(LiveSockets::new(2, 1));
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::2".parse().unwrap();
        let a = sockets.open(Some(ip)).unwrap();
        let b = sockets.open(Some(same_64)).unwrap();
        assert!(sockets.open(Some(ip)).is_err(), "a /64 counts as one client");
        let tenant = Uuid::new_v4();
        a.join(tenant, &Caller::User(Uuid::new_v4())).unwrap();
        assert!(b.join(tenant, &Caller::Anonymous).is_err());
        drop(a);
        b.join(tenant, &Caller::Anonymous).unwrap();
        let c = sockets.open(Some(ip)).unwrap();
        drop((b, c));
        let inner = sockets.lock();
        assert!(inner.per_ip.is_empty() && inner.per_tenant.is_empty() && inner.sockets.is_empty());
    }
}
