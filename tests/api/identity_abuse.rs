//! No amplification through identity operations: one password hash or mail per request,
//! sign-ups and reset mail throttled per address and per client IP, a bounded hashing pool;
//! and `signUp` does not tell whether an address has an account.

use futures::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{As, TestApp, error_code, spawn_app, spawn_app_with};
use crate::process::ServerProcess;

const SIGN_UP: &str = "mutation($e: String!) { signUp(email: $e, password: \"correct horse\", name: \"Ann\") { accessToken refreshToken user { id email name emailVerified } } }";

/// One request running `field` under `n` aliases.
fn aliased(n: usize, field: impl Fn(usize) -> String) -> String {
    let fields: Vec<String> = (0..n).map(|i| format!("a{i}: {}", field(i))).collect();
    format!("mutation {{ {} }}", fields.join(" "))
}

/// How many aliases ran, and whether every other one was refused with `VALIDATION`.
fn ran_and_refused(body: &Value, n: usize) -> (usize, bool) {
    let ran = (0..n).filter(|i| !body["data"][format!("a{i}")].is_null()).count();
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    let all_validation = errors.iter().all(|e| e["extensions"]["code"] == "VALIDATION");
    (ran, errors.len() == n - ran && all_validation)
}

async fn reset_mails(app: &TestApp, to: &str) -> usize {
    app.mail_to(to).await.iter().filter(|m| m["subject"] == "Reset your password").count()
}

#[tokio::test]
async fn five_hundred_aliased_password_resets_send_one_mail() {
    let app = spawn_app().await;
    app.sign_up_unverified("ann").await;
    let query = aliased(500, |_| "requestPasswordReset(email: \"ann@example.com\")".into());
    let (status, body) = app.graphql(As::default(), &query, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ran_and_refused(&body, 500), (1, true), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("only one operation"), "{body}");
    app.wait_for_mail("ann@example.com", "Reset your password").await;
    // The mail is sent in the background: give a (wrong) second one time to show up.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(reset_mails(&app, "ann@example.com").await, 1);
}

#[tokio::test]
async fn reset_mail_is_throttled_per_address_and_per_client_ip() {
    let app = spawn_app_with(|c| {
        c.mails_per_address_per_hour = 2;
        c.resets_per_ip_per_hour = 4;
    })
    .await;
    app.sign_up_unverified("ann").await;
    let reset = "mutation($e: String!) { requestPasswordReset(email: $e) }";
    let ask = |email: &'static str| app.graphql(As::default(), reset, json!({ "e": email }));
    for _ in 0..2 {
        assert_eq!(ask("ann@example.com").await.1["data"]["requestPasswordReset"], true);
    }
    let (status, body) = ask("ann@example.com").await;
    assert_eq!((status.as_u16(), error_code(&body)), (429, Some("RATE_LIMITED")), "{body}");
    assert!(body["errors"][0]["extensions"]["retryAfter"].as_u64().is_some_and(|s| s > 0), "{body}");
    // Unknown addresses are counted alike (the answer never tells whether an account exists).
    assert_eq!(ask("zed@example.com").await.1["data"]["requestPasswordReset"], true);
    let (status, body) = ask("yan@example.com").await;
    assert_eq!((status.as_u16(), error_code(&body)), (429, Some("RATE_LIMITED")), "the IP's 5th: {body}");

    crate::helpers::eventually(std::time::Duration::from_secs(5), || async {
        (reset_mails(&app, "ann@example.com").await == 2).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(reset_mails(&app, "ann@example.com").await, 2);
}

#[tokio::test]
async fn a_hundred_aliased_sign_ups_make_at_most_one_account() {
    let app = spawn_app().await;
    let query = aliased(100, |i| {
        format!(
            "signUp(email: \"load{i}@example.com\", password: \"correct horse\", name: \"L\") {{ accessToken }}"
        )
    });
    let (_, body) = app.graphql(As::default(), &query, json!({})).await;
    assert_eq!(ran_and_refused(&body, 100), (1, true), "{body}");
    let users: i64 = app
        .pool
        .get()
        .await
        .unwrap()
        .query_one("select count(*) from control.users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 1);
}

#[tokio::test]
async fn sign_ups_are_throttled_per_address_and_per_client_ip() {
    let app = spawn_app_with(|c| {
        c.sign_ups_per_address_per_hour = 1;
        c.sign_ups_per_ip_per_hour = 3;
    })
    .await;
    let sign_up = |email: &'static str| app.graphql(As::default(), SIGN_UP, json!({ "e": email }));
    assert!(sign_up("ann@example.com").await.1["data"]["signUp"].is_object());
    let (status, body) = sign_up("ann@example.com").await;
    assert_eq!(
        (status.as_u16(), error_code(&body)),
        (429, Some("RATE_LIMITED")),
        "the address's 2nd: {body}"
    );
    assert!(sign_up("bob@example.com").await.1["data"]["signUp"].is_object());
    let (status, body) = sign_up("cat@example.com").await;
    assert_eq!((status.as_u16(), error_code(&body)), (429, Some("RATE_LIMITED")), "the IP's 4th: {body}");
}

#[tokio::test]
async fn a_thousand_aliased_sign_ins_do_not_starve_an_ordinary_sign_in() {
    let app = spawn_app().await;
    app.sign_up_unverified("ann").await;
    app.sign_up_unverified("bob").await;
    let flood = aliased(1000, |i| {
        format!("signIn(email: \"x{i}@example.com\", password: \"wrong password\") {{ accessToken }}")
    });
    let floods = join_all((0..3).map(|_| app.graphql(As::default(), &flood, json!({}))));
    let ordinary = app.graphql(
        As::default(),
        "mutation { signIn(email: \"bob@example.com\", password: \"correct horse\") { accessToken } }",
        json!({}),
    );
    let (floods, (_, signed_in)) = tokio::join!(floods, ordinary);
    assert!(signed_in["data"]["signIn"]["accessToken"].is_string(), "{signed_in}");
    for (_, body) in floods {
        // The first alias fails like any wrong password; the other 999 never hash.
        let refused =
            body["errors"].as_array().unwrap().iter().filter(|e| e["extensions"]["code"] == "VALIDATION");
        assert_eq!(refused.count(), 999, "{}", &body.to_string()[..500]);
    }
}

#[tokio::test]
async fn a_flood_of_sign_ins_beyond_the_hashing_queue_is_refused_with_429_not_starved() {
    let app = spawn_app_with(|c| {
        c.password_hash_concurrency = Some(1);
        c.password_hash_queue = 1;
        c.password_hash_timeout_ms = 10_000;
    })
    .await;
    app.sign_up_unverified("ann").await;
    let sign_in = "mutation($e: String!) { signIn(email: $e, password: \"wrong password\") { accessToken } }";
    let answers = join_all(
        (0..60).map(|i| app.graphql(As::default(), sign_in, json!({ "e": format!("x{i}@example.com") }))),
    )
    .await;
    let mut refused = 0;
    for (status, body) in &answers {
        match error_code(body) {
            Some("UNAUTHENTICATED") => assert_eq!(*status, 200, "{body}"),
            Some("RATE_LIMITED") => {
                assert_eq!(*status, 429, "{body}");
                refused += 1;
            }
            other => panic!("{other:?}: {body}"),
        }
    }
    assert!(refused > 0, "60 sign-ins at once fit a pool of one thread and one queue slot");
    // The flood is over: an ordinary sign-in is served again.
    let ok = "mutation { signIn(email: \"ann@example.com\", password: \"correct horse\") { accessToken } }";
    let (_, body) = app.graphql(As::default(), ok, json!({})).await;
    assert!(body["data"]["signIn"]["accessToken"].is_string(), "{body}");
}

#[tokio::test]
async fn sign_up_with_a_taken_address_answers_alike_and_mails_the_owner_instead() {
    let app = spawn_app().await;
    let fresh = app.graphql(As::default(), SIGN_UP, json!({ "e": "bob@example.com" })).await;
    app.sign_up("ann").await;
    let taken = app.graphql(As::default(), SIGN_UP, json!({ "e": "ANN@example.com" })).await;
    assert_eq!(taken.0, fresh.0, "{}", taken.1);
    assert!(taken.1["errors"].is_null(), "{}", taken.1);
    let (fresh, taken) = (&fresh.1["data"]["signUp"], &taken.1["data"]["signUp"]);
    let shape = |v: &Value| v["user"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(shape(taken), shape(fresh));
    assert_eq!(
        (&taken["user"]["email"], &taken["user"]["emailVerified"]),
        (&json!("ann@example.com"), &json!(false))
    );

    let notice = app.wait_for_mail("ann@example.com", "Someone tried to sign up with your address").await;
    assert!(notice["text"].as_str().unwrap().contains("sign in"), "{notice}");
    // The tokens open nothing: like an ended session.
    let (_, me) =
        app.graphql(As::user(taken["accessToken"].as_str().unwrap()), "{ me { id } }", json!({})).await;
    assert_eq!(error_code(&me), Some("UNAUTHENTICATED"), "{me}");
    let refresh = "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken } }";
    let (_, body) = app.graphql(As::default(), refresh, json!({ "t": taken["refreshToken"] })).await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");
    // The account is untouched: its own password still signs in.
    let sign_in =
        "mutation { signIn(email: \"ann@example.com\", password: \"correct horse\") { user { name } } }";
    let (_, body) = app.graphql(As::default(), sign_in, json!({})).await;
    assert_eq!(body["data"]["signIn"]["user"]["name"], "Tester", "{body}");
}

/// `signIn` as the client `ip`, through a proxy on 127.0.0.1 that says so in `X-Forwarded-For`.
async fn sign_in_from(app: &TestApp, ip: &str, email: String, password: &str) -> (u16, Value) {
    let query = "mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { accessToken } }";
    let res = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("x-forwarded-for", ip)
        .json(&json!({ "query": query, "variables": { "e": email, "p": password } }))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn a_sign_in_flood_from_one_client_is_refused_while_another_client_signs_in() {
    let app = spawn_app_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".into()];
        c.sign_ins_per_ip_per_minute = 5;
    })
    .await;
    app.sign_up_unverified("ann").await;
    let flood = join_all(
        (0..50).map(|i| sign_in_from(&app, "203.0.113.9", format!("x{i}@example.com"), "wrong password")),
    );
    let ordinary = sign_in_from(&app, "198.51.100.7", "ann@example.com".into(), "correct horse");
    let (flood, (status, body)) = tokio::join!(flood, ordinary);
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["signIn"]["accessToken"].is_string(), "{body}");
    let refused = flood
        .iter()
        .filter(|(status, body)| *status == 429 && error_code(body) == Some("RATE_LIMITED"))
        .count();
    // 5 attempts a minute from the flooding client; windows are fixed minutes, so a flood that
    // straddles a minute's end gets at most 5 more.
    assert!((40..=45).contains(&refused), "{refused} of 50 refused");

    // A client cannot pick its own address: without a trusted proxy the header is ignored, so
    // both "clients" are 127.0.0.1 and share its allowance.
    let app = spawn_app_with(|c| c.sign_ins_per_ip_per_minute = 1).await;
    sign_in_from(&app, "203.0.113.9", "x@example.com".into(), "wrong password").await;
    let (status, body) = sign_in_from(&app, "198.51.100.7", "y@example.com".into(), "wrong password").await;
    assert_eq!((status, error_code(&body)), (429, Some("RATE_LIMITED")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_attempts_are_counted_across_replicas() {
    let app = spawn_app_with(|c| c.sign_ins_per_address_per_minute = 4).await;
    app.sign_up_unverified("ann").await;
    let other = ServerProcess::replica(&app.db.url, &[("SIGN_INS_PER_ADDRESS_PER_MINUTE", "4")]).await;
    let sign_in =
        "mutation { signIn(email: \"ann@example.com\", password: \"wrong password\") { accessToken } }";
    // Windows are fixed minutes (of the database's clock, which is this machine's): start where
    // six requests end inside the same one.
    let into_minute =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 60;
    if into_minute > 45 {
        tokio::time::sleep(std::time::Duration::from_secs(61 - into_minute)).await;
    }
    let mut codes = Vec::new();
    // Alternating between the two processes: each sees only half the attempts, the count sees all.
    for _ in 0..3 {
        codes.push(error_code(&app.graphql(As::default(), sign_in, json!({})).await.1).map(str::to_owned));
        codes.push(error_code(&other.graphql(As::default(), sign_in, json!({})).await.1).map(str::to_owned));
    }
    let limited = codes.iter().filter(|c| c.as_deref() == Some("RATE_LIMITED")).count();
    assert_eq!(limited, 2, "4 attempts a minute across both replicas: {codes:?}");
}

/// A minute boundary (on the epoch, as fixed windows were aligned) ten minutes ahead: the hits a
/// test places around it stay in the future, where the hourly pruning of ended logs (which may run
/// while the test does) cannot touch them.
fn next_minute() -> chrono::DateTime<chrono::Utc> {
    use chrono::{DurationRound, TimeDelta};
    chrono::Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap() + TimeDelta::minutes(10)
}

#[tokio::test]
async fn a_throttle_admits_no_more_than_its_limit_across_a_minute_boundary() {
    use chrono::TimeDelta;
    use tenantry::auth::throttle::Bucket;
    let app = spawn_app().await;
    let limits = tenantry::auth::throttle::Throttles { sign_ins_per_address: 3, ..app.state.throttles };
    let client = app.pool.get().await.unwrap();
    let key = [(Bucket::SignInAddress, "boundary@example.com")];
    let boundary = next_minute();
    let at = |ms: i64| boundary + TimeDelta::milliseconds(ms);
    for ms in [-900, -600, -300] {
        limits.hit_at(&client, &key, at(ms)).await.expect("within the limit");
    }
    // Fixed windows started a fresh count here, letting 3 more through within a second.
    let refused = limits.hit_at(&client, &key, at(300)).await.unwrap_err();
    assert_eq!(refused.code(), "RATE_LIMITED");
    assert_eq!(refused.retry_after(), Some(59), "until the first hit leaves the window");
    // A window after the first hit, exactly one more is admitted.
    limits.hit_at(&client, &key, at(-900 + 60_001)).await.expect("the first hit left the window");
    let refused = limits.hit_at(&client, &key, at(-900 + 60_050)).await.unwrap_err();
    assert_eq!(refused.code(), "RATE_LIMITED");
}

#[tokio::test]
async fn no_span_of_one_window_admits_more_than_the_limit() {
    use chrono::TimeDelta;
    use tenantry::auth::throttle::Bucket;
    let app = spawn_app().await;
    let limits = tenantry::auth::throttle::Throttles { sign_ins_per_ip: 10, ..app.state.throttles };
    let client = app.pool.get().await.unwrap();
    let key = [(Bucket::SignInIp, "192.0.2.9")];
    let start = next_minute() - TimeDelta::seconds(90);
    // An attempt every 700 ms for three minutes, across three minute boundaries.
    let mut admitted = Vec::new();
    for i in 0..260 {
        let at = start + TimeDelta::milliseconds(700 * i);
        if limits.hit_at(&client, &key, at).await.is_ok() {
            admitted.push(at);
        }
    }
    assert!(admitted.len() >= 25, "the limit refills as hits leave the window: {}", admitted.len());
    for (i, first) in admitted.iter().enumerate() {
        let within = admitted[i..].iter().take_while(|at| **at - *first < TimeDelta::seconds(60)).count();
        assert!(within <= 10, "{within} admitted in the minute from {first}");
    }
}
