//! Per-tenant export and import: a round trip keeps the projects and the tenant boundaries;
//! an edited file brings back no proof or payment unless the operator trusts it.

use std::time::Duration;

use serde_json::json;
use tenantry::tenancy::export::{ImportAs, export, import};
use tenantry::tenancy::model::Subdomain;
use uuid::Uuid;

use crate::helpers::{As, TestApp, error_code, eventually, project_names, scratch_dir, spawn_app};
use crate::tenants::{stdout, tenantry};

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

/// What an import could have changed: tenants, memberships, users, schemas, control tables.
async fn footprint(app: &TestApp) -> Vec<i64> {
    let client = app.pool.get().await.unwrap();
    let row = client
        .query_one(
            "select (select count(*) from control.tenants), (select count(*) from control.memberships),
                    (select count(*) from control.users), (select count(*) from pg_namespace),
                    (select count(*) from pg_class where relnamespace = 'control'::regnamespace)",
            &[],
        )
        .await
        .unwrap();
    (0..5).map(|i| row.get(i)).collect()
}

/// Exports `acme` (with a project) and returns the app, the file's JSON and the schema name.
async fn exported_acme() -> (TestApp, serde_json::Value, String) {
    let app = spawn_app().await;
    let alice = app.sign_up("alice").await;
    let id = app.create_tenant(&alice, "acme").await;
    app.create_project(&alice, "acme", "first").await;
    let file = scratch_dir().join("acme.json");
    export(&app.pool, &app.db.url, "acme", &file).await.unwrap();
    let json = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    (app, json, format!("t_{}", Uuid::parse_str(&id).unwrap().simple()))
}

async fn import_edited(app: &TestApp, json: &serde_json::Value, target: ImportAs) -> (String, String) {
    let file = scratch_dir().join("edited.json");
    std::fs::write(&file, serde_json::to_vec(json).unwrap()).unwrap();
    let err = import(&app.db.url, &file, target).await.expect_err("the edited file was imported");
    (err.code().to_owned(), err.message())
}

#[tokio::test]
async fn an_export_that_names_control_as_its_schema_is_refused_and_changes_nothing() {
    let (app, mut json, schema) = exported_acme().await;
    json["schema"] = json!("control");
    json["dump"] = json!(json["dump"].as_str().unwrap().replace(&schema, "control"));
    let before = footprint(&app).await;

    for target in [ImportAs::New(Subdomain::parse("evil").unwrap()), ImportAs::Same] {
        let (code, message) = import_edited(&app, &json, target).await;
        assert_eq!(code, "VALIDATION", "{message}");
        assert!(message.contains("invalid tenant schema name \"control\""), "{message}");
    }
    // Another tenant's well-formed schema name is refused too: the schema follows the id.
    json["schema"] = json!(format!("t_{}", Uuid::new_v4().simple()));
    let acme = tenantry::tenancy::by_subdomain(&app.pool, "acme").await.unwrap();
    tenantry::tenancy::purge(&app.pool, &acme).await.unwrap();
    let before_same = footprint(&app).await;
    let (code, message) = import_edited(&app, &json, ImportAs::Same).await;
    assert_eq!(code, "VALIDATION", "{message}");
    assert!(message.contains("is not the schema of its tenant"), "{message}");
    assert_eq!(footprint(&app).await, before_same);
    assert_ne!(before, before_same, "the purge itself shows in the footprint");
}

#[tokio::test]
async fn an_export_that_carries_sql_for_another_schema_is_refused_and_changes_nothing() {
    let (app, json, schema) = exported_acme().await;
    let before = footprint(&app).await;
    for (sql, reason) in [
        ("CREATE TABLE control.evil (id integer);", "not in the schema"),
        ("INSERT INTO control.users (id) VALUES (gen_random_uuid());", "an import restores tables"),
        (
            "ALTER TABLE ONLY {s}.projects ADD CONSTRAINT fk FOREIGN KEY (created_by) REFERENCES control.users(id);",
            "names the schema \"control\"",
        ),
        ("SELECT pg_catalog.set_config('search_path', 'control', false);", "emptying search_path"),
        ("DROP SCHEMA control CASCADE;", "an import restores tables"),
    ] {
        let mut edited = json.clone();
        let dump = json["dump"].as_str().unwrap();
        edited["dump"] = json!(format!("{dump}\n{}\n", sql.replace("{s}", &schema)));
        let (code, message) =
            import_edited(&app, &edited, ImportAs::New(Subdomain::parse("copy").unwrap())).await;
        assert_eq!(code, "VALIDATION", "{sql}: {message}");
        assert!(message.contains(reason), "{sql}: {message}");
        assert_eq!(footprint(&app).await, before, "{sql} changed something");
    }
    // The untouched file still imports.
    let file = scratch_dir().join("untouched.json");
    std::fs::write(&file, serde_json::to_vec(&json).unwrap()).unwrap();
    import(&app.db.url, &file, ImportAs::New(Subdomain::parse("copy").unwrap())).await.unwrap();
}

/// `tenantry tenants …` on the app's database; panics with the output when it fails.
fn cli(app: &TestApp, args: &[&str]) -> String {
    let out = tenantry(&app.db.url, args);
    assert!(out.status.success(), "tenantry {args:?}: {out:?}");
    stdout(&out)
}

const TENANT: &str = "{ tenant { domain plan { id } status customDomain { domain status } } }";

#[tokio::test]
async fn an_edited_export_restored_as_itself_keeps_no_proof_or_payment_unless_trusted() {
    let app = spawn_app().await;
    let alice = app.sign_up("alice").await;
    let acme_id = app.create_tenant(&alice, "acme").await;
    app.create_project(&alice, "acme", "launch").await;
    let file = scratch_dir().join("acme.json");
    cli(&app, &["tenants", "export", "acme", file.to_str().unwrap()]);
    // The edit: a paid plan, a custom domain as if verified, a Stripe customer.
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    json["tenant"]["plan"] = json!("enterprise");
    json["tenant"]["domain"] = json!("shop.test");
    json["tenant"]["stripe_customer_id"] = json!("cus_forged");
    let edited = scratch_dir().join("edited.json");
    std::fs::write(&edited, serde_json::to_vec(&json).unwrap()).unwrap();
    let edited = edited.to_str().unwrap();
    let stripe_customer = || async {
        let client = app.pool.get().await.unwrap();
        let id = Uuid::parse_str(&acme_id).unwrap();
        let sql = "select stripe_customer_id from control.tenants where id = $1";
        client.query_one(sql, &[&id]).await.unwrap().get::<_, Option<String>>(0)
    };
    let on_domain = || As { token: Some(&alice), tenant: None, host: Some("shop.test".into()) };

    // Restored as itself without the flag: none of the edited fields, and it says so.
    cli(&app, &["tenants", "delete", "acme", "--purge", "--yes"]);
    let report = cli(&app, &["tenants", "import", edited]);
    for line in [
        "control fields not taken from the file (--trust-control-fields would keep them):",
        r#"dropped  domain: "shop.test (verified)" (now "shop.test (pending)")"#,
        r#"dropped  plan: "enterprise" (now "free")"#,
        r#"dropped  stripe_customer_id: "cus_forged" (now null)"#,
        r#"kept     status: "active""#,
        "the custom domain is pending: the tenant proves it again with verifyDomain",
    ] {
        assert!(report.contains(line), "{line:?} not in:\n{report}");
    }
    let (_, body) = app.graphql(As::member(&alice, "acme"), TENANT, json!({})).await;
    let tenant = &body["data"]["tenant"];
    assert_eq!(tenant["domain"], serde_json::Value::Null, "{body}");
    assert_eq!(tenant["customDomain"], json!({ "domain": "shop.test", "status": "PENDING" }), "{body}");
    assert_eq!(tenant["plan"]["id"], "free", "{body}");
    assert_eq!(stripe_customer().await, None);
    let (_, body) = app.graphql(on_domain(), "{ projects { name } }", json!({})).await;
    assert_eq!(error_code(&body), Some("TENANT_NOT_FOUND"), "a pending domain routes nothing: {body}");
    assert_eq!(project_names(&projects(&app, &alice, "acme").await), ["launch"], "the data is back");

    // With --trust-control-fields the operator vouches for the file: all of it is kept.
    cli(&app, &["tenants", "delete", "acme", "--purge", "--yes"]);
    let report = cli(&app, &["tenants", "import", edited, "--trust-control-fields", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["control_fields_trusted"], true, "{report}");
    let fields = report["control_fields"].as_array().unwrap();
    assert!(fields.iter().all(|f| f["kept"] == true), "{report}");
    let restored = |name: &str| fields.iter().find(|f| f["field"] == name).unwrap()["restored"].clone();
    assert_eq!(restored("domain"), "shop.test (verified)");
    assert_eq!(restored("plan"), "enterprise");
    assert_eq!(stripe_customer().await.as_deref(), Some("cus_forged"));
    let (_, body) = app.graphql(As::member(&alice, "acme"), TENANT, json!({})).await;
    assert_eq!(body["data"]["tenant"]["plan"]["id"], "enterprise", "{body}");
    // The replica forgets its cached "no such domain" when the import's notification arrives.
    eventually(Duration::from_secs(10), || async {
        let (_, body) = app.graphql(on_domain(), "{ projects { name } }", json!({})).await;
        (body["data"]["projects"][0]["name"] == "launch").then_some(())
    })
    .await;
}
