//! Concurrency: many requests over few pooled connections, each seeing only its tenant.

use futures::future::join_all;
use serde_json::json;

use crate::helpers::{As, project_names, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_requests_over_five_tenants_each_see_only_their_tenant() {
    // Few connections for many tenants: every connection serves several tenants in turn, so a
    // search_path left behind on a pooled connection would show up as a foreign row.
    let app = spawn_app_with(|config| config.db_pool_size = 4).await;
    let tenants = ["t-one", "t-two", "t-three", "t-four", "t-five"];
    let mut tokens = Vec::new();
    for tenant in tenants {
        let token = app.sign_up(tenant).await;
        app.create_tenant(&token, tenant).await;
        // Twenty requests at once would exceed free's 5 a second; pro has `unlimited_api`.
        app.set_plan(tenant, "pro").await;
        for n in 0..3 {
            app.create_project(&token, tenant, &format!("{tenant}/{n}")).await;
        }
        tokens.push(token);
    }

    let requests = (0..100).map(|i| {
        let (tenant, token) = (tenants[i % tenants.len()], &tokens[i % tenants.len()]);
        let app = &app;
        async move {
            let (status, body) =
                app.graphql(As::member(token, tenant), "{ projects { name } }", json!({})).await;
            (tenant, status, body)
        }
    });
    let responses = join_all(requests).await;

    let mut failures = 0;
    for (tenant, status, body) in &responses {
        if *status != 200 || body.get("errors").is_some() {
            failures += 1;
            continue;
        }
        let names = project_names(body);
        assert_eq!(names.len(), 3, "{tenant}: {names:?}");
        assert!(names.iter().all(|n| n.starts_with(&format!("{tenant}/"))), "{tenant} saw {names:?}");
    }
    assert_eq!(failures, 0, "failed responses");
}
