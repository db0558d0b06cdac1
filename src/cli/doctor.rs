//! `byollm doctor`: credentials checked without printing a secret (a local profile, or a team's
//! web-identity set-up), and optionally one minimal real call to a model.

use std::sync::Arc;

use clap::Args;

use super::{ConfigArgs, Failure, load_config, runtime};
use crate::broker::Broker;
use crate::broker::cache::SystemClock;
use crate::broker::local::LocalSource;
use crate::broker::sts::SdkSts;
use crate::config::Config;
use crate::identity::authz::RunRequest;
use crate::issuer::Issuer;
use crate::observe::metrics::Metrics;
use crate::ops::doctor::{ModelProbe, local_model_report, team_report};
use crate::principal::Uid;
use crate::upstream::BedrockClient;

#[derive(Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Local mode: the AWS profile to check (default: AWS_PROFILE, else default).
    #[arg(long, env = "AWS_PROFILE", conflicts_with = "team")]
    pub profile: Option<String>,
    /// Cloud mode: the team whose role to assume.
    #[arg(long, requires_all = ["actor", "principal"])]
    pub team: Option<String>,
    /// Cloud mode: actor type of the principal (user or service_account).
    #[arg(long)]
    pub actor: Option<String>,
    /// Cloud mode: principal uid the token is minted for.
    #[arg(long)]
    pub principal: Option<String>,
    /// A named agent with its own role.
    #[arg(long)]
    pub agent: Option<String>,
    /// Then make one minimal real call to this served model (its public name) and explain the
    /// usual first-use failures.
    #[arg(long)]
    pub model: Option<String>,
}

pub fn run(args: DoctorArgs) -> Result<(), Failure> {
    let DoctorArgs { config, profile, team, actor, principal, agent, model } = args;
    let config = load_config(&config, false)?;
    let bedrock = BedrockClient::new(config.bedrock.endpoint_url.clone());
    let served = match &model {
        Some(name) => Some(
            crate::models::find_by_name(&config.models, name)
                .ok_or_else(|| format!("--model: {name:?} is not served by this config (byollm models lists them)"))?,
        ),
        None => None,
    };
    let report = runtime()?.block_on(async {
        let probe = served.map(|(name, model)| ModelProbe { name, model, bedrock: &bedrock });
        match (team, actor, principal) {
            (Some(team), Some(actor), Some(principal)) => {
                let team_uid = Uid::parse(&team).map_err(|e| format!("--team: {e}"))?;
                let broker = cli_broker(config.clone())?;
                let request =
                    RunRequest { actor: Some(actor), principal: Some(principal), agent, ..Default::default() };
                Ok::<_, Failure>(team_report(&broker, &team_uid, request, probe).await)
            }
            _ => {
                let source =
                    LocalSource::from_env(profile.or(config.local.profile.clone()), config.local.refresh_interval);
                Ok(local_model_report(source, Some(config.bedrock.region.clone()), probe).await)
            }
        }
    })?;
    println!("{report}");
    match (report.ok, report.passed()) {
        (true, true) => Ok(()),
        (true, false) => Err(Failure::Other("the credentials work, the model call did not (see above)".into())),
        _ => Err(Failure::Other("no usable credentials (see above)".into())),
    }
}

/// The broker for one check: STS through the SDK, the system clock.
fn cli_broker(config: Config) -> Result<Broker, Failure> {
    let issuer = Issuer::open(&config)?;
    let sts = SdkSts::new(&config.sts.region, config.sts.endpoint_url.as_deref());
    Ok(Broker::new(
        Arc::new(config),
        Arc::new(issuer),
        Arc::new(sts),
        Arc::new(SystemClock),
        Arc::new(Metrics::default()),
    ))
}
