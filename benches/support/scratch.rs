//! A scratch database per bench run on the server `PGURL` names (default the local PostgreSQL),
//! for the standalone benches (`#[path = "support/scratch.rs"] mod scratch;`).

/// The URL of database `db` on the bench's server.
pub fn pg_url(db: &str) -> String {
    let base = std::env::var("PGURL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    format!("{base}/{db}")
}

/// Runs `sql` (e.g. `create database …`) on the server's `postgres` database.
pub async fn admin(sql: &str) -> anyhow::Result<()> {
    let (client, conn) = tokio_postgres::connect(&pg_url("postgres"), tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(conn);
    client.batch_execute(sql).await?;
    drop(client);
    let _ = driver.await;
    Ok(())
}
