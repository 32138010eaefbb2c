//! Guards: declarative access rules on fields.

use async_graphql::{Context, Guard};

use super::context::RequestCtx;
use crate::error::AppError;
use crate::members::Role;

/// Requires a member of the request's tenant whose role is `min` or more privileged.
pub struct RoleGuard {
    min: Role,
}

impl RoleGuard {
    pub fn at_least(min: Role) -> Self {
        Self { min }
    }
}

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let role = ctx.data::<RequestCtx>()?.role().await?;
        // Roles are ordered from most (Owner) to least (Viewer) privileged.
        if role <= self.min {
            Ok(())
        } else {
            Err(
                AppError::Forbidden("your role in this tenant does not allow this operation")
                    .into(),
            )
        }
    }
}
