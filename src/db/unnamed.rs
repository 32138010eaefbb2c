//! Statements for PgBouncer's transaction pooling (`DATABASE_POOLER=transaction`).
//!
//! Behind a transaction pooler, consecutive transactions of one client connection may run on
//! different server connections, so a statement prepared in one transaction may not exist in
//! the next. Here nothing named outlives its transaction: statements run as unnamed statements
//! with explicit parameter types (`query_typed`: parse, bind and execute in one message group).
//! The parameter types of each SQL text are learnt once per process by preparing it inside the
//! transaction and closing it at once (the close is sent before anything that ends the
//! transaction), then kept in memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use deadpool_postgres::Object;
use futures::TryStreamExt;
use tokio_postgres::types::{ToSql, Type};

use crate::config::Pooler;

static TRANSACTION_POOLING: AtomicBool = AtomicBool::new(false);

/// Parameter types by SQL text. The texts come from the code, so the map stays small; it is
/// emptied if it ever grows past this anyway.
static PARAM_TYPES: LazyLock<Mutex<HashMap<String, Arc<[Type]>>>> = LazyLock::new(Mutex::default);
const MAX_TEXTS: usize = 10_000;

/// Sets how this process talks to PostgreSQL (once, at start-up).
pub fn set_pooler(pooler: Pooler) {
    TRANSACTION_POOLING.store(pooler == Pooler::Transaction, Ordering::Relaxed);
}

/// Whether statements must not outlive their transaction.
pub fn transaction_pooling() -> bool {
    TRANSACTION_POOLING.load(Ordering::Relaxed)
}

/// The parameter types of `sql`: remembered, or learnt with a prepare that is closed at once.
/// Must run inside the transaction (the prepare and its close travel within it).
pub async fn param_types(client: &Object, sql: &str) -> Result<Arc<[Type]>, tokio_postgres::Error> {
    if let Some(types) = PARAM_TYPES.lock().expect("not poisoned").get(sql) {
        return Ok(types.clone());
    }
    let statement = client.prepare(sql).await?;
    let types: Arc<[Type]> = statement.params().into();
    drop(statement); // sends Close now, inside the transaction
    let mut known = PARAM_TYPES.lock().expect("not poisoned");
    if known.len() >= MAX_TEXTS {
        known.clear();
    }
    known.insert(sql.to_owned(), types.clone());
    Ok(types)
}

/// Forgets `sql`'s types (after an error: a migration may have changed a column's type).
pub fn forget(sql: &str) {
    PARAM_TYPES.lock().expect("not poisoned").remove(sql);
}

/// Runs `sql` as an unnamed statement; returns its rows and the number of rows it touched.
pub async fn run(
    client: &Object,
    sql: &str,
    types: &[Type],
    params: &[&(dyn ToSql + Sync)],
) -> Result<(Vec<tokio_postgres::Row>, u64), tokio_postgres::Error> {
    let typed: Vec<(&(dyn ToSql + Sync), Type)> =
        params.iter().zip(types.iter()).map(|(p, t)| (*p, t.clone())).collect();
    let stream = client.query_typed_raw(sql, typed).await?;
    futures::pin_mut!(stream);
    let mut rows = Vec::new();
    while let Some(row) = stream.try_next().await? {
        rows.push(row);
    }
    let affected = stream.rows_affected().unwrap_or(rows.len() as u64);
    Ok((rows, affected))
}
