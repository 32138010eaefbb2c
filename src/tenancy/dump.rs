//! A tenant schema as `pg_dump` writes it (plain SQL), renamed and replayed through our own
//! connection so the restore shares one transaction with the tenant's control rows.
//!
//! Renaming touches SQL only, never data: lines between `COPY … FROM stdin;` and `\.` pass
//! through untouched, so a project whose text mentions the old schema name keeps it.

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::SinkExt;

use crate::db::SchemaName;
use crate::db::pg_bin::find_program;

/// Plain-format `pg_dump` output for one schema.
#[derive(Debug, Clone)]
pub struct SchemaDump(String);

impl SchemaDump {
    pub fn from_sql(sql: String) -> Self {
        Self(sql)
    }

    pub fn as_sql(&self) -> &str {
        &self.0
    }

    /// Runs `pg_dump` for `schema` on the database at `url`: structure and data, no owners or
    /// grants (the importing database has its own roles).
    pub async fn take(url: &str, schema: &SchemaName) -> anyhow::Result<Self> {
        let pg_dump = find_program("pg_dump").context(
            "pg_dump was not found on PATH or under /usr/lib/postgresql/*/bin \
             (Debian/Ubuntu: apt-get install postgresql-client)",
        )?;
        let output = tokio::process::Command::new(&pg_dump)
            .args(["--format=plain", "--no-owner", "--no-privileges", "--schema"])
            .arg(schema.as_str())
            .arg("--dbname")
            .arg(url)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {}", pg_dump.display()))?;
        if !output.status.success() {
            bail!("pg_dump failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(Self(String::from_utf8(output.stdout)?))
    }

    /// The dump with every SQL mention of schema `from` changed to `to`.
    pub fn renamed(&self, from: &SchemaName, to: &SchemaName) -> Self {
        let mut out = String::with_capacity(self.0.len());
        for chunk in self.chunks() {
            match chunk {
                Chunk::Sql(line) => out.push_str(&rename_identifier(line, from.as_str(), to.as_str())),
                Chunk::CopyData(line) => out.push_str(line),
            }
        }
        Self(out)
    }

    /// Replays the dump on `client` (inside the caller's transaction). The dump sets a
    /// session-level search_path, so `client` must be a connection of its own, never pooled.
    pub async fn restore(&self, client: &tokio_postgres::Transaction<'_>) -> anyhow::Result<()> {
        let mut sql = String::new();
        let mut copy: Option<(String, String)> = None;
        for chunk in self.chunks() {
            match chunk {
                Chunk::Sql(line) if line.trim_end() == "\\." => {
                    let (statement, data) = copy.take().context("\\. outside COPY")?;
                    let sink = client.copy_in(statement.as_str()).await?;
                    futures::pin_mut!(sink);
                    sink.send(Bytes::from(data)).await?;
                    sink.finish().await?;
                }
                Chunk::Sql(line) if is_copy_header(line) => {
                    client.batch_execute(&sql).await?;
                    sql.clear();
                    copy = Some((line.trim_end().to_owned(), String::new()));
                }
                // pg_dump's psql-only guards (`\restrict`, `\unrestrict`) mean nothing here.
                Chunk::Sql(line) if line.starts_with("\\restrict") || line.starts_with("\\unrestrict") => {}
                Chunk::Sql(line) if line.starts_with('\\') => {
                    bail!("unexpected psql command in dump: {}", line.trim_end())
                }
                Chunk::Sql(line) => sql.push_str(line),
                Chunk::CopyData(line) => copy.as_mut().context("COPY data outside COPY")?.1.push_str(line),
            }
        }
        if copy.is_some() {
            bail!("the dump ends inside a COPY block");
        }
        client.batch_execute(&sql).await?;
        Ok(())
    }

    /// Lines (with their newline), each marked as SQL or as COPY data; `\.` counts as SQL.
    fn chunks(&self) -> impl Iterator<Item = Chunk<'_>> {
        let mut in_copy = false;
        self.0.split_inclusive('\n').map(move |line| {
            if in_copy {
                if line.trim_end_matches(['\n', '\r']) == "\\." {
                    in_copy = false;
                    return Chunk::Sql(line);
                }
                return Chunk::CopyData(line);
            }
            if is_copy_header(line) {
                in_copy = true;
            }
            Chunk::Sql(line)
        })
    }
}

enum Chunk<'a> {
    Sql(&'a str),
    CopyData(&'a str),
}

fn is_copy_header(line: &str) -> bool {
    line.starts_with("COPY ") && line.trim_end().ends_with(" FROM stdin;")
}

/// Replaces `from` where it stands as a whole identifier (quoted or not) in `line`.
fn rename_identifier(line: &str, from: &str, to: &str) -> String {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$';
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(from) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + from.len()..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_some_and(is_ident) || after.is_some_and(is_ident) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = &rest[at + from.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "SET client_min_messages = warning;\n\
        \\restrict abc\n\
        CREATE SCHEMA t_old;\n\
        CREATE TABLE t_old.projects (id uuid, name text);\n\
        CREATE TABLE t_old2.other (id int);\n\
        COPY t_old.projects (id, name) FROM stdin;\n\
        1\tmentions t_old.projects in its name\n\
        \\.\n\
        ALTER TABLE ONLY \"t_old\".projects ADD CONSTRAINT x PRIMARY KEY (id);\n";

    #[test]
    fn renaming_changes_sql_and_leaves_data_alone() {
        let from = SchemaName::parse("t_old").unwrap();
        let to = SchemaName::parse("t_new").unwrap();
        let out = SchemaDump::from_sql(DUMP.into()).renamed(&from, &to);
        let sql = out.as_sql();
        assert!(sql.contains("CREATE SCHEMA t_new;"));
        assert!(sql.contains("CREATE TABLE t_new.projects"));
        assert!(sql.contains("COPY t_new.projects (id, name) FROM stdin;"));
        assert!(sql.contains("ALTER TABLE ONLY \"t_new\".projects"));
        // Another schema whose name merely starts the same is not touched, nor is data.
        assert!(sql.contains("CREATE TABLE t_old2.other"));
        assert!(sql.contains("1\tmentions t_old.projects in its name\n"));
    }
}
