//! GraphQL: `auditLog` (OWNER and ADMIN), newest first, with a cursor.

use async_graphql::{Context, ID, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};

use crate::error::AppError;
use crate::members::Role;
use crate::request::context::RequestCtx;
use crate::request::guards::RoleGuard;

#[derive(SimpleObject)]
pub struct AuditEntry {
    id: ID,
    /// The user or API key that acted.
    actor_id: Option<ID>,
    /// `user`, `api_key` or `system`.
    actor_kind: String,
    /// e.g. `member.role_changed`, `invitation.sent`, `api_key.created`, `tenant.updated`.
    action: String,
    target_type: String,
    target_id: Option<String>,
    details: Json<serde_json::Value>,
    created_at: DateTime<Utc>,
}

#[derive(SimpleObject)]
pub struct AuditLogPage {
    entries: Vec<AuditEntry>,
    /// Pass as `after` for the next (older) page; null on the last page.
    next_cursor: Option<String>,
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<AuditLogPage> {
        if !(1..=200).contains(&first) {
            return Err(AppError::validation("first", "must be between 1 and 200").into());
        }
        let before = match after {
            Some(cursor) => Some(
                cursor
                    .parse::<i64>()
                    .map_err(|_| AppError::validation("after", "is not a cursor from auditLog"))?,
            ),
            None => None,
        };
        let mut tx = ctx.data::<RequestCtx>()?.tenant_tx().await?;
        let entries = crate::audit::page(&mut tx, i64::from(first) + 1, before).await?;
        tx.commit().await?;
        let more = entries.len() > first as usize;
        let entries: Vec<_> = entries.into_iter().take(first as usize).collect();
        let next_cursor = if more { entries.last().map(|e| e.id.to_string()) } else { None };
        Ok(AuditLogPage {
            entries: entries
                .into_iter()
                .map(|e| AuditEntry {
                    id: ID(e.id.to_string()),
                    actor_id: e.actor_id.map(|id| ID(id.to_string())),
                    actor_kind: e.actor_kind,
                    action: e.action,
                    target_type: e.target_type,
                    target_id: e.target_id,
                    details: Json(e.details),
                    created_at: e.created_at,
                })
                .collect(),
            next_cursor,
        })
    }
}
