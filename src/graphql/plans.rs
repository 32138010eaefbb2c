//! GraphQL: `plans`, and the `Plan` type.

use std::sync::Arc;

use async_graphql::{Context, Object, SimpleObject};

use crate::graphql::scalars::BigInt;
use crate::plans::Plan;
use crate::request::context::RequestCtx;

/// A plan's limits; `null` means unlimited.
#[derive(SimpleObject)]
pub struct PlanLimits {
    max_members: Option<BigInt>,
    max_storage_bytes: Option<BigInt>,
    /// Per calendar month.
    max_api_requests: Option<BigInt>,
    requests_per_second: Option<BigInt>,
}

/// A plan a tenant can be on.
pub struct PlanObject(pub Arc<Plan>);

#[Object(name = "Plan")]
impl PlanObject {
    async fn id(&self) -> &str {
        &self.0.id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn price_cents(&self) -> BigInt {
        BigInt(self.0.price_cents)
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    /// `month` or `year`.
    async fn interval(&self) -> &str {
        &self.0.interval
    }
    async fn limits(&self) -> PlanLimits {
        let l = self.0.limits;
        PlanLimits {
            max_members: l.max_members.map(BigInt),
            max_storage_bytes: l.max_storage_bytes.map(BigInt),
            max_api_requests: l.max_api_requests.map(BigInt),
            requests_per_second: l.requests_per_second.map(BigInt),
        }
    }
    /// Feature flags, e.g. `api_access`, `custom_domain`.
    async fn features(&self) -> Vec<&'static str> {
        self.0.features.iter().map(|f| f.as_str()).collect()
    }
}

#[derive(Default)]
pub struct PlanQuery;

#[Object]
impl PlanQuery {
    /// The plans on offer, cheapest first as listed in the catalog.
    async fn plans(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<PlanObject>> {
        let rc = ctx.data::<RequestCtx>()?;
        Ok(rc.state.plans.all().cloned().map(PlanObject).collect())
    }
}
