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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_aliased_projects_in_one_request_leave_other_tenants_served() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    // A pool larger than a request's share: without the bound one request would take all of it.
    let app = spawn_app_with(|config| config.db_pool_size = 8).await;
    let (ann, bob) = (app.sign_up("ann").await, app.sign_up("bob").await);
    app.create_tenant(&ann, "acme").await;
    app.create_tenant(&bob, "globex").await;
    // globex is asked in a loop: more than free's 5 requests a second.
    app.set_plan("globex", "pro").await;
    app.create_project(&ann, "acme", "a").await;
    app.create_project(&bob, "globex", "g").await;
    let aliases: Vec<String> = (0..500).map(|i| format!("p{i}: projects(first: 1) {{ id }}")).collect();
    let big_query = format!("{{ {} }}", aliases.join(" "));

    let (done, most_in_use) = (AtomicBool::new(false), AtomicUsize::new(0));
    let big = async {
        let answer = app.graphql(As::member(&ann, "acme"), &big_query, json!({})).await;
        done.store(true, Ordering::Relaxed);
        answer
    };
    let sampler = async {
        while !done.load(Ordering::Relaxed) {
            let status = app.state.pool.status();
            most_in_use.fetch_max(status.size - status.available, Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
    };
    let others = async {
        let mut served = 0;
        loop {
            let (status, body) =
                app.graphql(As::member(&bob, "globex"), "{ projects { name } }", json!({})).await;
            assert!(status == 200 && body.get("errors").is_none(), "{body}");
            assert_eq!(project_names(&body), ["g"]);
            served += 1;
            if done.load(Ordering::Relaxed) {
                return served;
            }
        }
    };
    let ((status, body), (), served) = tokio::join!(big, sampler, others);

    assert!(status == 200 && body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"].as_object().map(|data| data.len()), Some(500));
    assert!(served >= 1);
    // The big request's share (2), the other tenant's one request at a time, and the usage
    // flusher's one connection (every 100 ms in tests).
    let most = most_in_use.load(Ordering::Relaxed);
    assert!(most <= 4, "{most} pooled connections were in use at once");
}
