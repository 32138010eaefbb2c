//! Invitations: a pending seat, a mailed single-use link valid for 7 days, accepted by the
//! signed-in user the invitation was sent to.

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::audit;
use crate::auth::email::EmailAddress;
use crate::auth::secret::{hash_secret, new_secret};
use crate::db::TenantTx;
use crate::db::notify::{MEMBER_CHANGED, publish};
use crate::db::rows::Columns;
use crate::error::AppError;
use crate::members::{Acting, Role, repo as members_repo};
use crate::plans::{Resource, TenantAccess};

pub const INVITATION_TTL: Duration = Duration::days(7);

#[derive(Debug, Clone)]
pub struct Invitation {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub role: Role,
    pub invited_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Invitation {
    fn from_row(row: &Row) -> Result<Self, AppError> {
        let c = Columns::of(row, "Invitation::from_row");
        Ok(Self {
            id: c.try_get("id")?,
            tenant_id: c.try_get("tenant_id")?,
            email: c.try_get("email")?,
            role: Role::from_db(c.try_get("role")?)?,
            invited_by: c.try_get("invited_by")?,
            created_at: c.try_get("created_at")?,
            expires_at: c.try_get("expires_at")?,
            accepted_at: c.try_get("accepted_at")?,
            revoked_at: c.try_get("revoked_at")?,
        })
    }
}

/// The outcome of `invite`: a new invitation with the token to mail, or the pending one.
pub enum Invited {
    New { invitation: Invitation, token: String },
    AlreadyPending(Invitation),
}

/// Invites `email` as `role`. Seats (members + pending invitations) are checked against the plan
/// under a lock on the tenant row, so concurrent invitations cannot overshoot.
pub async fn invite(
    tx: &mut TenantTx,
    access: &TenantAccess,
    acting: Acting,
    email: &EmailAddress,
    role: Role,
) -> Result<Invited, AppError> {
    if role == Role::Owner && acting.role != Role::Owner {
        return Err(AppError::Forbidden("only an OWNER can invite another OWNER"));
    }
    let tenant_id = access.tenant.id;
    tx.control().execute("select 1 from control.tenants where id = $1 for update", &[&tenant_id]).await?;
    let member = tx
        .control()
        .query_opt(
            "select 1 from control.memberships m join control.users u on u.id = m.user_id
             where m.tenant_id = $1 and u.email = $2",
            &[&tenant_id, &email.as_str()],
        )
        .await?;
    if member.is_some() {
        return Err(AppError::Conflict { field: "email", message: "this person is already a member".into() });
    }
    let pending = tx
        .control()
        .query_opt(
            "select id, tenant_id, email, role, invited_by, created_at, expires_at, accepted_at, revoked_at from control.invitations
             where tenant_id = $1 and email = $2 and accepted_at is null and revoked_at is null",
            &[&tenant_id, &email.as_str()],
        )
        .await?
        .map(|row| Invitation::from_row(&row))
        .transpose()?;
    match pending {
        Some(existing) if existing.expires_at > Utc::now() => return Ok(Invited::AlreadyPending(existing)),
        // An expired invitation frees its seat and its email; retire it so a new one can exist.
        Some(expired) => {
            tx.control()
                .execute("update control.invitations set revoked_at = now() where id = $1", &[&expired.id])
                .await?;
        }
        None => {}
    }
    let taken = members_repo::seats_taken(tx.control(), tenant_id).await?;
    access.check_room(Resource::Members, taken, 1)?;
    let token = new_secret();
    let row = tx
        .control()
        .query_one(
            "insert into control.invitations (id, tenant_id, email, role, token_hash, invited_by, expires_at)
             values ($1, $2, $3, $4, $5, $6, $7) 
             returning id, tenant_id, email, role, invited_by, created_at, expires_at, accepted_at, revoked_at",
            &[
                &Uuid::new_v4(),
                &tenant_id,
                &email.as_str(),
                &role.as_db(),
                &hash_secret(&token),
                &acting.actor.user_id(),
                &(Utc::now() + INVITATION_TTL),
            ],
        )
        .await?;
    let invitation = Invitation::from_row(&row)?;
    let details = serde_json::json!({ "role": role.as_db() });
    audit::record(tx, acting.actor, "invitation.sent", "invitation", &invitation.id.to_string(), details)
        .await?;
    Ok(Invited::New { invitation, token })
}

/// Replaces a pending invitation's token (the old link stops working) and restarts its 7 days.
pub async fn resend(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    acting: Acting,
    id: Uuid,
) -> Result<(Invitation, String), AppError> {
    let token = new_secret();
    let row = tx
        .control()
        .query_opt(
            "update control.invitations set token_hash = $3, expires_at = $4
             where id = $1 and tenant_id = $2 and accepted_at is null and revoked_at is null 
             returning id, tenant_id, email, role, invited_by, created_at, expires_at, accepted_at, revoked_at",
            &[&id, &tenant_id, &hash_secret(&token), &(Utc::now() + INVITATION_TTL)],
        )
        .await?
        .ok_or(AppError::NotFound("pending invitation"))?;
    audit::record(
        tx,
        acting.actor,
        "invitation.resent",
        "invitation",
        &id.to_string(),
        serde_json::json!({}),
    )
    .await?;
    Ok((Invitation::from_row(&row)?, token))
}

pub async fn revoke(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    acting: Acting,
    id: Uuid,
) -> Result<Invitation, AppError> {
    let row = tx
        .control()
        .query_opt(
            "update control.invitations set revoked_at = now()
             where id = $1 and tenant_id = $2 and accepted_at is null and revoked_at is null 
             returning id, tenant_id, email, role, invited_by, created_at, expires_at, accepted_at, revoked_at",
            &[&id, &tenant_id],
        )
        .await?
        .ok_or(AppError::NotFound("pending invitation"))?;
    audit::record(
        tx,
        acting.actor,
        "invitation.revoked",
        "invitation",
        &id.to_string(),
        serde_json::json!({}),
    )
    .await?;
    Invitation::from_row(&row)
}

/// Pending invitations of a tenant, oldest first.
pub async fn list_pending(db: &impl GenericClient, tenant_id: Uuid) -> Result<Vec<Invitation>, AppError> {
    let rows = db
        .query(
            "select id, tenant_id, email, role, invited_by, created_at, expires_at, accepted_at, revoked_at from control.invitations
             where tenant_id = $1 and accepted_at is null and revoked_at is null order by created_at",
            &[&tenant_id],
        )
        .await?;
    rows.iter().map(Invitation::from_row).collect()
}

/// Looks up the invitation a token belongs to (any state).
pub async fn find_by_token(db: &impl GenericClient, token: &str) -> Result<Option<Invitation>, AppError> {
    let row = db
        .query_opt("select id, tenant_id, email, role, invited_by, created_at, expires_at, accepted_at, revoked_at from control.invitations where token_hash = $1", &[&hash_secret(token)])
        .await?;
    row.as_ref().map(Invitation::from_row).transpose()
}

/// Why an invitation could not be accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum AcceptError {
    Unknown,
    Expired,
    Revoked,
    AlreadyAccepted,
    WrongEmail,
    AlreadyMember,
}

impl From<AcceptError> for AppError {
    fn from(err: AcceptError) -> Self {
        match err {
            AcceptError::Unknown => AppError::NotFound("invitation"),
            AcceptError::Expired => {
                AppError::validation("token", "this invitation has expired; ask for a new one")
            }
            AcceptError::Revoked => AppError::validation("token", "this invitation was revoked"),
            AcceptError::AlreadyAccepted => {
                AppError::Conflict { field: "token", message: "this invitation was already accepted".into() }
            }
            AcceptError::WrongEmail => AppError::Forbidden(
                "this invitation was sent to another email address; sign in with that address to accept it",
            ),
            AcceptError::AlreadyMember => AppError::Conflict {
                field: "token",
                message: "you are already a member of this tenant".into(),
            },
        }
    }
}

/// Checks an invitation can be accepted now by a user with `email`.
pub fn check_acceptable(invitation: &Invitation, email: &str, now: DateTime<Utc>) -> Result<(), AcceptError> {
    if invitation.accepted_at.is_some() {
        return Err(AcceptError::AlreadyAccepted);
    }
    if invitation.revoked_at.is_some() {
        return Err(AcceptError::Revoked);
    }
    if invitation.expires_at <= now {
        return Err(AcceptError::Expired);
    }
    if !invitation.email.eq_ignore_ascii_case(email) {
        return Err(AcceptError::WrongEmail);
    }
    Ok(())
}

/// Turns an acceptable invitation into a membership, in the invitation's tenant transaction.
pub async fn accept(tx: &mut TenantTx, invitation: &Invitation, user_id: Uuid) -> Result<(), AppError> {
    let claimed = tx
        .control()
        .execute(
            "update control.invitations set accepted_at = now()
             where id = $1 and accepted_at is null and revoked_at is null",
            &[&invitation.id],
        )
        .await?;
    if claimed == 0 {
        return Err(AcceptError::AlreadyAccepted.into());
    }
    tx.control()
        .execute(
            "insert into control.memberships (tenant_id, user_id, role) values ($1, $2, $3)",
            &[&invitation.tenant_id, &user_id, &invitation.role.as_db()],
        )
        .await
        .map_err(|err| {
            if err.constraint() == Some("memberships_pkey") { AcceptError::AlreadyMember.into() } else { err }
        })?;
    let actor = audit::Actor::User(user_id);
    let details = serde_json::json!({ "invitation": invitation.id, "role": invitation.role.as_db() });
    audit::record(tx, actor, "member.added", "user", &user_id.to_string(), details).await?;
    publish(tx.control(), MEMBER_CHANGED, &format!("{}:{user_id}", invitation.tenant_id)).await
}
