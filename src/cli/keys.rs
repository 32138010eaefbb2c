//! `tenantry keys rotate`: re-encrypts every stored secret under MASTER_ENCRYPTION_KEY.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use deadpool_postgres::Pool;

use crate::crypto::Keyring;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-encrypt every secret still under an old key. Resumable: stop it any time and rerun.
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Rows re-encrypted per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    batch: i64,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(pool: Pool, keys: Keyring, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let KeysCommand::Rotate(args) = cmd;
    let stale = crate::secrets::stale_count(&pool, &keys).await?;
    let bar = indicatif::ProgressBar::new(u64::try_from(stale).unwrap_or_default());
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut outcome = crate::secrets::rotate(&pool, &keys, args.batch, |done| bar.set_position(done)).await?;
    bar.finish_and_clear();
    let sso = crate::sso::rotation::rotate(&pool, &keys).await?;
    outcome.reencrypted += sso.reencrypted;
    outcome.unreadable += sso.unreadable;
    if args.json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else {
        println!(
            "re-encrypted {} secret(s) under key {}; {} unreadable",
            outcome.reencrypted,
            keys.current_id().hex(),
            outcome.unreadable
        );
    }
    if outcome.unreadable > 0 {
        eprintln!(
            "some secrets are under a key that is not configured: add it to OLD_ENCRYPTION_KEYS and rerun (the log names them)"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
