//! Citus, when the database has it: the few statements that place schemas on purpose.
//!
//! With `citus.enable_schema_based_sharding = on`, every `create schema` becomes a distributed
//! schema (a tenant's own shard group, movable with `citus_schema_move`). Without the `citus`
//! extension none of this runs and nothing changes. See docs/SCALING.md.

use tokio_postgres::{GenericClient, Transaction};

use super::SchemaName;
use super::rows::Columns;
use crate::error::AppError;

/// Whether the `citus` extension is installed in this database.
pub async fn installed(tx: &Transaction<'_>) -> Result<bool, AppError> {
    let row = tx
        .query_one("select exists (select 1 from pg_extension where extname = 'citus') as installed", &[])
        .await?;
    Ok(Columns::of(&row, "db::citus::installed").try_get("installed")?)
}

/// Whether new schemas become distributed schemas in this transaction.
pub async fn schema_sharding_on(tx: &Transaction<'_>) -> Result<bool, AppError> {
    let row = tx
        .query_one(
            "select coalesce(current_setting('citus.enable_schema_based_sharding', true), '') = 'on' as sharding",
            &[],
        )
        .await?;
    Ok(Columns::of(&row, "db::citus::schema_sharding_on").try_get("sharding")?)
}

/// Schemas created in the rest of this transaction stay plain, coordinator-local schemas.
pub async fn keep_schemas_local(tx: &Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    tx.execute("select set_config('citus.enable_schema_based_sharding', 'off', true)", &[]).await?;
    Ok(())
}

/// Turns a local schema (and every table in it) into a distributed schema.
pub async fn distribute(tx: &Transaction<'_>, schema: &SchemaName) -> Result<(), tokio_postgres::Error> {
    tx.execute("select citus_schema_distribute($1::text::regnamespace)", &[&schema.as_str()]).await?;
    Ok(())
}

/// A node of the Citus cluster, as `pg_dist_node` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for Node {
    type Err = String;

    /// `HOST:PORT`, or `[V6]:PORT`; the host as the cluster knows it (`citus_add_node`'s name).
    fn from_str(raw: &str) -> Result<Self, String> {
        let refuse = || format!("{raw:?} is not HOST:PORT (for example worker-1.internal:5432)");
        let (host, port) = raw.rsplit_once(':').ok_or_else(refuse)?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let port = port.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(refuse)?;
        if host.is_empty() || host.len() > 253 || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(refuse());
        }
        Ok(Self { host: host.to_owned(), port })
    }
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How `citus_schema_move` copies the tenant (its `shard_transfer_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransferMode {
    /// Logical replication, writes blocked only for the switch-over; refused if a table has no
    /// replica identity.
    Auto,
    /// Logical replication even for tables without a replica identity (their updates and
    /// deletes fail during the copy).
    ForceLogical,
    /// Blocks the tenant's writes for the whole copy.
    BlockWrites,
}

impl TransferMode {
    fn as_citus(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::ForceLogical => "force_logical",
            Self::BlockWrites => "block_writes",
        }
    }
}

/// Why a move cannot start. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum MoveRefused {
    #[error(
        "the citus extension is not installed in this database: moving a tenant between nodes needs a Citus \
         cluster (docs/SCALING.md, \"Citus\")"
    )]
    NoCitus,
    #[error(
        "schema {0} is not a distributed schema; distribute it first with \
         `select citus_schema_distribute('{0}');` (docs/SCALING.md)"
    )]
    NotDistributed(SchemaName),
    #[error(
        "{target} is not an active primary node of this cluster (nodes: {known}); add it with citus_add_node first"
    )]
    UnknownNode { target: Node, known: String },
    #[error(
        "wal_level is {level:?} on {node}: a live move copies the tenant with logical replication; set \
         wal_level = logical there and restart it (or pass --mode block-writes to block the tenant's writes \
         during the copy)"
    )]
    WalLevel { node: String, level: String },
    #[error("{0:#}")]
    Database(anyhow::Error),
}

impl From<AppError> for MoveRefused {
    fn from(e: AppError) -> Self {
        Self::Database(e.into_anyhow())
    }
}

impl From<tokio_postgres::Error> for MoveRefused {
    fn from(e: tokio_postgres::Error) -> Self {
        AppError::from(e).into()
    }
}

impl From<super::rows::ColumnError> for MoveRefused {
    fn from(e: super::rows::ColumnError) -> Self {
        AppError::from(e).into()
    }
}

/// What a move did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// The tenant was already on the target node.
    AlreadyThere,
    /// Moved from this node.
    From(Node),
}

/// The node that holds `schema`'s shards.
pub async fn placement(
    client: &impl GenericClient,
    schema: &SchemaName,
) -> Result<Option<Node>, MoveRefused> {
    let rows = client
        .query(
            "select distinct s.nodename, s.nodeport
               from citus_shards s join pg_class c on c.oid = s.table_name
              where c.relnamespace = $1::text::regnamespace",
            &[&schema.as_str()],
        )
        .await?;
    let mut nodes = rows.iter().map(|row| {
        let row = Columns::of(row, "db::citus::placement");
        let port: i32 = row.try_get("nodeport")?;
        Ok::<_, AppError>(Node { host: row.try_get("nodename")?, port: u16::try_from(port).unwrap_or(0) })
    });
    Ok(nodes.next().transpose()?)
}

/// Checks that `schema` can move to `target` while it serves, then moves it with
/// `citus_schema_move`. Holds the tenant's DDL lock meanwhile, so no migration or purge of this
/// tenant runs during the copy (they wait, then proceed on the new node).
pub async fn move_schema(
    pool: &deadpool_postgres::Pool,
    schema: &SchemaName,
    target: &Node,
    mode: TransferMode,
) -> Result<Moved, MoveRefused> {
    let client = pool.get().await.map_err(AppError::from)?;
    check_move(&**client, schema, target, mode).await?;
    if placement(&**client, schema).await?.as_ref() == Some(target) {
        return Ok(Moved::AlreadyThere);
    }
    let from =
        placement(&**client, schema).await?.ok_or_else(|| MoveRefused::NotDistributed(schema.clone()))?;
    // The tenant's DDL lock, held by an open transaction on a second connection (no xid: it
    // does not hold back the move's replication slot), so that it is transaction-scoped like
    // every lock of ours and works behind a transaction pooler.
    let mut holder = pool.get().await.map_err(AppError::from)?;
    let lock = holder.transaction().await?;
    super::migrate::lock_schema(&lock, schema).await?;
    client
        .execute(
            "select citus_schema_move($1::text::regnamespace, $2, $3, $4::text::citus.shard_transfer_mode)",
            &[&schema.as_str(), &target.host, &i32::from(target.port), &mode.as_citus()],
        )
        .await?;
    lock.commit().await?;
    Ok(Moved::From(from))
}

async fn check_move(
    client: &impl GenericClient,
    schema: &SchemaName,
    target: &Node,
    mode: TransferMode,
) -> Result<(), MoveRefused> {
    let citus = client
        .query_one("select exists (select 1 from pg_extension where extname = 'citus') as installed", &[])
        .await?;
    if !Columns::of(&citus, "db::citus::check_move").try_get::<bool>("installed")? {
        return Err(MoveRefused::NoCitus);
    }
    let distributed = client
        .query_one(
            "select exists (select 1 from pg_dist_schema where schemaid = $1::text::regnamespace) as distributed",
            &[&schema.as_str()],
        )
        .await?;
    if !Columns::of(&distributed, "db::citus::check_move").try_get::<bool>("distributed")? {
        return Err(MoveRefused::NotDistributed(schema.clone()));
    }
    let nodes = client
        .query(
            "select nodename, nodeport from pg_dist_node where isactive and noderole = 'primary' order by nodeid",
            &[],
        )
        .await?;
    let mut known = Vec::with_capacity(nodes.len());
    for row in &nodes {
        let row = Columns::of(row, "db::citus::check_move");
        let port: i32 = row.try_get("nodeport")?;
        known.push(Node { host: row.try_get("nodename")?, port: u16::try_from(port).unwrap_or(0) });
    }
    if !known.contains(target) {
        let known = known.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        return Err(MoveRefused::UnknownNode { target: target.clone(), known });
    }
    if mode != TransferMode::BlockWrites {
        let levels = client
            .query(
                "select 'coordinator' as node, current_setting('wal_level') as level
                 union all
                 select nodename || ':' || nodeport, result from run_command_on_workers('show wal_level')",
                &[],
            )
            .await?;
        for row in &levels {
            let row = Columns::of(row, "db::citus::check_move");
            let level: String = row.try_get("level")?;
            if level != "logical" {
                return Err(MoveRefused::WalLevel { node: row.try_get("node")?, level });
            }
        }
    }
    Ok(())
}
