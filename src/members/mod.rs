//! Membership: which users belong to which tenant, with what role.

pub mod repo;

use std::time::Duration;

use moka::future::Cache;
use uuid::Uuid;

use crate::error::AppError;

/// A member's role in a tenant, from most to least privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, async_graphql::Enum)]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl Role {
    pub fn as_db(self) -> &'static str {
        match self {
            Self::Owner => "OWNER",
            Self::Admin => "ADMIN",
            Self::Member => "MEMBER",
            Self::Viewer => "VIEWER",
        }
    }

    pub fn from_db(raw: &str) -> Option<Self> {
        match raw {
            "OWNER" => Some(Self::Owner),
            "ADMIN" => Some(Self::Admin),
            "MEMBER" => Some(Self::Member),
            "VIEWER" => Some(Self::Viewer),
            _ => None,
        }
    }
}

/// Caches `(tenant, user) → role` (absent: not a member) for the per-request access check.
#[derive(Clone)]
pub struct MemberCache(Cache<(Uuid, Uuid), Option<Role>>);

impl MemberCache {
    pub fn new(ttl: Duration) -> Self {
        Self(Cache::builder().max_capacity(100_000).time_to_live(ttl).build())
    }

    /// The user's role in the tenant; concurrent misses for one key share a single query.
    pub async fn role(
        &self,
        pool: &deadpool_postgres::Pool,
        tenant_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<Role>, AppError> {
        self.0
            .try_get_with((tenant_id, user_id), async {
                let client = pool.get().await?;
                repo::find_role(&client, tenant_id, user_id).await
            })
            .await
            .map_err(|err| AppError::internal(anyhow::anyhow!("membership lookup: {:?}", err)))
    }

    pub async fn forget(&self, tenant_id: Uuid, user_id: Uuid) {
        self.0.invalidate(&(tenant_id, user_id)).await;
    }
}
