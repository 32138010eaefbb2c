//! GraphQL: `members`, `invitations`, `inviteMember`, `acceptInvitation`, `revokeInvitation`,
//! `resendInvitation`, `changeMemberRole`, `removeMember`.

use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::api_keys::RevokeKeys;
use crate::auth::email::EmailAddress;
use crate::auth::repo as users;
use crate::db::TenantTx;
use crate::error::AppError;
use crate::graphql::tenancy::TenantObject;
use crate::invitations::{self, AcceptError, Invitation, Invited};
use crate::mail::{Message, outbox};
use crate::members::{Acting, Role, repo};
use crate::request::context::RequestCtx;
use crate::request::guards::RoleGuard;
use crate::state::AppState;

#[derive(SimpleObject)]
#[graphql(name = "Member")]
pub struct MemberObject {
    user_id: ID,
    email: String,
    name: String,
    role: Role,
    joined_at: DateTime<Utc>,
}

impl From<repo::Member> for MemberObject {
    fn from(m: repo::Member) -> Self {
        Self {
            user_id: ID(m.user_id.to_string()),
            email: m.email,
            name: m.name,
            role: m.role,
            joined_at: m.joined_at,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Invitation")]
pub struct InvitationObject {
    id: ID,
    email: String,
    role: Role,
    invited_by: Option<ID>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    /// Past `expiresAt`: the link no longer works; resend or revoke it.
    expired: bool,
}

impl From<Invitation> for InvitationObject {
    fn from(i: Invitation) -> Self {
        Self {
            id: ID(i.id.to_string()),
            expired: i.expires_at <= Utc::now(),
            email: i.email,
            role: i.role,
            invited_by: i.invited_by.map(|id| ID(id.to_string())),
            created_at: i.created_at,
            expires_at: i.expires_at,
        }
    }
}

fn parse_id(raw: &ID, what: &'static str) -> Result<Uuid, AppError> {
    raw.parse().map_err(|_| AppError::NotFound(what))
}

/// The caller as an acting member (after the guard has established the role).
async fn acting(rc: &RequestCtx) -> Result<Acting, AppError> {
    Ok(Acting { actor: rc.actor()?, role: rc.role().await? })
}

/// Enqueues the invitation mail in the transaction that issued its token.
async fn mail_invitation(
    state: &AppState,
    tx: &mut TenantTx,
    invitation: &Invitation,
    tenant_name: &str,
    token: String,
) -> Result<(), AppError> {
    let link = format!("{}/accept-invitation?token={token}", state.public_url);
    let text = format!(
        "You are invited to join {tenant_name} as {}.\n\nAccept within 7 days:\n{link}\n",
        invitation.role.as_db()
    );
    let subject = format!("You are invited to join {tenant_name}");
    let message = Message { to: invitation.email.clone(), subject, text, link, token };
    outbox::enqueue(tx.control(), &state.keys, Some(invitation.tenant_id), &message).await
}

/// Revoked keys stop working in this process now (other replicas hear `api_key_changed`).
async fn forget_keys(state: &AppState, prefixes: &[String]) {
    for prefix in prefixes {
        state.api_keys.forget(prefix).await;
    }
}

#[derive(Default)]
pub struct MemberQuery;

#[Object]
impl MemberQuery {
    /// Members of the request's tenant.
    #[graphql(guard = "RoleGuard::at_least(Role::Viewer)")]
    async fn members(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<MemberObject>> {
        let rc = ctx.data::<RequestCtx>()?;
        let client = rc.connection().await?;
        let members = repo::list(&*client, rc.tenant()?.tenant.id).await?;
        Ok(members.into_iter().map(Into::into).collect())
    }

    /// Pending invitations of the request's tenant.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn invitations(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<InvitationObject>> {
        let rc = ctx.data::<RequestCtx>()?;
        let client = rc.connection().await?;
        let pending = invitations::list_pending(&*client, rc.tenant()?.tenant.id).await?;
        Ok(pending.into_iter().map(Into::into).collect())
    }
}

#[derive(Default)]
pub struct MemberMutation;

#[Object]
impl MemberMutation {
    /// Invites someone by email; they get a link valid for 7 days. Inviting an address that
    /// already has a pending invitation returns that invitation (no duplicate, no new mail).
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn invite_member(
        &self,
        ctx: &Context<'_>,
        email: String,
        role: Role,
    ) -> async_graphql::Result<InvitationObject> {
        let email = EmailAddress::parse(&email)?;
        let rc = ctx.data::<RequestCtx>()?;
        rc.spend_costly("inviteMember")?;
        let access = rc.tenant()?;
        let acting = acting(rc).await?;
        let mut tx = rc.tenant_tx().await?;
        let invitation = match invitations::invite(&mut tx, access, acting, &email, role).await? {
            Invited::AlreadyPending(invitation) => invitation,
            Invited::New { invitation, token } => {
                mail_invitation(&rc.state, &mut tx, &invitation, &access.tenant.name, token).await?;
                invitation
            }
        };
        tx.commit().await?;
        Ok(invitation.into())
    }

    /// Joins the tenant of an invitation sent to the signed-in user's email address.
    async fn accept_invitation(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] token: String,
    ) -> async_graphql::Result<TenantObject> {
        let rc = ctx.data::<RequestCtx>()?;
        let user_id = rc.user_id()?;
        let state = &rc.state;
        let client = state.pool.get().await.map_err(AppError::from)?;
        let invitation =
            invitations::find_by_token(&client, &token).await?.ok_or(AppError::from(AcceptError::Unknown))?;
        let user = users::require(&client, user_id).await?;
        drop(client);
        invitations::check_acceptable(&invitation, &user.email, Utc::now()).map_err(AppError::from)?;
        let access = state
            .access
            .get(&state.pool, &state.plans, invitation.tenant_id)
            .await?
            .ok_or(AppError::from(AcceptError::Unknown))?;
        access.tenant.check_open(Utc::now())?;
        // Not a member yet, so not through `RequestCtx::tenant_tx`: the invitation grants this one.
        let mut tx = TenantTx::begin(&state.tenant_pool, &access.tenant.schema).await?;
        invitations::accept(&mut tx, &invitation, user_id).await?;
        tx.commit().await?;
        state.members.forget(invitation.tenant_id, user_id).await;
        Ok(TenantObject::new(access, Some(invitation.role)))
    }

    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn revoke_invitation(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<InvitationObject> {
        let id = parse_id(&id, "pending invitation")?;
        let rc = ctx.data::<RequestCtx>()?;
        let acting = acting(rc).await?;
        let mut tx = rc.tenant_tx().await?;
        let invitation = invitations::revoke(&mut tx, rc.tenant()?.tenant.id, acting, id).await?;
        tx.commit().await?;
        Ok(invitation.into())
    }

    /// Mails a new link for a pending invitation; the previous link stops working.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn resend_invitation(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<InvitationObject> {
        let id = parse_id(&id, "pending invitation")?;
        let rc = ctx.data::<RequestCtx>()?;
        rc.spend_costly("resendInvitation")?;
        let access = rc.tenant()?;
        let acting = acting(rc).await?;
        let mut tx = rc.tenant_tx().await?;
        let (invitation, token) = invitations::resend(&mut tx, access.tenant.id, acting, id).await?;
        mail_invitation(&rc.state, &mut tx, &invitation, &access.tenant.name, token).await?;
        tx.commit().await?;
        Ok(invitation.into())
    }

    /// Changes a member's role. OWNER and ADMIN; only an OWNER can touch or appoint an OWNER,
    /// and the last OWNER cannot be demoted. API keys the member created with a role above the
    /// new one are revoked.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn change_member_role(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        role: Role,
    ) -> async_graphql::Result<MemberObject> {
        let target = parse_id(&user_id, "member")?;
        let rc = ctx.data::<RequestCtx>()?;
        let tenant_id = rc.tenant()?.tenant.id;
        let acting = acting(rc).await?;
        let mut tx = rc.tenant_tx().await?;
        let revoked =
            crate::members::change_role(&mut tx, tenant_id, acting, target, role, &RevokeKeys).await?;
        tx.commit().await?;
        rc.state.members.forget(tenant_id, target).await;
        forget_keys(&rc.state, &revoked).await;
        let client = rc.state.pool.get().await.map_err(AppError::from)?;
        Ok(repo::find(&client, tenant_id, target).await?.ok_or(AppError::NotFound("member"))?.into())
    }

    /// Removes a member. OWNER and ADMIN; only an OWNER can remove an OWNER, never the last one.
    /// The API keys the member created are revoked.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn remove_member(&self, ctx: &Context<'_>, user_id: ID) -> async_graphql::Result<ID> {
        let target = parse_id(&user_id, "member")?;
        let rc = ctx.data::<RequestCtx>()?;
        let tenant_id = rc.tenant()?.tenant.id;
        let acting = acting(rc).await?;
        let mut tx = rc.tenant_tx().await?;
        let revoked = crate::members::remove(&mut tx, tenant_id, acting, target, &RevokeKeys).await?;
        tx.commit().await?;
        rc.state.members.forget(tenant_id, target).await;
        forget_keys(&rc.state, &revoked).await;
        Ok(user_id)
    }
}
