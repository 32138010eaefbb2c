//! `TenantTx`: the one path to tenant data. A transaction scoped to one tenant's schema.
//!
//! The first statement pipelines `begin`, `set_config('search_path', <schema>, true)` and the
//! query itself, so scoping costs no extra round trip. The setting is transaction-local: when the
//! transaction ends, the pooled connection carries nothing over to its next user.

use deadpool_postgres::{Object, Pool};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};

use super::SchemaName;
use crate::error::AppError;

const SET_SEARCH_PATH: &str = "select set_config('search_path', $1, true)";

/// A transaction on one tenant's schema. Commit it; dropping it rolls back.
pub struct TenantTx {
    client: Option<Object>,
    /// The quoted schema, the whole of the transaction's search_path.
    search_path: String,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing sent yet: the first statement will carry `begin` and `set_config` with it.
    Pending,
    Open,
    Finished,
}

impl TenantTx {
    /// Takes a connection for `schema`. Nothing is sent until the first statement.
    pub async fn begin(pool: &Pool, schema: &SchemaName) -> Result<Self, AppError> {
        let client = pool.get().await?;
        Ok(Self { client: Some(client), search_path: schema.quoted(), state: State::Pending })
    }

    fn client(&self) -> &Object {
        self.client.as_ref().expect("client is present until the transaction finishes")
    }

    /// Runs `sql` and returns its rows.
    pub async fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, AppError> {
        self.run(sql, async |client, statement| client.query(statement, params).await).await
    }

    /// Runs `sql`, which must return at most one row.
    pub async fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, AppError> {
        self.run(sql, async |client, statement| client.query_opt(statement, params).await).await
    }

    /// Runs `sql`, which must return exactly one row.
    pub async fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, AppError> {
        self.run(sql, async |client, statement| client.query_one(statement, params).await).await
    }

    /// Runs `sql` and returns the number of rows it touched.
    pub async fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, AppError> {
        self.run(sql, async |client, statement| client.execute(statement, params).await).await
    }

    /// Runs `op` with `sql` as a cached prepared statement, opening the transaction first if needed.
    ///
    /// The first statement is joined with `begin` and `set_config`. Futures are polled in order
    /// and each sends its messages on first poll, so the server receives begin, set_config and
    /// then the statement in one flush. On a statement-cache hit the execute goes out in that
    /// same flush (one round trip); on a miss the prepare does, behind set_config, as it must:
    /// unqualified table names resolve against the search_path.
    async fn run<T>(
        &mut self,
        sql: &str,
        op: impl AsyncFnOnce(&Object, &Statement) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, AppError> {
        if self.state == State::Open {
            let client = self.client();
            let statement = client.prepare_cached(sql).await?;
            return Ok(op(client, &statement).await?);
        }
        assert_eq!(self.state, State::Pending, "TenantTx used after commit");
        // From here on something may have reached the server, so dropping must roll back.
        self.state = State::Open;
        let client = self.client.as_ref().expect("client present");
        let search_path: [(&(dyn ToSql + Sync), Type); 1] = [(&self.search_path, Type::TEXT)];
        let (_, _, out) = futures::try_join!(
            client.batch_execute("begin"),
            client.query_typed(SET_SEARCH_PATH, &search_path),
            async {
                let statement = client.prepare_cached(sql).await?;
                op(client, &statement).await
            },
        )?;
        Ok(out)
    }

    /// Commits. A transaction that never ran a statement costs nothing.
    pub async fn commit(mut self) -> Result<(), AppError> {
        if self.state == State::Open {
            self.client().batch_execute("commit").await?;
        }
        self.state = State::Finished;
        Ok(())
    }
}

impl Drop for TenantTx {
    fn drop(&mut self) {
        if self.state != State::Open {
            return;
        }
        let Some(client) = self.client.take() else {
            return;
        };
        // Roll back off the caller's path; the connection returns to the pool only once clean.
        // Without a runtime (process exit) the connection is detached from the pool instead.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if client.batch_execute("rollback").await.is_err() {
                        drop(Object::take(client));
                    }
                });
            }
            Err(_) => drop(Object::take(client)),
        }
    }
}
