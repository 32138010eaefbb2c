//! GraphQL: `health`.

use async_graphql::{Context, Object, SimpleObject};

use crate::request::context::RequestCtx;

#[derive(SimpleObject)]
pub struct Health {
    /// `healthy` or `unhealthy`.
    status: String,
    version: String,
    uptime_seconds: u64,
    database_latency_ms: Option<f64>,
}

#[derive(Default)]
pub struct HealthQuery;

#[Object]
impl HealthQuery {
    /// Liveness of the API and its database; needs no credentials.
    async fn health(&self, ctx: &Context<'_>) -> async_graphql::Result<Health> {
        let rc = ctx.data::<RequestCtx>()?;
        let state = &rc.state;
        let _turn = rc.connection_turn().await?;
        let latency = crate::health::database_latency(state).await;
        Ok(Health {
            status: if latency.is_some() { "healthy" } else { "unhealthy" }.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_seconds: state.started_at.elapsed().as_secs(),
            database_latency_ms: latency.map(|d| d.as_secs_f64() * 1000.0),
        })
    }
}
