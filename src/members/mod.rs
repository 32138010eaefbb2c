//! Membership: which users belong to which tenant, with what role; invitations to join.

pub mod repo;

use std::time::Duration;

use moka::future::Cache;
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::db::TenantTx;
use crate::db::notify::{MEMBER_CHANGED, publish};
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

    /// Reads a stored role. An unknown value is an error, never a guess: the code fails closed.
    pub fn from_db(raw: &str) -> Result<Self, AppError> {
        match raw {
            "OWNER" => Ok(Self::Owner),
            "ADMIN" => Ok(Self::Admin),
            "MEMBER" => Ok(Self::Member),
            "VIEWER" => Ok(Self::Viewer),
            other => Err(AppError::internal(anyhow::anyhow!("unknown role {other:?} in the database"))),
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

    pub fn clear(&self) {
        self.0.invalidate_all();
    }
}

/// Why a membership change was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum MemberChangeError {
    NotAMember,
    /// An ADMIN tried to change or remove an OWNER, or to make someone OWNER.
    OwnerProtected,
    /// The change would leave the tenant without an OWNER.
    LastOwner,
}

impl From<MemberChangeError> for AppError {
    fn from(err: MemberChangeError) -> Self {
        match err {
            MemberChangeError::NotAMember => AppError::NotFound("member"),
            MemberChangeError::OwnerProtected => {
                AppError::Forbidden("only an OWNER can change, remove or appoint an OWNER")
            }
            MemberChangeError::LastOwner => AppError::Forbidden(
                "the last OWNER cannot be removed or demoted; make another member OWNER first",
            ),
        }
    }
}

/// The acting member: who they are and their role.
#[derive(Debug, Clone, Copy)]
pub struct Acting {
    pub actor: Actor,
    pub role: Role,
}

/// Checks a change of `target`'s role to `new_role` (`None`: removal) against the rules.
fn check_change(
    roles: &[(Uuid, Role)],
    acting: Acting,
    target: Uuid,
    new_role: Option<Role>,
) -> Result<Role, MemberChangeError> {
    let current =
        roles.iter().find(|(id, _)| *id == target).map(|(_, r)| *r).ok_or(MemberChangeError::NotAMember)?;
    let touches_owner = current == Role::Owner || new_role == Some(Role::Owner);
    if touches_owner && acting.role != Role::Owner {
        return Err(MemberChangeError::OwnerProtected);
    }
    let owners = roles.iter().filter(|(_, r)| *r == Role::Owner).count();
    if current == Role::Owner && new_role != Some(Role::Owner) && owners == 1 {
        return Err(MemberChangeError::LastOwner);
    }
    Ok(current)
}

/// What else must end, in the same transaction, when a member is demoted or removed: the
/// credentials they created beyond their new role. Defined here, implemented by the feature that
/// owns those credentials (`api_keys::RevokeKeys`), so membership imports nothing above it.
pub trait OnMemberChange {
    /// `role`: the member's new role, `None` when they were removed. Returns what ended (API key
    /// prefixes), for the answer.
    fn member_changed(
        &self,
        tx: &mut TenantTx,
        tenant_id: Uuid,
        actor: Actor,
        member: Uuid,
        role: Option<Role>,
    ) -> impl Future<Output = Result<Vec<String>, AppError>> + Send;
}

/// Changes a member's role, with its audit entry, in the tenant transaction; `then` ends what
/// the member created beyond the new role (API keys), and its answer is returned.
pub async fn change_role(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    acting: Acting,
    target: Uuid,
    role: Role,
    then: &impl OnMemberChange,
) -> Result<Vec<String>, AppError> {
    let roles = repo::lock_roles(tx, tenant_id).await?;
    let previous = check_change(&roles, acting, target, Some(role))?;
    repo::set_role(tx, tenant_id, target, role).await?;
    let details = serde_json::json!({ "from": previous.as_db(), "to": role.as_db() });
    audit::record(tx, acting.actor, "member.role_changed", "user", &target.to_string(), details).await?;
    let revoked = then.member_changed(tx, tenant_id, acting.actor, target, Some(role)).await?;
    publish(tx.control(), MEMBER_CHANGED, &format!("{tenant_id}:{target}")).await?;
    Ok(revoked)
}

/// Removes a member, with its audit entry, in the tenant transaction; `then` ends what the
/// member created (API keys), and its answer is returned.
pub async fn remove(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    acting: Acting,
    target: Uuid,
    then: &impl OnMemberChange,
) -> Result<Vec<String>, AppError> {
    let roles = repo::lock_roles(tx, tenant_id).await?;
    let previous = check_change(&roles, acting, target, None)?;
    repo::delete(tx, tenant_id, target).await?;
    let details = serde_json::json!({ "role": previous.as_db() });
    audit::record(tx, acting.actor, "member.removed", "user", &target.to_string(), details).await?;
    let revoked = then.member_changed(tx, tenant_id, acting.actor, target, None).await?;
    publish(tx.control(), MEMBER_CHANGED, &format!("{tenant_id}:{target}")).await?;
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: Uuid = Uuid::from_u128(1);
    const ADMIN: Uuid = Uuid::from_u128(2);
    const MEMBER: Uuid = Uuid::from_u128(3);

    fn roles() -> Vec<(Uuid, Role)> {
        vec![(OWNER, Role::Owner), (ADMIN, Role::Admin), (MEMBER, Role::Member)]
    }

    fn acting(id: Uuid, role: Role) -> Acting {
        Acting { actor: Actor::User(id), role }
    }

    #[test]
    fn an_unknown_stored_role_is_an_error_not_the_least_privileged_role() {
        assert_eq!(Role::from_db("ADMIN").unwrap(), Role::Admin);
        assert_eq!(Role::from_db("SUPERUSER").unwrap_err().code(), "INTERNAL");
    }

    #[test]
    fn the_rules_protect_owners_and_the_last_owner() {
        let admin = acting(ADMIN, Role::Admin);
        let owner = acting(OWNER, Role::Owner);
        assert_eq!(check_change(&roles(), admin, MEMBER, Some(Role::Viewer)), Ok(Role::Member));
        assert_eq!(check_change(&roles(), admin, OWNER, None), Err(MemberChangeError::OwnerProtected));
        assert_eq!(
            check_change(&roles(), admin, MEMBER, Some(Role::Owner)),
            Err(MemberChangeError::OwnerProtected)
        );
        assert_eq!(
            check_change(&roles(), owner, OWNER, Some(Role::Admin)),
            Err(MemberChangeError::LastOwner)
        );
        assert_eq!(check_change(&roles(), owner, OWNER, None), Err(MemberChangeError::LastOwner));
        assert_eq!(check_change(&roles(), owner, MEMBER, Some(Role::Owner)), Ok(Role::Member));
        assert_eq!(
            check_change(&roles(), owner, Uuid::from_u128(9), None),
            Err(MemberChangeError::NotAMember)
        );
    }
}
