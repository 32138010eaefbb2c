//! With no DATABASE_URL the server runs its own PostgreSQL under DATA_DIR.

use tenantry::app::Application;
use tokio::sync::oneshot;

use crate::helpers::{scratch_dir, test_config};

async fn serve_once(data_dir: &std::path::Path) -> serde_json::Value {
    let app = Application::build(test_config(None, data_dir)).await.expect("server starts");
    let url = format!("http://127.0.0.1:{}/api/health", app.port());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let body = reqwest::get(url).await.unwrap().json().await.unwrap();
    stop.send(()).unwrap();
    server.await.unwrap().expect("clean shutdown");
    body
}

#[tokio::test]
async fn the_server_creates_starts_stops_and_reuses_its_own_postgres() {
    let data_dir = scratch_dir();
    let first = serve_once(&data_dir).await;
    assert_eq!(first["status"], "healthy", "{first}");
    assert_eq!(first["checks"]["database"]["status"], "healthy");
    let pgdata = data_dir.join("postgres");
    assert!(pgdata.join("PG_VERSION").exists());
    assert!(!pgdata.join("postmaster.pid").exists(), "the cluster must stop with the server");

    let second = serve_once(&data_dir).await;
    assert_eq!(second["status"], "healthy", "{second}");
    std::fs::remove_dir_all(data_dir).unwrap();
}
