//! Live usage: totals travel between replicas by `NOTIFY usage` and reach each tenant's
//! subscribers through a bounded per-tenant broadcast (a slow subscriber skips, never buffers).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::NaiveDate;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use super::meter::Totals;

/// Updates kept for a subscriber that has not read yet; older ones are skipped.
const BACKLOG: usize = 4;
/// PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7_900;

pub struct LiveHub {
    channels: Mutex<HashMap<Uuid, broadcast::Sender<Totals>>>,
    shutdown: watch::Sender<bool>,
}

impl Default for LiveHub {
    fn default() -> Self {
        Self { channels: Mutex::default(), shutdown: watch::Sender::new(false) }
    }
}

impl LiveHub {
    /// Receives the tenant's totals after every flush anywhere in the cluster.
    pub fn subscribe(&self, tenant: Uuid) -> broadcast::Receiver<Totals> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.entry(tenant).or_insert_with(|| broadcast::channel(BACKLOG).0).subscribe()
    }

    /// Hands totals to the subscribers of each tenant; forgets tenants nobody watches any more.
    pub fn publish(&self, totals: &[(Uuid, Totals)]) -> usize {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let mut delivered = 0;
        for (tenant, t) in totals {
            if let Some(sender) = channels.get(tenant) {
                match sender.send(*t) {
                    Ok(receivers) => delivered += receivers,
                    Err(_) => {
                        channels.remove(tenant);
                    }
                }
            }
        }
        delivered
    }

    /// Tenants with at least one open subscription channel.
    pub fn watched(&self) -> usize {
        self.channels.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Asks every open websocket to close (the server is stopping).
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once the server is stopping.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

/// `NOTIFY usage` payloads for a flush's totals: `<day>;<tenant>:<today>:<month>,…`, split so
/// each stays under PostgreSQL's payload limit.
pub fn encode(day: NaiveDate, totals: &[(Uuid, Totals)]) -> Vec<String> {
    let head = format!("{day};");
    let mut payloads = Vec::new();
    let mut current = head.clone();
    for (tenant, t) in totals.iter().filter(|(_, t)| t.day == day) {
        let entry = format!("{}:{}:{}", tenant.simple(), t.today, t.month);
        if current.len() + entry.len() + 1 > MAX_PAYLOAD {
            payloads.push(std::mem::replace(&mut current, head.clone()));
        }
        if current.len() > head.len() {
            current.push(',');
        }
        current.push_str(&entry);
    }
    if current.len() > head.len() {
        payloads.push(current);
    }
    payloads
}

/// Reads a payload made by `encode`; `None` if it is not one.
pub fn decode(payload: &str) -> Option<Vec<(Uuid, Totals)>> {
    let (day, entries) = payload.split_once(';')?;
    let day: NaiveDate = day.parse().ok()?;
    entries
        .split(',')
        .map(|entry| {
            let mut parts = entry.split(':');
            let tenant = parts.next()?.parse().ok()?;
            let today = parts.next()?.parse().ok()?;
            let month = parts.next()?.parse().ok()?;
            parts.next().is_none().then_some((tenant, Totals { day, today, month }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_of_a_thousand_tenants_round_trip_in_payloads_under_the_notify_limit() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        let totals: Vec<_> =
            (0..1000).map(|i| (Uuid::new_v4(), Totals { day, today: i, month: i64::MAX - i })).collect();
        let payloads = encode(day, &totals);
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() < 8000));
        let decoded: Vec<_> = payloads.iter().flat_map(|p| decode(p).unwrap()).collect();
        assert_eq!(decoded, totals);
        assert_eq!(decode("garbage"), None);
        assert_eq!(decode("2026-11-28;x:1:2"), None);
    }

    #[tokio::test]
    async fn a_subscriber_gets_its_own_tenants_totals_and_a_slow_one_skips_old_ones() {
        let hub = LiveHub::default();
        let day = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut rx = hub.subscribe(a);
        for i in 0..10 {
            hub.publish(&[
                (a, Totals { day, today: i, month: i }),
                (b, Totals { day, today: 99, month: 99 }),
            ]);
        }
        assert!(matches!(rx.recv().await, Err(broadcast::error::RecvError::Lagged(6))));
        assert_eq!(rx.recv().await.unwrap().today, 6);
        drop(rx);
        hub.publish(&[(a, Totals { day, today: 1, month: 1 })]);
        assert_eq!(hub.watched(), 0, "a tenant nobody watches is forgotten");
    }
}
