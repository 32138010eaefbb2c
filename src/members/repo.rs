//! SQL for `control.memberships`.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::Role;
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
    Ok(row.and_then(|row| Role::from_db(row.get(0))))
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
