//! A tenant schema as `pg_dump` writes it (plain SQL), renamed, checked statement by statement
//! (`dump_check`) and replayed one statement per execute through our own connection, so the
//! restore shares one transaction with the tenant's control rows.
//!
//! Renaming touches SQL only, never data: lines between `COPY … FROM stdin;` and `\.` pass
//! through untouched, so a project whose text mentions the old schema name keeps it.

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::SinkExt;

use super::dump_check::check;
use crate::db::SchemaName;
use crate::db::pg_bin::find_program;
use crate::db::script::{Statement, split};

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

    /// Reads the dump into the steps a restore into `schema` runs, checking every statement
    /// (`dump_check`): a file that touches anything but `schema` is refused here, whole.
    pub fn plan(&self, schema: &SchemaName) -> Result<Restore, DumpRefused> {
        let mut steps = Vec::new();
        let mut sql = String::new();
        let mut copy: Option<(String, String)> = None;
        for chunk in self.chunks() {
            match chunk {
                Chunk::Sql(line) if line.trim_end() == "\\." => {
                    let (statement, data) =
                        copy.take().ok_or_else(|| DumpRefused::new("\\. outside COPY", line))?;
                    steps.push(Step::Copy { statement, data });
                }
                Chunk::Sql(line) if is_copy_header(line) => {
                    push_statements(&mut steps, &sql, schema)?;
                    sql.clear();
                    let header = line.trim_end().trim_end_matches(';');
                    let statement = only_statement(header)?;
                    check(&statement.tokens, schema).map_err(|why| DumpRefused::new(why, header))?;
                    copy = Some((header.to_owned(), String::new()));
                }
                // pg_dump's psql-only guards (`\restrict`, `\unrestrict`) mean nothing here.
                Chunk::Sql(line) if line.starts_with("\\restrict") || line.starts_with("\\unrestrict") => {}
                Chunk::Sql(line) if line.starts_with('\\') => {
                    return Err(DumpRefused::new(
                        "psql commands other than pg_dump's guards are not run",
                        line,
                    ));
                }
                Chunk::Sql(line) => sql.push_str(line),
                Chunk::CopyData(line) => match copy.as_mut() {
                    Some((_, data)) => data.push_str(line),
                    None => return Err(DumpRefused::new("COPY data outside COPY", line)),
                },
            }
        }
        if let Some((statement, _)) = copy {
            return Err(DumpRefused::new("the dump ends inside a COPY block", &statement));
        }
        push_statements(&mut steps, &sql, schema)?;
        Ok(Restore { steps })
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

/// A checked dump: its statements and data blocks, in order.
#[derive(Debug)]
pub struct Restore {
    steps: Vec<Step>,
}

#[derive(Debug)]
enum Step {
    Sql(String),
    Copy { statement: String, data: String },
}

impl Restore {
    /// Replays the steps in `tx`, one statement per extended-protocol message. Every setting the
    /// dump makes is transaction-local (see `plan`).
    pub async fn run(&self, tx: &tokio_postgres::Transaction<'_>) -> anyhow::Result<()> {
        // Unqualified names mean built-ins only, even before the dump's own first statements.
        tx.execute("select set_config('search_path', '', true)", &[]).await?;
        for step in &self.steps {
            match step {
                Step::Sql(statement) => {
                    tx.execute_typed(statement, &[]).await?;
                }
                Step::Copy { statement, data } => {
                    let sink = tx.copy_in(statement.as_str()).await?;
                    futures::pin_mut!(sink);
                    sink.send(Bytes::from(data.clone())).await?;
                    sink.finish().await?;
                }
            }
        }
        Ok(())
    }

    /// How many statements and data blocks the restore runs.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// A dump an import will not run, and the statement that made it so.
#[derive(Debug, thiserror::Error)]
#[error("the export's dump is refused: {reason}; in: {excerpt}")]
pub struct DumpRefused {
    pub reason: String,
    pub excerpt: String,
}

impl DumpRefused {
    fn new(reason: impl Into<String>, statement: &str) -> Self {
        let flat = statement.split_whitespace().collect::<Vec<_>>().join(" ");
        let excerpt = match flat.char_indices().nth(120) {
            Some((at, _)) => format!("{}…", &flat[..at]),
            None => flat,
        };
        Self { reason: reason.into(), excerpt }
    }
}

/// Splits `sql`, checks each statement and appends it as a step.
fn push_statements(steps: &mut Vec<Step>, sql: &str, schema: &SchemaName) -> Result<(), DumpRefused> {
    let statements = split(sql).map_err(|err| DumpRefused::new(err.to_string(), sql))?;
    for statement in statements {
        check(&statement.tokens, schema).map_err(|why| DumpRefused::new(why, statement.text))?;
        // pg_dump's settings are session-level; here they last for the restore's transaction
        // only, so nothing leaks to the connection's next user (a pool or a transaction pooler).
        // Its `set_config('search_path', '', false)` is what `Restore::run` does locally first.
        let first = &statement.tokens[0];
        if first.is_word("select") && statement.tokens.iter().any(|t| t.is_word("set_config")) {
            continue;
        }
        let text = match statement.text.get(..3) {
            Some(set) if first.is_word("set") => format!("{set} LOCAL{}", &statement.text[3..]),
            _ => statement.text.to_owned(),
        };
        steps.push(Step::Sql(text));
    }
    Ok(())
}

fn only_statement(sql: &str) -> Result<Statement<'_>, DumpRefused> {
    let mut statements = split(sql).map_err(|err| DumpRefused::new(err.to_string(), sql))?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        _ => Err(DumpRefused::new("a COPY line holds more than one statement", sql)),
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

    const OLD: &str = "t_0190f5b68f7e7a3c9a2b1c2d3e4f5a6b";
    const NEW: &str = "t_11111111111111111111111111111111";

    /// A dump as pg_dump 15 writes it for a tenant (abridged), under schema `OLD`.
    fn dump() -> String {
        r#"--
-- PostgreSQL database dump
--

\restrict abc

SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET client_min_messages = warning;

CREATE SCHEMA OLD;

SET default_tablespace = '';
SET default_table_access_method = heap;

CREATE TABLE OLD.audit_log (
    id bigint NOT NULL,
    details jsonb DEFAULT '{}'::jsonb NOT NULL,
    actor_kind text NOT NULL,
    CONSTRAINT audit_log_actor_kind_check CHECK ((actor_kind = ANY (ARRAY['user'::text, 'system'::text])))
);

ALTER TABLE OLD.audit_log ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME OLD.audit_log_id_seq
    START WITH 1
    CACHE 1
);

CREATE TABLE OLD.projects (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    name character varying(200) NOT NULL,
    CONSTRAINT projects_name_check CHECK (((char_length(name) >= 1) AND (char_length(name) <= 200)))
);

COPY OLD.projects (id, name) FROM stdin;
c0fe56d1-4936-47c4-bc0c-0d334308129c	a; b 'q' OLD.projects; drop schema control
\.

SELECT pg_catalog.setval('OLD.audit_log_id_seq', 1, true);

ALTER TABLE ONLY OLD.projects
    ADD CONSTRAINT projects_pkey PRIMARY KEY (id);

CREATE INDEX projects_created_at_id_idx ON OLD.projects USING btree (name, id);

\unrestrict abc
"#
        .replace("OLD", OLD)
    }

    fn schema(name: &str) -> SchemaName {
        SchemaName::parse(name).unwrap()
    }

    #[test]
    fn renaming_changes_sql_and_leaves_data_alone() {
        let sql =
            dump().replace("CREATE INDEX", &format!("CREATE TABLE {OLD}0.other (id int);\nCREATE INDEX"));
        let out = SchemaDump::from_sql(sql).renamed(&schema(OLD), &schema(NEW));
        let sql = out.as_sql();
        assert!(sql.contains(&format!("CREATE SCHEMA {NEW};")));
        assert!(sql.contains(&format!("COPY {NEW}.projects (id, name) FROM stdin;")));
        assert!(sql.contains(&format!("ALTER TABLE ONLY {NEW}.projects")));
        assert!(sql.contains(&format!("setval('{NEW}.audit_log_id_seq'")));
        // A name that merely starts the same is not touched, nor is data.
        assert!(sql.contains(&format!("CREATE TABLE {OLD}0.other")));
        assert!(sql.contains(&format!("'q' {OLD}.projects; drop schema control\n")));
    }

    #[test]
    fn a_tenant_dump_plans_one_step_per_statement_and_copy() {
        let restore = SchemaDump::from_sql(dump()).plan(&schema(OLD)).unwrap();
        // 5 settings + schema + 2 settings + 2 tables + identity + copy + setval + pkey + index;
        // the search_path statement is the restore's own, made transaction-local.
        assert_eq!(restore.len(), 15, "{restore:#?}");
        let Step::Sql(first) = &restore.steps[0] else { panic!("{:?}", restore.steps[0]) };
        assert_eq!(first, "SET LOCAL statement_timeout = 0");
        let Step::Copy { data, .. } = &restore.steps[11] else { panic!("{:?}", restore.steps[11]) };
        assert!(data.contains("drop schema control"), "data is data: {data}");
    }

    /// The dump with `sql` added before its last statement.
    fn with(sql: &str) -> String {
        dump().replace("\\unrestrict", &format!("{sql}\n\\unrestrict"))
    }

    fn refusal(sql: &str) -> String {
        let dump = SchemaDump::from_sql(with(&sql.replace("OLD", OLD)));
        dump.plan(&schema(OLD)).expect_err(sql).to_string()
    }

    #[test]
    fn statements_on_another_schema_are_refused() {
        for sql in [
            "CREATE TABLE control.evil (id int);",
            "ALTER TABLE ONLY OLD.projects ADD CONSTRAINT fk FOREIGN KEY (id) REFERENCES control.users(id);",
            "CREATE INDEX x ON control.users USING btree (email);",
            "CREATE TABLE OLD.copy (LIKE control.users);",
            "SELECT pg_catalog.setval('control.some_seq', 1, true);",
            "ALTER TABLE ONLY OLD.projects ALTER COLUMN id SET DEFAULT nextval('control.s'::regclass);",
            "CREATE SCHEMA t_22222222222222222222222222222222;",
            "COPY control.users (id, email) FROM stdin;\n1\tx\n\\.",
        ] {
            let message = refusal(sql);
            assert!(message.contains("refused"), "{sql}: {message}");
        }
    }

    #[test]
    fn statements_pg_dump_does_not_write_for_a_schema_are_refused() {
        for sql in [
            "DROP TABLE OLD.projects;",
            "INSERT INTO OLD.projects (id, name) VALUES (gen_random_uuid(), 'x');",
            "DO $$ BEGIN EXECUTE 'drop schema control cascade'; END $$;",
            "CREATE FUNCTION OLD.f() RETURNS int LANGUAGE sql AS $$ select 1 $$;",
            "CREATE TABLE OLD.stolen AS SELECT rolname FROM pg_catalog.pg_authid;",
            "ALTER TABLE OLD.projects SET SCHEMA control;",
            "SET search_path = control;",
            "SET role = postgres;",
            "SELECT pg_catalog.set_config('search_path', 'control', false);",
            "CREATE INDEX x ON OLD.projects USING btree (pg_catalog.pg_terminate_backend(1));",
            "GRANT ALL ON SCHEMA OLD TO PUBLIC;",
            "\\! rm -rf /",
        ] {
            let message = refusal(sql);
            assert!(message.contains("refused"), "{sql}: {message}");
        }
    }

    #[test]
    fn no_cut_of_any_statement_panics_the_check() {
        let sql = dump().replace("\\restrict abc", "").replace("\\unrestrict abc", "");
        let sql = sql.replace("\\.\n", "")
            + "COPY OLD.projects (id) FROM stdin;\nALTER SEQUENCE OLD.s OWNED BY OLD.t.id;\n\
            COMMENT ON CONSTRAINT c ON OLD.t IS 'x';\nCREATE TYPE OLD.mood AS ENUM ('a');";
        let sql = sql.replace("OLD", OLD);
        let statements = crate::db::script::split(&sql).unwrap();
        assert!(statements.len() > 15);
        for statement in &statements {
            for cut in 0..=statement.tokens.len() {
                let _ = check(&statement.tokens[..cut], &schema(OLD));
            }
        }
    }

    #[test]
    fn an_unterminated_statement_is_refused() {
        assert!(refusal("COMMENT ON TABLE OLD.projects IS 'never closed;").contains("never closed"));
    }
}
