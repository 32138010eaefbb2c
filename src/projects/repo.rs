//! SQL for the tenant's `projects` table. Unqualified: the `TenantTx` scopes it.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::db::rows::Columns;
use crate::error::AppError;

#[derive(Debug, Clone)]
pub struct Project {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Project {
    fn from_row(row: &Row) -> Result<Self, AppError> {
        let c = Columns::of(row, "Project::from_row");
        Ok(Self {
            id: c.try_get("id")?,
            name: c.try_get("name")?,
            description: c.try_get("description")?,
            created_by: c.try_get("created_by")?,
            created_at: c.try_get("created_at")?,
            updated_at: c.try_get("updated_at")?,
        })
    }
}

type DbResult<T> = Result<T, AppError>;

/// A page of projects in creation order, after the project `after` if given.
pub async fn list(tx: &mut TenantTx, first: i64, after: Option<Uuid>) -> DbResult<Vec<Project>> {
    let rows = tx
        .query(
            "select id, name, description, created_by, created_at, updated_at from projects
             where $2::uuid is null
                or (created_at, id) > (select created_at, id from projects where id = $2)
             order by created_at, id limit $1",
            &[&first, &after],
        )
        .await?;
    rows.iter().map(Project::from_row).collect()
}

pub async fn find(tx: &mut TenantTx, id: Uuid) -> DbResult<Option<Project>> {
    let row = tx
        .query_opt(
            "select id, name, description, created_by, created_at, updated_at from projects where id = $1",
            &[&id],
        )
        .await?;
    row.as_ref().map(Project::from_row).transpose()
}

pub async fn insert(
    tx: &mut TenantTx,
    name: &str,
    description: Option<&str>,
    created_by: Option<Uuid>,
) -> DbResult<Project> {
    let row = tx
        .query_one(
            "insert into projects (name, description, created_by) values ($1, $2, $3)
             returning id, name, description, created_by, created_at, updated_at",
            &[&name, &description, &created_by],
        )
        .await?;
    Project::from_row(&row)
}

/// Updates the given fields; `None` keeps the current value.
pub async fn update(
    tx: &mut TenantTx,
    id: Uuid,
    name: Option<&str>,
    description: Option<&str>,
) -> DbResult<Option<Project>> {
    let row = tx
        .query_opt(
            "update projects set name = coalesce($2, name), description = coalesce($3, description),
                                 updated_at = now()
             where id = $1 returning id, name, description, created_by, created_at, updated_at",
            &[&id, &name, &description],
        )
        .await?;
    row.as_ref().map(Project::from_row).transpose()
}

pub async fn delete(tx: &mut TenantTx, id: Uuid) -> DbResult<bool> {
    Ok(tx.execute("delete from projects where id = $1", &[&id]).await? == 1)
}
