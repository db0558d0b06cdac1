//! `byollm aws-setup`: a team's (or agent's) IAM set-up, derived from the running configuration.

use clap::Args;

use super::{ConfigArgs, Failure, load_config};
use crate::ops::aws_setup::{SetupInput, SubjectScope, generate};

#[derive(Args)]
pub struct AwsSetupArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Team uid the role is for.
    #[arg(long)]
    pub team: String,
    /// The customer's 12-digit AWS account id (placeholder in the JSON policies without it).
    #[arg(long)]
    pub account_id: Option<String>,
    /// Output: json (both policies), tfvars, or cfn-params.
    #[arg(long, default_value = "json", value_parser = ["json", "tfvars", "cfn-params"])]
    pub format: String,
    /// Narrow the trust policy to one actor type (user or service_account).
    #[arg(long)]
    pub actor: Option<String>,
    /// Narrow the trust policy to one principal uid (needs --actor).
    #[arg(long, requires = "actor")]
    pub principal: Option<String>,
    /// The role of this named agent of the team (default: the team's own role).
    #[arg(long)]
    pub agent: Option<String>,
    /// IAM role name (default: byollm-<team>, or byollm-<team>-<agent> with --agent).
    #[arg(long)]
    pub role_name: Option<String>,
}

pub fn run(args: AwsSetupArgs) -> Result<(), Failure> {
    let AwsSetupArgs { config, team, account_id, format, actor, principal, agent, role_name } = args;
    let config = load_config(&config, false)?;
    let team_uid = crate::principal::Uid::parse(&team).map_err(|e| format!("--team: {e}"))?;
    let actor =
        actor.map(|a| a.parse::<crate::principal::ActorType>()).transpose().map_err(|e| format!("--actor: {e}"))?;
    let scope = match (actor, principal) {
        (None, _) => SubjectScope::Team,
        (Some(actor), None) => SubjectScope::Actor(actor),
        (Some(actor), Some(principal)) => SubjectScope::Principal(
            actor,
            crate::principal::Uid::parse(&principal).map_err(|e| format!("--principal: {e}"))?,
        ),
    };
    let agent = agent.map(|a| crate::principal::Uid::parse(&a)).transpose().map_err(|e| format!("--agent: {e}"))?;
    let team_config = config.team(&team_uid);
    if let Some(agent) = &agent
        && !team_config.is_some_and(|t| t.agents.iter().any(|a| a.name == agent.as_str()))
    {
        eprintln!("note: team {team_uid} configures no agent {agent} yet; add it under [[teams.agents]]");
    }
    let region = team_config.and_then(|t| t.region.clone()).unwrap_or_else(|| config.bedrock.region.clone());
    let mut input = SetupInput {
        issuer_url: config.issuer.url.clone(),
        audience: config.issuer.audience.clone(),
        role_name: role_name.unwrap_or_else(|| crate::ops::aws_setup::default_role_name(&team_uid, agent.as_ref())),
        session_tags: team_config.is_some_and(|t| t.session_tags),
        agent,
        team_uid,
        scope,
        model_ids: Vec::new(),
        regions: vec![region],
        profile_models: Default::default(),
        account_id,
        max_session_secs: (config.sts.duration.as_secs() as u32).max(3600),
    };
    for note in crate::ops::aws_setup::models_from_routing(&config, &mut input).map_err(Failure::Other)? {
        eprintln!("{note}");
    }
    let output = generate(&input)?;
    match format.as_str() {
        "tfvars" => print!("{}", output.tfvars),
        "cfn-params" => println!("{}", serde_json::to_string_pretty(&output.cfn_parameters)?),
        _ => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "trust_policy": output.trust_policy,
                "permissions_policy": output.permissions_policy,
            }))?
        ),
    }
    Ok(())
}
