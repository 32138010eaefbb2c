//! The audit log, in each tenant's schema: who did what to whom, and when.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::db::rows::Columns;
use crate::error::AppError;

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    User(Uuid),
    ApiKey(Uuid),
    /// An operator command or the server itself.
    System,
}

impl Actor {
    fn parts(self) -> (Option<Uuid>, &'static str) {
        match self {
            Self::User(id) => (Some(id), "user"),
            Self::ApiKey(id) => (Some(id), "api_key"),
            Self::System => (None, "system"),
        }
    }

    /// The acting user, if a user (not an API key) acted.
    pub fn user_id(self) -> Option<Uuid> {
        match self {
            Self::User(id) => Some(id),
            Self::ApiKey(_) | Self::System => None,
        }
    }
}

/// Records `action` on `target_type`/`target_id` in the same transaction as the change itself.
pub async fn record(
    tx: &mut TenantTx,
    actor: Actor,
    action: &str,
    target_type: &str,
    target_id: &str,
    details: Value,
) -> Result<(), AppError> {
    let (actor_id, actor_kind) = actor.parts();
    tx.execute(
        "insert into audit_log (actor_id, actor_kind, action, target_type, target_id, details)
         values ($1, $2, $3, $4, $5, $6)",
        &[&actor_id, &actor_kind, &action, &target_type, &target_id, &details],
    )
    .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub id: i64,
    pub actor_id: Option<Uuid>,
    pub actor_kind: String,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub details: Value,
    pub created_at: DateTime<Utc>,
}

/// Newest first; `before` is the id of the last entry of the previous page.
pub async fn page(tx: &mut TenantTx, first: i64, before: Option<i64>) -> Result<Vec<Entry>, AppError> {
    let rows = tx
        .query(
            "select id, actor_id, actor_kind, action, target_type, target_id, details, created_at
             from audit_log where $2::bigint is null or id < $2 order by id desc limit $1",
            &[&first, &before],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let c = Columns::of(r, "audit::page");
            Ok(Entry {
                id: c.try_get("id")?,
                actor_id: c.try_get("actor_id")?,
                actor_kind: c.try_get("actor_kind")?,
                action: c.try_get("action")?,
                target_type: c.try_get("target_type")?,
                target_id: c.try_get("target_id")?,
                details: c.try_get("details")?,
                created_at: c.try_get("created_at")?,
            })
        })
        .collect()
}
