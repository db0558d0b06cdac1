//! `byollm token mint`: a token for one principal, for operators.

use std::time::Duration;

use clap::Subcommand;

use super::{ConfigArgs, Failure, load_config};
use crate::identity::auth::Caller;
use crate::identity::authz::{Purpose, RunRequest, authorize};
use crate::issuer::{Issuer, RunClaims, unix_now};
use crate::principal::Uid;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Sign a token for one principal and print it on stdout.
    #[command(after_help = "Example:\n  byollm token mint --team acme --actor service_account --principal ci-bot")]
    Mint {
        #[command(flatten)]
        config: ConfigArgs,
        /// Team uid (1-128 of A-Z a-z 0-9 _ -).
        #[arg(long)]
        team: String,
        /// Actor type: user or service_account.
        #[arg(long)]
        actor: String,
        /// Principal uid (1-128 of A-Z a-z 0-9 _ -).
        #[arg(long)]
        principal: String,
        /// Token lifetime in seconds (60-3600; default issuer.token_lifetime_secs).
        #[arg(long)]
        lifetime_secs: Option<u64>,
        /// Agent name recorded in the token's `agent` claim (an identifier, lands in CloudTrail).
        #[arg(long)]
        agent: Option<String>,
        /// Run id recorded in the token's `run_id` claim (an identifier, lands in CloudTrail).
        #[arg(long)]
        run_id: Option<String>,
    },
}

pub fn run(command: TokenCommand) -> Result<(), Failure> {
    let TokenCommand::Mint { config, team, actor, principal, lifetime_secs, agent, run_id } = command;
    let config = load_config(&config, false)?;
    let issuer = Issuer::open(&config)?;
    let team_uid = Uid::parse(&team).map_err(|e| format!("--team: {e}"))?;
    // The operator goes through the same authorization as every caller: uids, agents and run ids
    // are checked, and the team's session-tag setting applies.
    let request = RunRequest { actor: Some(actor), principal: Some(principal), agent, run_id, ..Default::default() };
    let run = authorize(&config, &Caller::operator(team_uid), &request, Purpose::Token).map_err(|e| e.to_string())?;
    let minted = issuer
        .mint(&run.principal, lifetime_secs.map(Duration::from_secs), &RunClaims::from(&run), unix_now())
        .map_err(|e| e.to_string())?;
    println!("{}", minted.token.expose());
    eprintln!("minted for {} with key {}, expires at {}", minted.subject, minted.kid, minted.expires_at);
    Ok(())
}
