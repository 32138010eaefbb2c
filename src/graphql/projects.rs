//! GraphQL: `projects`, `project(id)`, `createProject`, `updateProject`, `deleteProject`.

use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};

use crate::error::AppError;
use crate::graphql::usage::StorageRoomGuard;
use crate::members::Role;
use crate::projects::repo::{self, Project};
use crate::projects::{ProjectName, parse_description, parse_id};
use crate::request::context::RequestCtx;
use crate::request::guards::RoleGuard;

const MAX_PAGE: i32 = 100;

#[derive(SimpleObject)]
#[graphql(name = "Project")]
pub struct ProjectObject {
    id: ID,
    name: String,
    description: Option<String>,
    created_by: Option<ID>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Project> for ProjectObject {
    fn from(p: Project) -> Self {
        Self {
            id: ID(p.id.to_string()),
            name: p.name,
            description: p.description,
            created_by: p.created_by.map(|id| ID(id.to_string())),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Default)]
pub struct ProjectQuery;

#[Object]
impl ProjectQuery {
    /// The tenant's projects, oldest first; pass the last id as `after` for the next page.
    #[graphql(guard = "RoleGuard::at_least(Role::Viewer)")]
    async fn projects(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
        after: Option<ID>,
    ) -> async_graphql::Result<Vec<ProjectObject>> {
        if !(1..=MAX_PAGE).contains(&first) {
            return Err(AppError::validation("first", format!("must be between 1 and {MAX_PAGE}")).into());
        }
        let after = after.map(|id| parse_id(&id)).transpose()?;
        let mut tx = ctx.data::<RequestCtx>()?.tenant_tx_single().await?;
        let projects = repo::list(&mut tx, first.into(), after).await?;
        tx.commit().await?;
        Ok(projects.into_iter().map(Into::into).collect())
    }

    /// One project of the tenant; `NOT_FOUND` if the tenant has no such project.
    #[graphql(guard = "RoleGuard::at_least(Role::Viewer)")]
    async fn project(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ProjectObject> {
        let id = parse_id(&id)?;
        let mut tx = ctx.data::<RequestCtx>()?.tenant_tx_single().await?;
        let project = repo::find(&mut tx, id).await?;
        tx.commit().await?;
        Ok(project.ok_or(AppError::NotFound("project"))?.into())
    }
}

#[derive(Default)]
pub struct ProjectMutation;

#[Object]
impl ProjectMutation {
    #[graphql(guard = "RoleGuard::at_least(Role::Member).and(StorageRoomGuard)")]
    async fn create_project(
        &self,
        ctx: &Context<'_>,
        name: String,
        description: Option<String>,
    ) -> async_graphql::Result<ProjectObject> {
        let name = ProjectName::parse(&name)?;
        let description = parse_description(description.as_deref())?;
        let rc = ctx.data::<RequestCtx>()?;
        let mut tx = rc.tenant_tx().await?;
        let project = repo::insert(&mut tx, name.as_str(), description, rc.actor()?.user_id()).await?;
        tx.commit().await?;
        Ok(project.into())
    }

    /// Changes the given fields of a project; omitted fields keep their value.
    #[graphql(guard = "RoleGuard::at_least(Role::Member).and(StorageRoomGuard)")]
    async fn update_project(
        &self,
        ctx: &Context<'_>,
        id: ID,
        name: Option<String>,
        description: Option<String>,
    ) -> async_graphql::Result<ProjectObject> {
        let id = parse_id(&id)?;
        let name = name.as_deref().map(ProjectName::parse).transpose()?;
        let description = parse_description(description.as_deref())?;
        let mut tx = ctx.data::<RequestCtx>()?.tenant_tx().await?;
        let project = repo::update(&mut tx, id, name.as_ref().map(ProjectName::as_str), description)
            .await?
            .ok_or(AppError::NotFound("project"))?;
        tx.commit().await?;
        Ok(project.into())
    }

    /// Deletes a project; returns its id.
    #[graphql(guard = "RoleGuard::at_least(Role::Member)")]
    async fn delete_project(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ID> {
        let project_id = parse_id(&id)?;
        let mut tx = ctx.data::<RequestCtx>()?.tenant_tx().await?;
        if !repo::delete(&mut tx, project_id).await? {
            return Err(AppError::NotFound("project").into());
        }
        tx.commit().await?;
        Ok(id)
    }
}
