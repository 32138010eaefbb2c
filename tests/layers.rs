//! The crate's layers, enforced: every `crate::<module>` path in `src/` must point to a module in
//! a lower layer than the one it is written in. The layers are read from the `layers` block in
//! docs/ARCHITECTURE.md, so the document and the check cannot drift apart; a top-level module
//! missing from that block fails too, so a new module is placed on purpose.
//!
//! A lower layer that must react to a higher one defines a trait or an event the higher one
//! implements or handles (e.g. `members::OnMemberChange`, implemented by `api_keys`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Layer index by module name, from the `layers` block: the first line is the top layer.
fn layers(architecture: &str) -> BTreeMap<String, usize> {
    let block = architecture
        .split("```layers\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/ARCHITECTURE.md has a ```layers block");
    let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut rank = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        // `name name …  — comment`: modules first, anything after `—` is prose.
        let modules = line.split('—').next().unwrap_or_default();
        for module in modules.split_whitespace() {
            let previous = rank.insert(module.to_owned(), lines.len() - i);
            assert!(previous.is_none(), "{module} is listed twice in the layers block");
        }
    }
    rank
}

/// Top-level modules of `src/` (main.rs and lib.rs are the crate root, outside the layers).
fn top_modules(src: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|m| m != "main" && m != "lib")
        .collect();
    out.sort();
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code without comments (line count kept, so line numbers stay true).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            let end = after.find('\n').unwrap_or(after.len());
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("/*") {
            let end = after.find("*/").map_or(after.len(), |e| e + 2);
            out.extend(after[..end].chars().filter(|c| *c == '\n'));
            rest = &after[end..];
        } else if rest.starts_with('"') {
            // Skip string literals whole: `"//"` or `"crate::x"` inside one is not code.
            let mut chars = rest.char_indices().skip(1);
            let mut end = rest.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            out.extend(rest[..end].chars().filter(|c| *c == '\n'));
            out.push_str("\"\"");
            rest = &rest[end..];
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// `(module, line)` for every `crate::module` path, including `use crate::{a::x, b::y}` groups.
fn crate_paths(code: &str) -> Vec<(String, usize)> {
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect() };
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    let mut out = Vec::new();
    for (pos, _) in code.match_indices("crate::") {
        let before = code[..pos].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `$crate::` or `foo_crate::`
        }
        let after = &code[pos + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for part in group.split(',') {
                let name = ident(part.trim());
                if !name.is_empty() {
                    out.push((name, line_of(pos)));
                }
            }
        } else {
            out.push((ident(after), line_of(pos)));
        }
    }
    out
}

/// Every arrow that goes up or sideways, as `file:line: from -> to`.
fn violations(src: &Path, rank: &BTreeMap<String, usize>) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy();
        let from = first.trim_end_matches(".rs").to_owned();
        let Some(&from_rank) = rank.get(&from) else { continue };
        let code = strip_comments(&std::fs::read_to_string(&file).unwrap());
        for (to, line) in crate_paths(&code) {
            if to == from {
                continue;
            }
            if let Some(&to_rank) = rank.get(&to)
                && to_rank >= from_rank
            {
                let how = if to_rank == from_rank { "same layer" } else { "upward" };
                out.push(format!("src/{}:{line}: {from} -> {to} ({how})", rel.display()));
            }
        }
    }
    out
}

#[test]
fn every_import_points_to_a_lower_layer() {
    let architecture = std::fs::read_to_string(Path::new(ROOT).join("docs/ARCHITECTURE.md")).unwrap();
    let rank = layers(&architecture);
    let src = Path::new(ROOT).join("src");
    let unplaced: Vec<_> = top_modules(&src).into_iter().filter(|m| !rank.contains_key(m)).collect();
    assert!(
        unplaced.is_empty(),
        "modules missing from the layers block in docs/ARCHITECTURE.md: {unplaced:?}"
    );
    let stale: Vec<_> = rank.keys().filter(|m| !top_modules(&src).contains(m)).collect();
    assert!(stale.is_empty(), "the layers block names modules that do not exist: {stale:?}");
    let wrong = violations(&src, &rank);
    assert!(
        wrong.is_empty(),
        "imports that do not point to a lower layer (docs/ARCHITECTURE.md, \"Layers\"):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_paths_groups_and_skips_comments_and_strings() {
    let code = "use crate::db::TenantTx;\n// crate::http is a comment\nlet s = \"crate::app\";\n\
                use crate::{error::AppError, plans::Plan};\n/* crate::cli\n */ crate::usage::x();\n";
    let found = crate_paths(&strip_comments(code));
    let names: Vec<(&str, usize)> = found.iter().map(|(m, l)| (m.as_str(), *l)).collect();
    assert_eq!(names, [("db", 1), ("error", 4), ("plans", 4), ("usage", 6)]);
}

#[test]
fn an_upward_import_is_refused() {
    let dir = std::env::temp_dir().join(format!("tenantry-layers-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("db")).unwrap();
    std::fs::write(src.join("db/mod.rs"), "use crate::error::AppError;\n").unwrap();
    std::fs::write(src.join("error.rs"), "pub fn f() { crate::db::g(); }\n").unwrap();
    let rank = layers("```layers\ndb — the database\nerror\n```\n");
    let wrong = violations(&src, &rank);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(wrong, ["src/error.rs:1: error -> db (upward)"]);
}
