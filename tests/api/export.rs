//! Per-tenant export and import: a round trip keeps the projects and the tenant boundaries.

use serde_json::json;
use tenantry::tenancy::export::{ImportAs, export, import};
use tenantry::tenancy::model::Subdomain;
use uuid::Uuid;

use crate::helpers::{As, TestApp, error_code, project_names, scratch_dir, spawn_app};

async fn projects(app: &TestApp, token: &str, tenant: &str) -> serde_json::Value {
    app.graphql(As::member(token, tenant), "{ projects { name } }", json!({})).await.1
}

#[tokio::test]
async fn an_exported_tenant_imports_as_a_copy_and_as_itself_with_its_projects_and_boundaries() {
    let app = spawn_app().await;
    let alice = app.sign_up("alice").await;
    let bob = app.sign_up("bob").await;
    let acme_id = app.create_tenant(&alice, "acme").await;
    app.create_tenant(&bob, "globex").await;
    // Data that names the schema must survive the schema's renaming untouched.
    let schema = format!("t_{}", Uuid::parse_str(&acme_id).unwrap().simple());
    let tricky = format!("see {schema}.projects");
    app.create_project(&alice, "acme", "first").await;
    app.create_project(&alice, "acme", &tricky).await;
    app.create_project(&bob, "globex", "globex only").await;
    let expected = vec!["first".to_owned(), tricky.clone()];

    let file = scratch_dir().join("acme.json");
    export(&app.pool, &app.db.url, "acme", &file).await.unwrap();

    // As a new tenant: new id and schema, same projects, same members.
    let copy =
        import(&app.db.url, &file, ImportAs::New(Subdomain::parse("acme-copy").unwrap())).await.unwrap();
    assert_ne!(copy.tenant.id.to_string(), acme_id);
    assert_eq!(copy.memberships, 1);
    assert_eq!(project_names(&projects(&app, &alice, "acme-copy").await), expected);
    assert_eq!(project_names(&projects(&app, &alice, "acme").await), expected);
    let body = projects(&app, &bob, "acme-copy").await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    assert_eq!(project_names(&projects(&app, &bob, "globex").await), vec!["globex only"]);
    // The copy is a tenant of its own: writing to it leaves the original alone.
    app.create_project(&alice, "acme-copy", "copy only").await;
    assert_eq!(project_names(&projects(&app, &alice, "acme").await), expected);

    // As itself: refused while it exists, restored once deleted.
    let err = import(&app.db.url, &file, ImportAs::Same).await.unwrap_err();
    assert_eq!(err.code(), "CONFLICT");
    let acme = tenantry::tenancy::by_subdomain(&app.pool, "acme").await.unwrap();
    tenantry::tenancy::purge(&app.pool, &acme).await.unwrap();
    let restored = import(&app.db.url, &file, ImportAs::Same).await.unwrap();
    assert_eq!(restored.tenant.id.to_string(), acme_id);
    assert_eq!(restored.tenant.schema.as_str(), schema);
    assert_eq!(project_names(&projects(&app, &alice, "acme").await), expected);
    let body = projects(&app, &bob, "acme").await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
}
