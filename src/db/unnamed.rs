//! Statements for PgBouncer's transaction pooling (`DATABASE_POOLER=transaction`).
//!
//! Behind a transaction pooler, consecutive transactions of one client connection may run on
//! different server connections, so a statement prepared in one transaction may not exist in
//! the next. Here nothing named outlives its transaction: statements run as unnamed statements
//! with explicit parameter types (`query_typed`: parse, bind and execute in one message group).
//! The parameter types of each SQL text are learnt once per pool ([`TenantPool`]) by preparing it
//! inside the transaction and closing it at once (the close is sent before anything that ends
//! the transaction), then kept in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use deadpool_postgres::{Object, Pool};
use futures::TryStreamExt;
use tokio_postgres::types::{ToSql, Type};

use crate::config::Pooler;

/// Parameter types by SQL text. The texts come from the code, so the map stays small; it is
/// emptied if it ever grows past this anyway.
const MAX_TEXTS: usize = 10_000;

/// The pool tenant transactions (`TenantTx`) use, and how statements travel on it: one per app
/// (held in its state and its job worker), so two apps in one process may differ, one behind a
/// transaction pooler and one not. Clones share the pool and the learnt parameter types.
#[derive(Clone)]
pub struct TenantPool {
    pool: Pool,
    /// `Some` behind a transaction pooler: statements must not outlive their transaction.
    unnamed: Option<ParamTypes>,
}

/// The parameter types learnt per SQL text, for one pool behind a transaction pooler.
#[derive(Clone, Default)]
pub struct ParamTypes(Arc<Mutex<HashMap<String, Arc<[Type]>>>>);

impl TenantPool {
    /// `pool`, talked to as `pooler` says.
    pub fn new(pool: Pool, pooler: Pooler) -> Self {
        let unnamed = (pooler == Pooler::Transaction).then(ParamTypes::default);
        Self { pool, unnamed }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// `Some` when statements must not outlive their transaction.
    pub fn unnamed(&self) -> Option<&ParamTypes> {
        self.unnamed.as_ref()
    }
}

/// A plain pool is a direct connection: cached prepared statements.
impl From<Pool> for TenantPool {
    fn from(pool: Pool) -> Self {
        Self::new(pool, Pooler::None)
    }
}

impl std::ops::Deref for TenantPool {
    type Target = Pool;

    fn deref(&self) -> &Pool {
        &self.pool
    }
}

/// What `TenantTx::begin` takes: a [`TenantPool`], or a plain pool (a direct connection).
pub trait TxPool {
    fn tx_pool(&self) -> &Pool;
    /// `Some` behind a transaction pooler.
    fn unnamed(&self) -> Option<&ParamTypes>;
}

impl TxPool for Pool {
    fn tx_pool(&self) -> &Pool {
        self
    }

    fn unnamed(&self) -> Option<&ParamTypes> {
        None
    }
}

impl TxPool for TenantPool {
    fn tx_pool(&self) -> &Pool {
        &self.pool
    }

    fn unnamed(&self) -> Option<&ParamTypes> {
        self.unnamed.as_ref()
    }
}

impl ParamTypes {
    /// The parameter types of `sql`: remembered, or learnt with a prepare that is closed at once.
    /// Must run inside the transaction (the prepare and its close travel within it).
    pub async fn get(&self, client: &Object, sql: &str) -> Result<Arc<[Type]>, tokio_postgres::Error> {
        if let Some(types) = self.0.lock().expect("not poisoned").get(sql) {
            return Ok(types.clone());
        }
        let statement = client.prepare(sql).await?;
        let types: Arc<[Type]> = statement.params().into();
        drop(statement); // sends Close now, inside the transaction
        let mut known = self.0.lock().expect("not poisoned");
        if known.len() >= MAX_TEXTS {
            known.clear();
        }
        known.insert(sql.to_owned(), types.clone());
        Ok(types)
    }

    /// Forgets `sql`'s types (after an error: a migration may have changed a column's type).
    pub fn forget(&self, sql: &str) {
        self.0.lock().expect("not poisoned").remove(sql);
    }

    /// How many SQL texts have their types remembered.
    pub fn len(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
