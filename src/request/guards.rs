//! Guards: declarative access rules on fields.

use async_graphql::{Context, Guard};

use super::context::RequestCtx;
use crate::error::AppError;
use crate::members::Role;
use crate::plans::Feature;

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
        let rc = ctx.data::<RequestCtx>()?;
        rc.need_role(self.min);
        let role = rc.role().await?;
        // Roles are ordered from most (Owner) to least (Viewer) privileged.
        if role <= self.min {
            Ok(())
        } else {
            Err(AppError::Forbidden("your role in this tenant does not allow this operation").into())
        }
    }
}

/// Requires the request's tenant to be on a plan with `feature` (when `active`).
pub struct FeatureGuard {
    feature: Feature,
    active: bool,
}

impl FeatureGuard {
    pub fn new(feature: Feature) -> Self {
        Self { feature, active: true }
    }

    /// Applies the guard only when `active`, e.g. only when a gated argument is given.
    pub fn only_if(self, active: bool) -> Self {
        Self { active, ..self }
    }
}

impl Guard for FeatureGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        if !self.active {
            return Ok(());
        }
        let rc = ctx.data::<RequestCtx>()?;
        rc.need_feature(self.feature);
        Ok(rc.tenant()?.require(self.feature, &rc.state.plans)?)
    }
}
