//! `TenantTx`: the one path to tenant data. A transaction scoped to one tenant's schema.
//!
//! The first statement pipelines `begin`, one `select` that sets the search_path to the schema
//! and the role to the tenant's own (`set_config(…, true)`: `SET LOCAL`), and the query itself,
//! so scoping costs no extra round trip. Both settings are transaction-local: when the
//! transaction ends, the pooled connection carries nothing over to its next user.
//!
//! The tenant's role (named like its schema, see `db::tenant_role`) holds rights on its own
//! schema only, so PostgreSQL refuses a tenant statement that names another tenant's schema or
//! `control`. A tenant provisioned before roles existed (no role yet: `to_regrole` is null) runs
//! as the login role until `tenantry tenants grant-roles` creates it. Statements that must touch
//! `control` from a tenant transaction go through [`TenantTx::control`]; statement text that
//! could change the role is refused (`guard`). docs/SECURITY.md has the model.
//!
//! A single-statement transaction (`begin_single`) also pipelines its `commit`, so a one-query
//! read costs one round trip in all.
//!
//! Prepared statements are cached per connection *and schema*: PostgreSQL re-analyses and
//! re-plans a prepared statement whenever the search_path differs from the one it was prepared
//! under, which over many tenants costs more than the query itself. A statement prepared for
//! one schema is only ever run under that schema, so its plan stays valid (and if it were not,
//! PostgreSQL would still re-resolve the names: correctness never depends on the key).
//!
//! A request's transaction also keys its statements by the tenant's migration version
//! (`at_version`): once `migrate` has moved a tenant on, its requests prepare fresh statements
//! and never meet the old ones, while every other tenant's stay cached.

use deadpool_postgres::Object;
use tokio::sync::OwnedSemaphorePermit;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use tokio_postgres::types::Type;

use super::SchemaName;
use super::unnamed::{ParamTypes, TxPool};
use crate::error::AppError;

mod control;
pub mod guard;
mod outcome;

use outcome::{Kind, Outcome};

pub use control::Control;

/// Scopes the transaction: search_path `$1` (the quoted schema) and role `$2` (the schema's
/// name), or the login role (`none`) while the tenant has no role of its own.
const SET_SCOPE: &str = "select set_config('search_path', $1, true), \
     set_config('role', coalesce(to_regrole($2)::text, 'none'), true)";
/// A connection's statement cache is emptied when it reaches this size (statements are per
/// schema, so it grows with the tenants a connection serves; PostgreSQL memory grows with it).
const MAX_CACHED_STATEMENTS: usize = 2_000;

/// A transaction on one tenant's schema. Commit it; dropping it rolls back.
pub struct TenantTx {
    client: Option<Object>,
    /// The quoted schema, the whole of the transaction's search_path.
    search_path: String,
    /// The tenant's role: the schema's name (unquoted: it is a parameter, not SQL text).
    role: String,
    /// What statements are cached under: the schema, and its migration version if known.
    cache_tag: String,
    state: State,
    /// Commit together with the first statement; a second statement is refused.
    single: bool,
    /// The request's turn to hold a connection, given back with the connection.
    turn: Option<OwnedSemaphorePermit>,
    /// Behind a transaction pooler: unnamed statements with these types (see `db::unnamed`).
    unnamed: Option<ParamTypes>,
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
    pub async fn begin(pool: &(impl TxPool + ?Sized), schema: &SchemaName) -> Result<Self, AppError> {
        Self::open(pool, schema, false).await
    }

    /// Like `begin`, for exactly one statement: begin, set_config, the statement and commit go
    /// out in one flush. `commit` afterwards is a no-op; a second statement is an error.
    pub async fn begin_single(pool: &(impl TxPool + ?Sized), schema: &SchemaName) -> Result<Self, AppError> {
        Self::open(pool, schema, true).await
    }

    async fn open(
        pool: &(impl TxPool + ?Sized),
        schema: &SchemaName,
        single: bool,
    ) -> Result<Self, AppError> {
        let client = pool.tx_pool().get().await?;
        let search_path = schema.quoted();
        Ok(Self {
            client: Some(client),
            cache_tag: search_path.clone(),
            search_path,
            role: schema.as_str().to_owned(),
            state: State::Pending,
            single,
            turn: None,
            unnamed: pool.unnamed().cloned(),
        })
    }

    /// Caches this transaction's statements under the schema's migration `version`, so
    /// statements prepared before a migration are not used after it.
    pub fn at_version(mut self, version: i32) -> Self {
        use std::fmt::Write as _;
        let _ = write!(self.cache_tag, " v{version}");
        self
    }

    /// Keeps `turn` (a request's permit to hold a connection) until the transaction ends.
    pub fn holding(mut self, turn: OwnedSemaphorePermit) -> Self {
        self.turn = Some(turn);
        self
    }

    fn client(&self) -> &Object {
        self.client.as_ref().expect("client is present until the transaction finishes")
    }

    /// Runs `sql` and returns its rows.
    pub async fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, AppError> {
        self.run(sql, params, Kind::Rows).await.map(Outcome::rows)
    }

    /// Runs `sql`, which must return at most one row.
    pub async fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, AppError> {
        outcome::at_most_one(self.query(sql, params).await?)
    }

    /// Runs `sql`, which must return exactly one row.
    pub async fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, AppError> {
        outcome::exactly_one(self.query(sql, params).await?)
    }

    /// Runs `sql` and returns the number of rows it touched.
    pub async fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, AppError> {
        self.run(sql, params, Kind::Count).await.map(Outcome::count)
    }

    /// Runs `sql` as a cached prepared statement, opening the transaction first if needed.
    ///
    /// A cached statement whose table changed shape since it was prepared (a live migration)
    /// fails with SQLSTATE 0A000, "cached plan must not change result type". It is retried once
    /// on this connection with its statements dropped: the first statement from `begin`, a
    /// later one from the savepoint it runs under (see `run_open`).
    async fn run(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        kind: Kind,
    ) -> Result<Outcome, AppError> {
        self.admit(sql)?;
        if let Some(types) = self.unnamed.clone() {
            return self.run_pooled(&types, sql, params, kind).await;
        }
        let keyed = self.keyed(sql);
        match self.state {
            // (`Finished` was refused by `admit`.)
            State::Open | State::Finished => Ok(self.run_open(&keyed, params, kind).await?),
            State::Pending => match self.run_first(&keyed, params, kind).await {
                Err(err) if is_stale_plan(&err) => {
                    // The failed statement aborted the transaction (or, in single mode, its
                    // pipelined commit ended it): end it, forget the stale statements, begin anew.
                    let client = self.client();
                    client.batch_execute("rollback").await?;
                    client.statement_cache.clear();
                    self.state = State::Pending;
                    tracing::info!("stale cached plan after a schema change; retried from begin");
                    Ok(self.run_first(&keyed, params, kind).await?)
                }
                other => Ok(other?),
            },
        }
    }

    /// `run` behind a transaction pooler: unnamed statements only (see `db::unnamed`). The first
    /// statement still travels with `begin` and `set_config`, and in single mode with `commit`.
    async fn run_pooled(
        &mut self,
        known: &ParamTypes,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        kind: Kind,
    ) -> Result<Outcome, AppError> {
        use super::unnamed;
        let pending = self.state == State::Pending;
        self.state = State::Open;
        let single = self.single;
        let client = self.client.as_ref().expect("client present");
        let statement = async {
            let types = known.get(client, sql).await?;
            if !single {
                return unnamed::run(client, sql, &types, params).await;
            }
            let (out, ()) = futures::try_join!(
                unnamed::run(client, sql, &types, params),
                client.batch_execute("commit")
            )?;
            Ok(out)
        };
        let result = if pending {
            let scope = self.scope_typed();
            futures::try_join!(
                client.batch_execute("begin"),
                client.query_typed(SET_SCOPE, &scope),
                statement
            )
            .map(|(_, _, out)| out)
        } else {
            statement.await
        };
        let (rows, affected) = result.inspect_err(|_| known.forget(sql))?;
        if single {
            self.state = State::Finished;
        }
        Ok(match kind {
            Kind::Rows => Outcome::Rows(rows),
            Kind::Count => Outcome::Count(affected),
        })
    }

    /// Whether `sql` may be sent now: the statement guard, and no second statement after a
    /// single-statement transaction has committed. Every path to the server starts here.
    fn admit(&self, sql: &str) -> Result<(), AppError> {
        guard::check(sql)?;
        if self.state == State::Finished {
            return Err(AppError::internal(anyhow::anyhow!(
                "a single-statement TenantTx ran a second statement"
            )));
        }
        Ok(())
    }

    /// `sql` as cached: the schema (and version) in a comment makes the cache key per schema;
    /// PostgreSQL ignores it. (Built by hand: `format!` costs several times as much per call.)
    fn keyed(&self, sql: &str) -> String {
        let mut keyed = String::with_capacity(self.cache_tag.len() + sql.len() + 7);
        keyed.push_str("/* ");
        keyed.push_str(&self.cache_tag);
        keyed.push_str(" */ ");
        keyed.push_str(sql);
        keyed
    }

    /// The parameters of `SET_SCOPE`, typed (for unnamed statements).
    fn scope_typed(&self) -> [(&(dyn ToSql + Sync), Type); 2] {
        [(&self.search_path, Type::TEXT), (&self.role, Type::TEXT)]
    }

    /// The first statement: joined with `begin` and `set_config`.
    ///
    /// Futures are polled in order and each sends its messages on first poll, so the server
    /// receives begin, set_config and then the statement in one flush. On a statement-cache hit
    /// the execute goes out in that same flush (one round trip); on a miss the prepare does,
    /// behind set_config, as it must: unqualified table names resolve against the search_path.
    /// In single mode `commit` is polled right after the statement's first poll, so it always
    /// follows the statement.
    async fn run_first(
        &mut self,
        keyed: &str,
        params: &[&(dyn ToSql + Sync)],
        kind: Kind,
    ) -> Result<Outcome, tokio_postgres::Error> {
        let client = self.client.as_ref().expect("client present");
        // `size()` walks the whole cache, so it is only asked every 256th use of a connection.
        if Object::metrics(client).recycle_count.is_multiple_of(256)
            && client.statement_cache.size() >= MAX_CACHED_STATEMENTS
        {
            // Dropped statements are closed on the server as their last user lets go.
            client.statement_cache.clear();
        }
        // Touches no table, so it can be prepared (once per connection) outside the transaction.
        let set_scope = client.prepare_cached(SET_SCOPE).await?;
        // From here on something may have reached the server, so dropping must roll back.
        self.state = State::Open;
        let single = self.single;
        let scope: [&(dyn ToSql + Sync); 2] = [&self.search_path, &self.role];
        let (_, _, out) =
            // `execute`: the settings' values come back as a row, which nothing needs to decode.
            futures::try_join!(client.batch_execute("begin"), client.execute(&set_scope, &scope), async {
                let statement = client.prepare_cached(keyed).await?;
                if !single {
                    return kind.run(client, &statement, params).await;
                }
                let (out, ()) =
                    futures::try_join!(kind.run(client, &statement, params), client.batch_execute("commit"))?;
                Ok(out)
            },)?;
        if single {
            self.state = State::Finished;
        }
        Ok(out)
    }

    /// A later statement, in the open transaction.
    ///
    /// A failed statement aborts the transaction, so a statement that could meet a stale plan
    /// (one that returns rows) runs under a savepoint sent in the same flush: on 0A000 the
    /// transaction rolls back to it and the statement runs once more, freshly prepared.
    /// Statements without a result (inserts, deletes) have no result type to go stale.
    async fn run_open(
        &self,
        keyed: &str,
        params: &[&(dyn ToSql + Sync)],
        kind: Kind,
    ) -> Result<Outcome, tokio_postgres::Error> {
        let client = self.client();
        let statement = client.prepare_cached(keyed).await?;
        if statement.columns().is_empty() {
            return kind.run(client, &statement, params).await;
        }
        let attempt = futures::try_join!(
            client.batch_execute("savepoint tenantry_stale_plan"),
            kind.run(client, &statement, params),
            client.batch_execute("release savepoint tenantry_stale_plan"),
        );
        match attempt {
            Ok((_, out, _)) => Ok(out),
            Err(err) if is_stale_plan(&err) => {
                client.batch_execute("rollback to savepoint tenantry_stale_plan").await?;
                client.statement_cache.clear();
                tracing::info!("stale cached plan after a schema change; retried from a savepoint");
                let statement = client.prepare_cached(keyed).await?;
                let (out, ()) = futures::try_join!(
                    kind.run(client, &statement, params),
                    client.batch_execute("release savepoint tenantry_stale_plan"),
                )?;
                Ok(out)
            }
            Err(err) => Err(err),
        }
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

/// Whether PostgreSQL refused a cached statement whose result type changed under it
/// (SQLSTATE 0A000, "cached plan must not change result type"). Matched on the code alone, so
/// a localised server still matches; another 0A000 simply fails again on its one retry.
fn is_stale_plan(err: &tokio_postgres::Error) -> bool {
    err.code() == Some(&tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED)
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
