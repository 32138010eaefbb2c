//! What `TenantTx` refuses to send: statement text that could leave the tenant's role.
//!
//! PostgreSQL checks `SET ROLE` against the *session* user (the server's login role), which is a
//! member of every tenant role; so inside a tenant transaction `set role t_other`, `reset role`,
//! `set session authorization` or `set_config('role', …)` would succeed in the database. The
//! database cannot refuse them, so `TenantTx` does, before a statement reaches the server:
//!
//! - a statement must begin (after comments and whitespace) with `select`, `insert`, `update`,
//!   `delete`, `with`, `values` or `table`: no `set`, `reset`, `do`, `call`, `execute`, DDL;
//! - its text must not contain `set_config` or `authorization`, in any case.
//!
//! An extended-protocol statement is exactly one statement (PostgreSQL refuses `a; b` in a
//! prepared statement), so the first word is the command. The check is on the text the code
//! wrote, which never contains user input (values travel as parameters); it stops a mistake, not
//! SQL deliberately built to evade it (e.g. dynamic SQL spelled from `chr()` calls). See
//! docs/SECURITY.md, "Tenant roles".

use crate::error::AppError;

/// Commands a tenant statement may start with.
const ALLOWED_FIRST_WORDS: [&str; 7] = ["select", "insert", "update", "delete", "with", "values", "table"];

/// Why `sql` is refused, or `None` when it may run in a tenant transaction.
pub fn refusal(sql: &str) -> Option<&'static str> {
    let first = first_word(sql);
    if !ALLOWED_FIRST_WORDS.iter().any(|w| first.eq_ignore_ascii_case(w)) {
        return Some(
            "only select, insert, update, delete, with, values and table statements run as a tenant",
        );
    }
    // One pass over the text for both needles, anchored on a rare byte of each: `_` in
    // `set_config` (index 3), `z` in `authorization` (index 7).
    let text = sql.as_bytes();
    for at in memchr::memchr3_iter(b'_', b'z', b'Z', text) {
        if text[at] == b'_' {
            if matches_at(text, at, b"set_config", 3) {
                return Some("set_config could change the transaction's role");
            }
        } else if matches_at(text, at, b"authorization", 7) {
            return Some("session authorization could change the transaction's user");
        }
    }
    None
}

/// `Ok` when `sql` may run in a tenant transaction; else an internal error naming why.
pub fn check(sql: &str) -> Result<(), AppError> {
    match refusal(sql) {
        None => Ok(()),
        Some(why) => Err(AppError::internal(anyhow::anyhow!("TenantTx refused a statement: {why}"))),
    }
}

/// The first word of `sql` after whitespace and `--` / `/* */` comments.
fn first_word(sql: &str) -> &str {
    // The usual statement starts with its command.
    if sql.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) {
        return word(sql);
    }
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, tail)| tail);
        } else if let Some(after) = rest.strip_prefix("/*") {
            // Nested comments are not followed: a mismatch only makes the first word wrong,
            // which refuses the statement.
            rest = after.split_once("*/").map_or("", |(_, tail)| tail);
        } else {
            break;
        }
    }
    word(rest)
}

/// The letters `text` begins with.
fn word(text: &str) -> &str {
    let end = text.bytes().position(|b| !b.is_ascii_alphabetic()).unwrap_or(text.len());
    &text[..end]
}

/// Whether `text` holds `needle` (lowercase) in any ASCII case such that its byte at index
/// `anchor` is `text[at]`.
fn matches_at(text: &[u8], at: usize, needle: &[u8], anchor: usize) -> bool {
    at.checked_sub(anchor)
        .and_then(|start| text.get(start..start + needle.len()))
        .is_some_and(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_statements_pass() {
        for sql in [
            "select id, name from projects where id = $1",
            "  /* t_x v3 */ select 1",
            "-- comment\ninsert into projects (id) values ($1)",
            "WITH x AS (select 1 as one) select one from x",
            "update projects set name = $2 where id = $1",
            "delete from projects where id = $1",
            "select user_id, role from control.memberships for update",
            "select size_bytes, zone_id from quiz_zz where created_at > $1 and set_at is null",
            "Select 1",
        ] {
            assert_eq!(refusal(sql), None, "{sql}");
        }
    }

    #[test]
    fn role_changes_are_refused() {
        for sql in [
            "set role t_0190f5b68f7e7a3c9a2b1c2d3e4f5a6b",
            "SET LOCAL ROLE none",
            "reset role",
            "set session authorization default",
            " /* x */ RESET ROLE",
            "select set_config('role', 'none', true)",
            "select pg_catalog.SET_CONFIG('role', 'none', true)",
            "select 1 from projects where set_config('role', $1, true) is not null",
            "do $$ begin execute 'reset role'; end $$",
            "call p()",
            "execute s",
            "create function f() returns int as 'select 1' language sql",
            "discard all",
            "select 1 /* authorization */",
            "select 1 /* AUTHORIZATION */",
            "select set_config",
            "select x from t where a_b = 1 and SeT_CoNfIg('role', 'x', true) is null",
            "",
            "/* unterminated select 1",
        ] {
            assert!(refusal(sql).is_some(), "{sql:?} passed");
        }
    }

    #[test]
    fn the_check_is_an_internal_error() {
        let err = check("reset role").unwrap_err();
        assert_eq!(err.code(), "INTERNAL");
    }
}
