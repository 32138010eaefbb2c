//! SQL for `control.memberships`.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::Role;
use crate::db::rows::Columns;
use crate::db::{Statements, TenantTx};
use crate::error::AppError;

pub async fn find_role(
    db: &impl GenericClient,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<Option<Role>, AppError> {
    let row = db
        .query_opt(
            "select role from control.memberships where tenant_id = $1 and user_id = $2",
            &[&tenant_id, &user_id],
        )
        .await?;
    row.map(|row| Role::from_db(Columns::of(&row, "members::repo::find_role").try_get("role")?)).transpose()
}

pub async fn insert(
    db: &impl GenericClient,
    tenant_id: Uuid,
    user_id: Uuid,
    role: Role,
) -> Result<(), AppError> {
    db.execute(
        "insert into control.memberships (tenant_id, user_id, role) values ($1, $2, $3)",
        &[&tenant_id, &user_id, &role.as_db()],
    )
    .await?;
    Ok(())
}

/// A member with their account details.
#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub joined_at: chrono::DateTime<chrono::Utc>,
}

const MEMBERS: &str = "select m.user_id, u.email, u.name, m.role, m.created_at from control.memberships m
                       join control.users u on u.id = m.user_id where m.tenant_id = $1";

impl Member {
    fn from_row(r: &tokio_postgres::Row) -> Result<Self, AppError> {
        let c = Columns::of(r, "Member::from_row");
        Ok(Self {
            user_id: c.try_get("user_id")?,
            email: c.try_get("email")?,
            name: c.try_get("name")?,
            role: Role::from_db(c.try_get("role")?)?,
            joined_at: c.try_get("created_at")?,
        })
    }
}

pub async fn list(db: &impl GenericClient, tenant_id: Uuid) -> Result<Vec<Member>, AppError> {
    let sql = format!("{MEMBERS} order by m.created_at, u.email");
    db.query(&sql, &[&tenant_id]).await?.iter().map(Member::from_row).collect()
}

pub async fn find(
    db: &impl GenericClient,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<Option<Member>, AppError> {
    let sql = format!("{MEMBERS} and m.user_id = $2");
    db.query_opt(&sql, &[&tenant_id, &user_id]).await?.as_ref().map(Member::from_row).transpose()
}

/// Every member's role, locked until the transaction ends: role changes and removals of one
/// tenant serialise here, so "the last OWNER" is decided on a stable set.
pub async fn lock_roles(tx: &mut TenantTx, tenant_id: Uuid) -> Result<Vec<(Uuid, Role)>, AppError> {
    let rows = tx
        .control()
        .query("select user_id, role from control.memberships where tenant_id = $1 for update", &[&tenant_id])
        .await?;
    rows.iter()
        .map(|r| {
            let c = Columns::of(r, "members::repo::lock_roles");
            Ok((c.try_get("user_id")?, Role::from_db(c.try_get("role")?)?))
        })
        .collect()
}

pub async fn set_role(tx: &mut TenantTx, tenant_id: Uuid, user_id: Uuid, role: Role) -> Result<(), AppError> {
    tx.control()
        .execute(
            "update control.memberships set role = $3 where tenant_id = $1 and user_id = $2",
            &[&tenant_id, &user_id, &role.as_db()],
        )
        .await?;
    Ok(())
}

pub async fn delete(tx: &mut TenantTx, tenant_id: Uuid, user_id: Uuid) -> Result<(), AppError> {
    tx.control()
        .execute(
            "delete from control.memberships where tenant_id = $1 and user_id = $2",
            &[&tenant_id, &user_id],
        )
        .await?;
    Ok(())
}

/// Active members plus pending, unexpired invitations: the seats the plan limit counts (and the
/// usage feature's member gauge).
pub async fn seats_taken(mut db: impl Statements, tenant_id: Uuid) -> Result<i64, AppError> {
    let row = db
        .query_one(
            "select (select count(*) from control.memberships where tenant_id = $1)
                  + (select count(*) from control.invitations
                     where tenant_id = $1 and accepted_at is null and revoked_at is null and expires_at > now())
                    as seats",
            &[&tenant_id],
        )
        .await?;
    Ok(Columns::of(&row, "members::repo::seats_taken").try_get("seats")?)
}
