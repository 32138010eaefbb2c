//! The product carries no bench harness: `tenantry` has no `bench` command, and no crate only
//! the benches need (hdrhistogram, reqwest) is in its normal dependency tree.

use std::collections::BTreeSet;
use std::process::Command;

/// The subcommands `tenantry --help` lists.
fn listed_commands() -> BTreeSet<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_tenantry")).arg("--help").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let help = String::from_utf8(output.stdout).unwrap();
    help.lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn tenantry_help_lists_no_bench_command() {
    let commands = listed_commands();
    assert!(commands.contains("serve") && commands.contains("migrate"), "{commands:?}");
    assert!(!commands.contains("bench"), "{commands:?}");
}

#[test]
fn tenantry_refuses_a_bench_command() {
    // Hidden commands are not listed, so also run it: the plain server was hidden.
    for args in [["bench", "read"], ["bench", "plain-server"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_tenantry")).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("unrecognized subcommand 'bench'"), "{args:?}: {stderr}");
    }
}

#[test]
fn the_products_normal_dependency_tree_has_no_bench_only_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["tree", "--locked", "-p", "tenantry", "-e", "normal,features", "--prefix", "none"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(output.status.success(), "cargo tree: {}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8(output.stdout).unwrap();
    // Lines read `axum v0.8.4` for a crate and `hyper feature "server"` for a feature.
    let lines: BTreeSet<&str> = tree.lines().map(|line| line.trim_end_matches(" (*)")).collect();
    let crates: BTreeSet<&str> = lines.iter().filter_map(|line| line.split_whitespace().next()).collect();
    assert!(crates.contains("axum") && crates.contains("hyper"), "{crates:?}");
    for bench_only in ["hdrhistogram", "reqwest"] {
        assert!(!crates.contains(bench_only), "{bench_only} is in the product's dependencies");
    }
    // The product's HTTP clients are async-stripe's (hyper + rustls), which talks to Stripe,
    // and hyper's HTTP/1 client, with which `verifyDomain` fetches challenge tokens; the
    // harness's own client crates above stay out.
}
