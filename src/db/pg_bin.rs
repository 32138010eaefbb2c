//! Finding PostgreSQL programs (`initdb`, `pg_ctl`, `pg_dump`): PATH first, then the newest
//! Debian layout under `/usr/lib/postgresql/*/bin`.

use std::path::{Path, PathBuf};

/// The directory holding every program in `programs`, or `None`.
pub fn find_bin_dir(programs: &[&str]) -> Option<PathBuf> {
    find_bin_dir_in(std::env::var_os("PATH"), Path::new("/usr/lib/postgresql"), programs)
}

/// `find_bin_dir` over a given PATH value and Debian-style root (`<root>/<version>/bin`).
pub fn find_bin_dir_in(
    path: Option<std::ffi::OsString>,
    debian_root: &Path,
    programs: &[&str],
) -> Option<PathBuf> {
    let has_all = |dir: &Path| programs.iter().all(|p| dir.join(p).is_file());
    if let Some(path) = path {
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
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(debian_root)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tenantry-pgbin-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_newest_debian_version_is_found_when_path_has_none() {
        let root = scratch();
        for version in ["13", "15", "9"] {
            let bin = root.join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            for program in ["initdb", "pg_ctl"] {
                std::fs::write(bin.join(program), "").unwrap();
            }
        }
        let found = find_bin_dir_in(Some(scratch().into_os_string()), &root, &["initdb", "pg_ctl"]);
        assert_eq!(found, Some(root.join("15").join("bin")));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn nothing_is_found_on_a_machine_without_postgres() {
        let empty = scratch();
        assert_eq!(
            find_bin_dir_in(Some(empty.clone().into_os_string()), &empty.join("none"), &["initdb"]),
            None
        );
    }
}
