//! `tenantry jobs list|retry|cancel`: look at the background job queue and act on it.

use std::process::ExitCode;

use clap::Subcommand;
use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::jobs::{JobState, repo};

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first (payloads are not shown: secret ones are encrypted anyway).
    List {
        /// Only jobs in this state.
        #[arg(long, value_enum)]
        state: Option<JobState>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Queue a dead or cancelled job again, with a fresh count of attempts.
    Retry { id: Uuid },
    /// Cancel a queued or dead job (a running job finishes or fails first).
    Cancel { id: Uuid },
}

pub async fn run(pool: Pool, cmd: JobsCommand) -> anyhow::Result<ExitCode> {
    let client = pool.get().await?;
    let anyhow = crate::error::AppError::into_anyhow;
    match cmd {
        JobsCommand::List { state, limit, json } => {
            let jobs = repo::list(&client, state, limit).await.map_err(anyhow)?;
            for job in &jobs {
                if json {
                    println!("{}", serde_json::to_string(job)?);
                    continue;
                }
                let tenant = job.tenant_id.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
                println!(
                    "{}  {:<9}  {:<24}  tenant {}  attempts {}/{}  run_at {}  {}",
                    job.id,
                    job.state,
                    job.kind,
                    tenant,
                    job.attempts,
                    job.max_attempts,
                    job.run_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    job.last_error.as_deref().unwrap_or_default()
                );
            }
            if !json && jobs.is_empty() {
                println!("no jobs");
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Retry { id } => {
            match repo::retry(&client, id).await {
                Ok(true) => {
                    println!("job {id} queued again");
                    return Ok(ExitCode::SUCCESS);
                }
                Ok(false) => {}
                Err(err) if err.constraint() == Some("jobs_unique_queued") => {
                    eprintln!(
                        "job {id} was left as it is: another job with its unique key is already queued"
                    );
                    return Ok(ExitCode::FAILURE);
                }
                Err(err) => return Err(anyhow(err)),
            }
            refuse(&client, id, "only dead or cancelled jobs can be retried").await
        }
        JobsCommand::Cancel { id } => {
            if repo::cancel(&client, id).await.map_err(anyhow)? {
                println!("job {id} cancelled");
                return Ok(ExitCode::SUCCESS);
            }
            refuse(&client, id, "only queued or dead jobs can be cancelled").await
        }
    }
}

/// Explains why a job was left as it is.
async fn refuse(client: &deadpool_postgres::Object, id: Uuid, rule: &str) -> anyhow::Result<ExitCode> {
    match repo::state_of(client, id).await.map_err(crate::error::AppError::into_anyhow)? {
        None => eprintln!("no job has the id {id}"),
        Some(state) => eprintln!("job {id} is {}; {rule}", state.as_db()),
    }
    Ok(ExitCode::FAILURE)
}
