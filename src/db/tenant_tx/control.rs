//! `TenantTx::control`: statements on `control` inside a tenant transaction, as the login role.
//!
//! Some writes must commit or roll back with the tenant's data: a membership change with its
//! audit entry, a job or a mail enqueued by the request that caused it, a NOTIFY sent on commit.
//! They stay in the tenant's transaction, but not under the tenant's role (which has no right
//! on `control`): the role is reset for the one statement and set back after it, all in the
//! statement's own flush, so the detour costs no round trip. Every such statement is written
//! `tx.control()…`, so the statements that run with more than the tenant's rights can be listed
//! with one search (`grep -rn "control()" src/`).

use deadpool_postgres::Object;
use std::sync::Arc;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};

use super::{Kind, Outcome, SET_SCOPE, State, TenantTx};
use crate::db::Statements;
use crate::db::unnamed::{self, ParamTypes};
use crate::error::AppError;

/// Sets the role back to the tenant's after a control statement (or the login role while the
/// tenant has none).
const RESTORE_ROLE: &str = "select set_config('role', coalesce(to_regrole($1)::text, 'none'), true)";

/// A tenant transaction's control-plane statements: see the module comment.
pub struct Control<'a>(&'a mut TenantTx);

impl TenantTx {
    /// Runs the next statements on `control`, as the login role, in this transaction.
    pub fn control(&mut self) -> Control<'_> {
        Control(self)
    }

    async fn run_control(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        kind: Kind,
    ) -> Result<Outcome, AppError> {
        self.admit(sql)?;
        let pending = self.state == State::Pending;
        self.state = State::Open;
        let single = self.single;
        let keyed;
        let client = self.client.as_ref().expect("client present");
        let unnamed = self.unnamed.as_ref();
        let text = if unnamed.is_some() {
            sql
        } else {
            keyed = self.keyed(sql);
            &keyed
        };
        let scope = self.scope_typed();
        let role: [(&(dyn ToSql + Sync), Type); 1] = [(&self.role, Type::TEXT)];
        let before = async {
            if pending {
                futures::try_join!(
                    client.batch_execute("begin"),
                    client.query_typed(SET_SCOPE, &scope),
                    client.batch_execute("set local role none"),
                )?;
            } else {
                client.batch_execute("set local role none").await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        };
        let statement = async {
            // Prepared (or its types learnt) first: on a miss that is a round trip, and what
            // follows the statement must not overtake its execution.
            let prepared = prepare(client, unnamed, text).await?;
            let out = prepared.run(client, text, params, kind);
            if single {
                let (out, ()) = futures::try_join!(out, client.batch_execute("commit"))?;
                return Ok(out);
            }
            let (out, _) = futures::try_join!(out, client.query_typed(RESTORE_ROLE, &role))?;
            Ok(out)
        };
        let result = futures::try_join!(before, statement).map(|((), out)| out);
        if let (Err(_), Some(known)) = (&result, unnamed) {
            known.forget(sql);
        }
        if single {
            self.state = State::Finished;
        }
        Ok(result?)
    }
}

/// A statement ready to run: a cached prepared one, or behind a transaction pooler the
/// parameter types of an unnamed one.
enum Prepared {
    Named(Statement),
    Unnamed(Arc<[Type]>),
}

async fn prepare(
    client: &Object,
    unnamed: Option<&ParamTypes>,
    text: &str,
) -> Result<Prepared, tokio_postgres::Error> {
    Ok(match unnamed {
        None => Prepared::Named(client.prepare_cached(text).await?),
        Some(known) => Prepared::Unnamed(known.get(client, text).await?),
    })
}

impl Prepared {
    /// Sends the statement on first poll.
    async fn run(
        &self,
        client: &Object,
        text: &str,
        params: &[&(dyn ToSql + Sync)],
        kind: Kind,
    ) -> Result<Outcome, tokio_postgres::Error> {
        match self {
            Self::Named(statement) => kind.run(client, statement, params).await,
            Self::Unnamed(types) => {
                let (rows, affected) = unnamed::run(client, text, types, params).await?;
                Ok(match kind {
                    Kind::Rows => Outcome::Rows(rows),
                    Kind::Count => Outcome::Count(affected),
                })
            }
        }
    }
}

impl Control<'_> {
    /// Runs `sql` and returns its rows.
    pub async fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, AppError> {
        self.0.run_control(sql, params, Kind::Rows).await.map(Outcome::rows)
    }

    /// Runs `sql`, which must return at most one row.
    pub async fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, AppError> {
        super::outcome::at_most_one(self.query(sql, params).await?)
    }

    /// Runs `sql`, which must return exactly one row.
    pub async fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, AppError> {
        super::outcome::exactly_one(self.query(sql, params).await?)
    }

    /// Runs `sql` and returns the number of rows it touched.
    pub async fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, AppError> {
        self.0.run_control(sql, params, Kind::Count).await.map(Outcome::count)
    }
}

impl Statements for Control<'_> {
    async fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, AppError> {
        Control::query(self, sql, params).await
    }

    async fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, AppError> {
        Control::query_one(self, sql, params).await
    }

    async fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, AppError> {
        Control::execute(self, sql, params).await
    }
}
