//! SQL scripts (migration files, dumps) as PostgreSQL reads them: tokens and statements.
//!
//! Poolers and Citus forward statements one at a time, and the extended protocol accepts only
//! one statement per message, so a script is split here and each statement sent on its own
//! (`run_script`). The lexer follows PostgreSQL's rules for what can hide a `;`: strings
//! (`'…'`, `E'…'` with backslash escapes), quoted identifiers, dollar-quoted bodies, nested
//! comments, and `BEGIN ATOMIC … END` function bodies. No crate fits: `sqlparser` is a whole
//! parser (heavy to build, and it refuses statements it does not model, such as pg_dump's), and
//! `pg_query` compiles PostgreSQL's C parser; splitting only needs the lexical layer.

use std::fmt;

use tokio_postgres::Transaction;

/// One lexical token; whitespace and comments are not tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token<'a> {
    /// An unquoted identifier or keyword, as written.
    Word(&'a str),
    /// A `"quoted identifier"`, unescaped.
    Quoted(String),
    /// A string constant (`'…'`, `E'…'` or `$tag$…$tag$`), unescaped.
    Str(String),
    /// A numeric constant, or a positional parameter (`$1`).
    Number(&'a str),
    /// Any other single character: punctuation and operator characters.
    Symbol(char),
}

impl Token<'_> {
    /// Whether this is the keyword `kw` (case-insensitive; a quoted identifier never is).
    pub fn is_word(&self, kw: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    /// The identifier this token names, folded as PostgreSQL folds it (unquoted → lowercase).
    pub fn ident(&self) -> Option<String> {
        match self {
            Token::Word(w) => Some(w.to_ascii_lowercase()),
            Token::Quoted(q) => Some(q.clone()),
            _ => None,
        }
    }
}

/// One statement of a script: its text (without the `;`) and its tokens.
#[derive(Debug, Clone)]
pub struct Statement<'a> {
    pub text: &'a str,
    pub tokens: Vec<Token<'a>>,
}

/// A script PostgreSQL would not accept either: an unterminated quote, comment or body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScriptError {
    pub what: &'static str,
    pub at: usize,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} starting at byte {} is never closed", self.what, self.at)
    }
}

/// Splits `sql` into statements at top-level `;`. Statements with no tokens are dropped.
pub fn split(sql: &str) -> Result<Vec<Statement<'_>>, ScriptError> {
    let mut out = Vec::new();
    let mut tokens = Vec::new();
    let mut start = None;
    let mut end = 0;
    let mut atomic_depth = 0usize;
    let mut lexer = Lexer { src: sql, pos: 0 };
    while let Some((at, token)) = lexer.next_token()? {
        if token == Token::Symbol(';') && atomic_depth == 0 {
            if let Some(s) = start.take() {
                out.push(Statement { text: &sql[s..end], tokens: std::mem::take(&mut tokens) });
            }
            continue;
        }
        if is_routine_definition(&tokens) {
            // `BEGIN ATOMIC … END` bodies hold `;`; psql tracks the same depth (CASE … END too).
            if token.is_word("begin") || token.is_word("case") {
                atomic_depth += 1;
            } else if token.is_word("end") {
                atomic_depth = atomic_depth.saturating_sub(1);
            }
        }
        start.get_or_insert(at);
        end = lexer.pos;
        tokens.push(token);
    }
    if let Some(s) = start {
        out.push(Statement { text: &sql[s..end], tokens });
    }
    Ok(out)
}

/// `CREATE [OR REPLACE] FUNCTION|PROCEDURE …`, the statements that can hold `BEGIN ATOMIC`.
fn is_routine_definition(tokens: &[Token<'_>]) -> bool {
    let words: Vec<_> = tokens.iter().take(4).collect();
    match words.as_slice() {
        [create, kind, ..]
            if create.is_word("create") && (kind.is_word("function") || kind.is_word("procedure")) =>
        {
            true
        }
        [create, or, replace, kind, ..]
            if create.is_word("create") && or.is_word("or") && replace.is_word("replace") =>
        {
            kind.is_word("function") || kind.is_word("procedure")
        }
        _ => false,
    }
}

/// Runs every statement of `sql` in `tx`, one extended-protocol message each (an unnamed
/// statement: nothing is left prepared, which transaction poolers need). Returns how many ran.
pub async fn run_script(tx: &Transaction<'_>, sql: &str) -> anyhow::Result<usize> {
    let statements = split(sql)?;
    for statement in &statements {
        tx.execute_typed(statement.text, &[]).await?;
    }
    Ok(statements.len())
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a [u8] {
        &self.src.as_bytes()[self.pos..]
    }

    /// The next token and where it starts, or `None` at the end.
    fn next_token(&mut self) -> Result<Option<(usize, Token<'a>)>, ScriptError> {
        self.skip_blanks()?;
        let at = self.pos;
        let bytes = self.rest();
        let Some(&c) = bytes.first() else { return Ok(None) };
        let token = match c {
            b'\'' => Token::Str(self.quoted(b'\'', false)?),
            b'"' => Token::Quoted(self.quoted(b'"', false)?),
            b'e' | b'E' if bytes.get(1) == Some(&b'\'') => {
                self.pos += 1;
                Token::Str(self.quoted(b'\'', true).map_err(|e| ScriptError { at, ..e })?)
            }
            b'$' if bytes.get(1).is_some_and(u8::is_ascii_digit) => {
                self.pos += 1 + bytes[1..].iter().take_while(|b| b.is_ascii_digit()).count();
                Token::Number(&self.src[at..self.pos])
            }
            b'$' => match self.dollar_tag() {
                Some(tag) => Token::Str(self.dollar_body(tag)?),
                None => self.symbol(),
            },
            c if c.is_ascii_digit() => {
                self.pos += bytes.iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'.').count();
                Token::Number(&self.src[at..self.pos])
            }
            c if is_ident_start(c) => {
                self.pos += bytes.iter().take_while(|b| is_ident_continue(**b)).count();
                Token::Word(&self.src[at..self.pos])
            }
            _ => self.symbol(),
        };
        Ok(Some((at, token)))
    }

    fn symbol(&mut self) -> Token<'a> {
        let c = self.src[self.pos..].chars().next().unwrap_or(' ');
        self.pos += c.len_utf8();
        Token::Symbol(c)
    }

    fn skip_blanks(&mut self) -> Result<(), ScriptError> {
        loop {
            let bytes = self.rest();
            match bytes {
                [c, ..] if c.is_ascii_whitespace() => self.pos += 1,
                [b'-', b'-', ..] => self.pos += bytes.iter().take_while(|b| **b != b'\n').count(),
                [b'/', b'*', ..] => {
                    let at = self.pos;
                    let mut depth = 0usize;
                    loop {
                        match self.rest() {
                            [b'/', b'*', ..] => (depth, self.pos) = (depth + 1, self.pos + 2),
                            [b'*', b'/', ..] => (depth, self.pos) = (depth - 1, self.pos + 2),
                            [_, ..] => self.pos += 1,
                            [] => return Err(ScriptError { what: "a comment", at }),
                        }
                        if depth == 0 {
                            break;
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// A `'…'` or `"…"` run (doubling the quote escapes it; with `backslash`, `\` escapes too).
    fn quoted(&mut self, quote: u8, backslash: bool) -> Result<String, ScriptError> {
        let at = self.pos;
        let what = if quote == b'"' { "a quoted identifier" } else { "a string" };
        let bytes = self.src.as_bytes();
        let mut i = at + 1;
        let mut value = Vec::new();
        loop {
            match (bytes.get(i), bytes.get(i + 1)) {
                (None, _) => return Err(ScriptError { what, at }),
                (Some(b'\\'), Some(&next)) if backslash => {
                    value.extend([b'\\', next]);
                    i += 2;
                }
                (Some(&q), Some(&q2)) if q == quote && q2 == quote => {
                    value.push(q);
                    i += 2;
                }
                (Some(&q), _) if q == quote => break,
                (Some(&b), _) => {
                    value.push(b);
                    i += 1;
                }
            }
        }
        self.pos = i + 1;
        Ok(String::from_utf8_lossy(&value).into_owned())
    }

    /// `$tag$` at the current position (the tag may be empty), consumed; `None` leaves it.
    fn dollar_tag(&mut self) -> Option<&'a str> {
        let bytes = self.rest();
        let len = bytes[1..].iter().take_while(|b| is_ident_continue(**b) && **b != b'$').count();
        let tag_ok = len == 0 || is_ident_start(bytes[1]);
        if tag_ok && bytes.get(1 + len) == Some(&b'$') {
            let tag = &self.src[self.pos..self.pos + len + 2];
            self.pos += len + 2;
            Some(tag)
        } else {
            None
        }
    }

    fn dollar_body(&mut self, tag: &str) -> Result<String, ScriptError> {
        let at = self.pos - tag.len();
        let end = self.src[self.pos..].find(tag).ok_or(ScriptError { what: "a dollar-quoted body", at })?;
        let body = self.src[self.pos..self.pos + end].to_owned();
        self.pos += end + tag.len();
        Ok(body)
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_continue(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<&str> {
        split(sql).unwrap().into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn a_function_body_with_semicolons_stays_one_statement() {
        let body = "create function touch() returns trigger language plpgsql as $fn$\n\
                    begin new.updated_at := now(); return new; end;\n$fn$";
        let sql = format!("create table a (x int);\n{body};\ncreate index a_x on a (x);");
        assert_eq!(texts(&sql), vec!["create table a (x int)", body, "create index a_x on a (x)"]);
        assert_eq!(texts("do $$ begin perform 1; end $$;"), vec!["do $$ begin perform 1; end $$"]);
    }

    #[test]
    fn strings_identifiers_and_comments_hide_semicolons() {
        let sql = "insert into \"a;b\" values ('x;''y', E'it\\'s;', $1); -- c; d\n\
                   /* one /* nested; */ still; */ select 2 ; ;";
        assert_eq!(texts(sql), vec!["insert into \"a;b\" values ('x;''y', E'it\\'s;', $1)", "select 2"]);
        let tokens = &split(sql).unwrap()[0].tokens;
        assert_eq!(tokens[2], Token::Quoted("a;b".into()));
        assert_eq!(tokens[5], Token::Str("x;'y".into()));
    }

    #[test]
    fn sql_standard_function_bodies_stay_whole() {
        let body = "create or replace function two() returns int language sql\n\
                    begin atomic select 1; select case when true then 2 end; end";
        assert_eq!(texts(&format!("{body};\nselect two();")), vec![body, "select two()"]);
    }

    #[test]
    fn a_dollar_sign_in_a_name_or_a_parameter_is_not_a_body() {
        assert_eq!(texts("select a$b, $1 from t; select 2"), vec!["select a$b, $1 from t", "select 2"]);
    }

    #[test]
    fn unterminated_quotes_and_bodies_are_errors() {
        for bad in ["select 'x;", "select \"x;", "select $a$ x; $b$", "/* x; ", "select E'\\';"] {
            assert!(split(bad).is_err(), "{bad:?} accepted");
        }
    }
}
