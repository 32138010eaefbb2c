//! The settings tests and benches run a server with: the product's own defaults (as clap
//! declares them, read from no environment variable), changed by `TEST_SETTINGS`. An in-process
//! server gets them from `test_config`; a `tenantry serve` child gets the same pairs as its
//! environment, so tokens one issues are valid at the other.
//!
//! Included by the API tests (through `benches/support`) and by standalone benches with
//! `#[path = "support/settings.rs"] mod settings;`; it uses nothing else from `support`.

use std::path::Path;

use clap::{Args, FromArgMatches};
use tenantry::config::Config;

/// HMAC secret of every test server's access tokens.
pub const TEST_JWT_SECRET: &str = "test-secret-that-is-long-enough-for-hs256";

/// What tests change from the defaults, by environment variable.
pub const TEST_SETTINGS: &[(&str, &str)] = &[
    ("BIND", "127.0.0.1:0"),
    ("JWT_SECRET", TEST_JWT_SECRET),
    ("LOG_FORMAT", "json"),
    ("PUBLIC_URL", "http://app.test"),
    ("DB_POOL_SIZE", "16"),
    ("USAGE_FLUSH_MS", "100"),
    ("JOBS_POLL_MS", "200"),
    // Bursts of sign-ups in tests queue, and a machine busy with the whole suite hashes slowly;
    // the flood tests lower both.
    ("PASSWORD_HASH_QUEUE", "1000"),
    ("PASSWORD_HASH_TIMEOUT_MS", "60000"),
    // The suites sign up dozens of users from 127.0.0.1: throttle tests lower these.
    ("SIGN_INS_PER_IP_PER_MINUTE", "100000"),
    ("SIGN_UPS_PER_ADDRESS_PER_HOUR", "1000"),
    ("SIGN_UPS_PER_IP_PER_HOUR", "100000"),
    ("MAILS_PER_ADDRESS_PER_HOUR", "1000"),
    ("RESETS_PER_IP_PER_HOUR", "100000"),
    // Warm schemas would be made in every test database; the warm-pool tests turn it on.
    ("TENANT_WARM_POOL", "0"),
    // Each test database makes its own roles ahead: a small batch, so the cold path still takes
    // them (and, once a test used two, makes its own role again).
    ("TENANT_ROLES_AHEAD", "2"),
];

/// The environment of a test server on `database_url` (`None`: its own embedded cluster) with
/// `data_dir`: `TEST_SETTINGS`, the database, the data dir, and a file mailer in `data_dir/mail`.
pub fn test_env(database_url: Option<&str>, data_dir: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        TEST_SETTINGS.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
    if let Some(url) = database_url {
        env.push(("DATABASE_URL".into(), url.to_owned()));
    }
    env.push(("DATA_DIR".into(), data_dir.display().to_string()));
    env.push(("MAILER".into(), format!("file:{}", data_dir.join("mail").display())));
    env
}

/// `Config` for a test server: `test_env` parsed as `tenantry serve` parses its environment,
/// except that this process's own environment is never read.
pub fn test_config(database_url: Option<&str>, data_dir: &Path) -> Config {
    parse_config(&test_env(database_url, data_dir))
}

/// `Config` from `(ENV_NAME, value)` pairs over the declared defaults; no environment is read.
pub fn parse_config(env: &[(String, String)]) -> Config {
    let command = Config::augment_args(clap::Command::new("tenantry-test"));
    let mut args = vec!["tenantry-test".to_owned()];
    for (name, value) in env {
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_env().is_some_and(|e| e == name.as_str()))
            .unwrap_or_else(|| panic!("no setting reads {name}"));
        let long = arg.get_long().unwrap_or_else(|| panic!("{name} has no flag"));
        args.push(format!("--{long}={value}"));
    }
    let matches = command
        .mut_args(|arg| arg.env(None))
        .try_get_matches_from(&args)
        .unwrap_or_else(|err| panic!("test settings {args:?}: {err}"));
    Config::from_arg_matches(&matches).expect("test settings make a Config")
}
