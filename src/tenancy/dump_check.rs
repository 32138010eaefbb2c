//! What an import may run: the statement shapes `pg_dump --schema` writes for one tenant schema,
//! naming no other schema. Anything else refuses the whole file before it touches the database.
//!
//! The allowlist is deliberately narrow (tables, sequences, indexes, constraints, enum types,
//! comments, data): functions, triggers, views, rules, policies and grants run code or change
//! privileges, and an export file is operator input that may have been edited. A product that
//! adds such objects to its tenant migrations extends the shapes here (docs/export.md).
//!
//! The restore runs with an empty `search_path` (pg_dump's own first statements, and no
//! statement here may change it), so an unqualified name can only mean a built-in; a qualified
//! name must name the tenant's schema.

use crate::db::SchemaName;
use crate::db::script::Token;

/// Session settings pg_dump writes in its preamble, with the values it may set.
const SETTINGS: &[(&str, Option<&str>)] = &[
    ("statement_timeout", None),
    ("lock_timeout", None),
    ("idle_in_transaction_session_timeout", None),
    ("transaction_timeout", None),
    // The connection speaks UTF-8 and the lexer assumes standard strings.
    ("client_encoding", Some("UTF8")),
    ("standard_conforming_strings", Some("on")),
    ("check_function_bodies", None),
    ("xmloption", None),
    ("client_min_messages", None),
    ("row_security", None),
    ("default_tablespace", Some("")),
    ("default_table_access_method", Some("heap")),
    ("default_with_oids", Some("false")),
];

#[rustfmt::skip]
/// Functions a column default, check constraint or index expression may call.
const FUNCTIONS: &[&str] = &[
    "now", "gen_random_uuid", "nextval", "char_length", "character_length", "length",
    "octet_length", "lower", "upper", "btrim", "ltrim", "rtrim", "jsonb_typeof", "json_typeof",
    "array_length", "cardinality", "date_trunc", "timezone", "clock_timestamp",
    "statement_timestamp", "transaction_timestamp", "abs", "coalesce", "nullif", "greatest",
    "least", "to_tsvector", "setweight", "jsonb_build_object", "jsonb_build_array",
];

#[rustfmt::skip]
/// Keywords (and type names) that precede `(` without being a function call.
const PAREN_KEYWORDS: &[&str] = &[
    "check", "key", "unique", "references", "btree", "hash", "gist", "gin", "brin", "spgist",
    "include", "where", "any", "all", "some", "in", "identity", "values", "exists", "varying",
    "numeric", "decimal", "char", "character", "varchar", "bit", "time", "timestamp", "interval",
    "float", "not", "and", "or", "default", "exclude", "with", "as", "array", "row", "between",
    "is", "then", "else", "when", "from", "to", "range", "list", "by", "distinct", "on", "enum",
];

/// Shapes of `ALTER TABLE [ONLY] <table> …` that pg_dump writes.
const ALTER_TABLE: &[&[&str]] = &[
    &["add", "constraint"],
    &["alter", "column", "*", "add", "generated"],
    &["alter", "column", "*", "set", "default"],
    &["alter", "column", "*", "set", "statistics"],
    &["attach", "partition"],
    &["cluster", "on"],
    &["replica", "identity"],
];

/// Why a statement is refused, for the operator.
pub type Refusal = String;

/// Accepts a statement pg_dump writes for `schema`, refusing every other.
pub fn check(tokens: &[Token<'_>], schema: &SchemaName) -> Result<(), Refusal> {
    let s = schema.as_str();
    let starts = |words: &[&str]| starts_with(tokens, words);
    if starts(&["set"]) {
        return check_setting(tokens);
    }
    if starts(&["select", "pg_catalog", ".", "set_config"]) {
        let expected =
            ["select", "pg_catalog", ".", "set_config", "(", "'search_path'", ",", "''", ",", "false", ")"];
        return if starts_with(tokens, &expected) && tokens.len() == expected.len() {
            Ok(())
        } else {
            Err("it changes a setting other than emptying search_path".into())
        };
    }
    if starts(&["select", "pg_catalog", ".", "setval", "("]) {
        // `select pg_catalog.setval('<schema>.<sequence>', <number>, true|false)`, exactly.
        let exact = tokens.len() == 11
            && matches!(tokens[7], Token::Number(_))
            && (tokens[9].is_word("true") || tokens[9].is_word("false"));
        return match tokens.get(5) {
            Some(Token::Str(seq)) if exact && names_schema(seq, s) => Ok(()),
            _ => Err("it sets a sequence outside the tenant's schema".into()),
        };
    }
    if starts(&["create", "schema"]) {
        return match tokens.get(2).and_then(Token::ident) {
            Some(name) if name == s && tokens.len() == 3 => Ok(()),
            _ => Err(format!("it creates a schema other than {s}")),
        };
    }
    let object_at = if starts(&["create", "table"]) {
        // A column list or a partition; never `AS SELECT …`, which would copy data from elsewhere.
        let body = tokens.get(5).is_some_and(|t| *t == Token::Symbol('(') || t.is_word("partition"));
        if !body {
            return Err("it creates a table from a query".into());
        }
        2
    } else if starts(&["create", "sequence"])
        || (starts(&["create", "type"]) && tokens.get(6).is_some_and(|t| t.is_word("enum")))
        || (starts(&["alter", "sequence"]) && tokens.get(5).is_some_and(|t| t.is_word("owned")))
    {
        2
    } else if starts(&["alter", "table"]) {
        let at = if tokens.get(2).is_some_and(|t| t.is_word("only")) { 3 } else { 2 };
        let rest = tokens.get(at + 3..).unwrap_or_default();
        if !ALTER_TABLE.iter().any(|shape| starts_with(rest, shape)) || has_top_level_comma(rest) {
            return Err("it alters a table in a way pg_dump does not".into());
        }
        at
    } else if starts(&["create", "index"]) || starts(&["create", "unique", "index"]) {
        let on = tokens.iter().position(|t| t.is_word("on")).ok_or("an index without ON")?;
        if tokens.get(on + 1).is_some_and(|t| t.is_word("only")) { on + 2 } else { on + 1 }
    } else if starts(&["comment", "on", "schema"]) {
        return match tokens.get(3).and_then(Token::ident) {
            Some(name) if name == s => generic(tokens, s),
            _ => Err(format!("it comments on a schema other than {s}")),
        };
    } else if starts(&["comment", "on", "constraint"]) {
        5
    } else if ["table", "column", "index", "sequence", "type"].iter().any(|k| starts(&["comment", "on", k])) {
        3
    } else if starts(&["copy"]) {
        return check_copy(tokens, s);
    } else {
        return Err(
            "an import restores tables, sequences, indexes, constraints, enum types, comments and data only"
                .into(),
        );
    };
    if !qualified_in(tokens, object_at, s) {
        return Err(format!("its object is not in the schema {s}"));
    }
    generic(tokens, s)
}

/// `COPY <schema>.<table> (<columns>) FROM stdin`, nothing more.
fn check_copy(tokens: &[Token<'_>], s: &str) -> Result<(), Refusal> {
    let n = tokens.len();
    let tail_ok = n >= 8
        && tokens[n - 2].is_word("from")
        && tokens[n - 1].is_word("stdin")
        && tokens[n - 3] == Token::Symbol(')')
        && tokens[4] == Token::Symbol('(')
        && tokens[5..n - 3].iter().all(|t| t.ident().is_some() || *t == Token::Symbol(','));
    if tail_ok && qualified_in(tokens, 1, s) {
        Ok(())
    } else {
        Err(format!("only COPY <{s}.table> (<columns>) FROM stdin loads data"))
    }
}

fn check_setting(tokens: &[Token<'_>]) -> Result<(), Refusal> {
    let name = tokens.get(1).and_then(Token::ident).unwrap_or_default();
    let Some((_, allowed)) = SETTINGS.iter().find(|(n, _)| *n == name) else {
        return Err(format!("it sets {name:?}, which pg_dump does not"));
    };
    let value = match (tokens.get(2), tokens.get(3), tokens.len()) {
        (Some(Token::Symbol('=')), Some(v), 4) => v,
        (Some(t), Some(v), 4) if t.is_word("to") => v,
        _ => return Err(format!("it sets {name} to an expression")),
    };
    let text = match value {
        Token::Word(w) | Token::Number(w) => (*w).to_owned(),
        Token::Str(v) => v.clone(),
        _ => String::new(),
    };
    match allowed {
        Some(only) if !text.eq_ignore_ascii_case(only) => Err(format!("it sets {name} to {text:?}")),
        _ => Ok(()),
    }
}

/// Rules every statement obeys: qualified names name the tenant's schema (or a built-in),
/// function calls are known built-ins, and names given as strings stay in the schema.
fn generic(tokens: &[Token<'_>], s: &str) -> Result<(), Refusal> {
    for (i, token) in tokens.iter().enumerate() {
        let before = i.checked_sub(1).map(|j| &tokens[j]);
        let after = tokens.get(i + 1);
        let qualifier =
            (before == Some(&Token::Symbol('.'))).then(|| i.checked_sub(2).map(|j| &tokens[j])).flatten();
        // The first part of a dotted name.
        let first_part = after == Some(&Token::Symbol('.')) && before != Some(&Token::Symbol('.'));
        if let Some(name) = token.ident().filter(|n| first_part && n != s && n != "pg_catalog") {
            return Err(format!("it names the schema {name:?}, not the tenant's"));
        }
        // A call: an unqualified (or pg_catalog) name before `(`.
        let builtin_path = qualifier.is_none_or(|q| q.ident().as_deref() == Some("pg_catalog"));
        let call = after == Some(&Token::Symbol('(')) && builtin_path;
        let known = |n: &String| FUNCTIONS.contains(&n.as_str()) || PAREN_KEYWORDS.contains(&n.as_str());
        if let Some(name) = token.ident().filter(|n| call && !known(n)) {
            return Err(format!("it calls {name}(), which an import does not allow"));
        }
        // Strings read as relation names: casts to reg* types and nextval's argument.
        if let Token::Str(text) = token {
            let cast = tokens.get(i + 3).filter(|_| after == Some(&Token::Symbol(':')));
            let is_reg_cast = cast.and_then(Token::ident).is_some_and(|t| t.starts_with("reg"));
            let is_nextval = i >= 2 && tokens[i - 2].is_word("nextval");
            if is_reg_cast && !cast.is_some_and(|t| t.is_word("regclass")) {
                return Err("it casts a string to an object other than a relation".into());
            }
            if (is_reg_cast || is_nextval) && !names_schema(text, s) {
                return Err(format!("it refers to {text:?}, outside the tenant's schema"));
            }
        }
    }
    Ok(())
}

/// Whether `tokens[at..]` is `<schema>.<name>` with the tenant's schema.
fn qualified_in(tokens: &[Token<'_>], at: usize, s: &str) -> bool {
    tokens.get(at).and_then(Token::ident).as_deref() == Some(s)
        && tokens.get(at + 1) == Some(&Token::Symbol('.'))
        && tokens.get(at + 2).and_then(Token::ident).is_some()
}

/// Whether a relation name given as a string (`'t_x.seq'`, `'"t_x".seq'`) is in schema `s`.
fn names_schema(text: &str, s: &str) -> bool {
    let rest = text.strip_prefix(s).or_else(|| text.strip_prefix(&format!("\"{s}\"")));
    rest.and_then(|r| r.strip_prefix('.')).is_some_and(|name| !name.is_empty() && !name.contains('.'))
}

/// Whether the tokens start with these words or symbols (`'…'` matches a string constant).
fn starts_with(tokens: &[Token<'_>], words: &[&str]) -> bool {
    tokens.len() >= words.len()
        && tokens.iter().zip(words).all(|(token, word)| match token {
            _ if *word == "*" => true,
            Token::Symbol(c) => word.len() == 1 && word.starts_with(*c),
            Token::Str(v) => word.strip_prefix('\'').and_then(|w| w.strip_suffix('\'')) == Some(v),
            _ => token.is_word(word),
        })
}

fn has_top_level_comma(tokens: &[Token<'_>]) -> bool {
    let mut depth = 0i32;
    tokens.iter().any(|t| {
        match t {
            Token::Symbol('(') => depth += 1,
            Token::Symbol(')') => depth -= 1,
            _ => {}
        }
        depth == 0 && *t == Token::Symbol(',')
    })
}
