//! Database errors as the product sees them: which are outages (retry later), which are the
//! client's bad data, and which constraint a write violated.

use super::AppError;

impl From<tokio_postgres::Error> for AppError {
    fn from(err: tokio_postgres::Error) -> Self {
        Self::Internal(err.into())
    }
}

impl From<deadpool_postgres::PoolError> for AppError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        Self::Internal(err.into())
    }
}

/// Whether `err` (anywhere in its chain) says the database cannot be reached, as opposed to a
/// statement failing: a refused or lost connection, a pool that cannot connect, or a server
/// that is starting up or shutting down.
pub fn is_outage(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        if let Some(pool) = cause.downcast_ref::<deadpool_postgres::PoolError>() {
            use deadpool_postgres::PoolError;
            return match pool {
                PoolError::Timeout(_) | PoolError::Closed => true,
                PoolError::Backend(pg) => pg_outage(pg),
                _ => false,
            };
        }
        cause.downcast_ref::<tokio_postgres::Error>().is_some_and(pg_outage)
    })
}

fn pg_outage(err: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        // Class 08 (connection exception) and 57P01–57P03 (shutdown, crash, starting up).
        return code.code().starts_with("08")
            || [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW]
                .contains(code);
    }
    // Without a server message: the connection is closed, or I/O on it failed.
    err.is_closed() || std::error::Error::source(err).is_some_and(|s| s.is::<std::io::Error>())
}

/// SQLSTATEs of a statement that lost a race: retrying can succeed.
pub(super) const TRANSIENT: [tokio_postgres::error::SqlState; 4] = [
    tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE,
    tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED,
    tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE,
    tokio_postgres::error::SqlState::QUERY_CANCELED,
];

/// Whether a PostgreSQL error anywhere in `err`'s chain has a code `pick` accepts.
pub(super) fn has_sqlstate(
    err: &anyhow::Error,
    pick: impl Fn(&tokio_postgres::error::SqlState) -> bool,
) -> bool {
    err.chain()
        .any(|cause| cause.downcast_ref::<tokio_postgres::Error>().and_then(|e| e.code()).is_some_and(&pick))
}

/// Whether PostgreSQL refused text it cannot store: NUL (22021) or an untranslatable
/// character (22P05).
pub(super) fn is_unstorable_text(err: &anyhow::Error) -> bool {
    use tokio_postgres::error::SqlState;
    err.chain().any(|cause| {
        cause.downcast_ref::<tokio_postgres::Error>().and_then(|e| e.code()).is_some_and(|code| {
            *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE || *code == SqlState::UNTRANSLATABLE_CHARACTER
        })
    })
}

/// The name of the constraint a database error violated, if any (for mapping to `CONFLICT`).
pub fn violated_constraint(err: &tokio_postgres::Error) -> Option<&str> {
    err.as_db_error().and_then(|db| db.constraint())
}
