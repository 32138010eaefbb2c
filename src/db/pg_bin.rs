//! Finding PostgreSQL programs (`initdb`, `pg_ctl`, `pg_dump`): PATH first, then the newest
//! Debian layout under `/usr/lib/postgresql/*/bin`.

use std::path::{Path, PathBuf};

/// The directory holding every program in `programs`, or `None`.
pub fn find_bin_dir(programs: &[&str]) -> Option<PathBuf> {
    let has_all = |dir: &Path| programs.iter().all(|p| dir.join(p).is_file());
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_all(&dir) {
                // Resolve symlinks so pg_ctl finds its sibling `postgres` binary; a link to a
                // wrapper (Debian's pg_wrapper for client tools) is used as it is.
                let real = dir
                    .join(programs.first()?)
                    .canonicalize()
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf));
                return match real {
                    Some(real) if has_all(&real) => Some(real),
                    _ => Some(dir),
                };
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_all(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The path of one program, found as [`find_bin_dir`] finds it.
pub fn find_program(program: &str) -> Option<PathBuf> {
    find_bin_dir(&[program]).map(|dir| dir.join(program))
}
