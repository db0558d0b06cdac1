//! What a customer creates in their AWS account so byollm can invoke Bedrock for one team: the
//! trust policy and least-privilege permissions policy of the IAM role, plus the same inputs as
//! Terraform variables (`infra/aws/terraform`) and CloudFormation parameters
//! (`infra/aws/cloudformation/byollm-role.yaml`, beside the account-level `byollm-oidc-provider.yaml`).
//!
//! [`generate`] is pure: it reads no config file, no environment and no network, so its output
//! can be reviewed before anything is applied; [`models_from_routing`] fills its models from a
//! loaded configuration.
//!
//! # Trust policy
//! One role per team (`byollm-<team>`) and one per named agent (`byollm-<team>-<agent>`).
//! `Federated` is `arn:aws:iam::<account>:oidc-provider/<issuer-host>` where `<issuer-host>` is
//! the issuer URL without `https://` (host plus path, if any); the conditions are
//! `StringEquals <issuer-host>:aud = <audience>` and `StringLike <issuer-host>:sub =
//! <`subject_pattern`>`. The pattern is only safe because a uid can never contain `/`, `:`, `*`
//! or `?` (see [`crate::principal`]).
//!
//! With the team's `session_tags` on, the gateway mints the run into its tokens as session tags
//! and a source identity, and the trust policy lets IAM itself tell agents apart: the actions are
//! `sts:AssumeRoleWithWebIdentity`, `sts:TagSession` and `sts:SetSourceIdentity` (STS refuses a
//! tagged token for a role whose trust policy lacks them), with `StringEquals
//! aws:RequestTag/team = <team>` and, for an agent's role, `StringEquals aws:RequestTag/agent =
//! <agent>`, for the team's role `Null aws:RequestTag/agent = true`: a token minted for another
//! agent, or for none, cannot assume an agent's role, and an agent's token cannot assume the
//! team's role.
//!
//! # Permissions policy
//! Only `bedrock:InvokeModel` and `bedrock:InvokeModelWithResponseStream`, on exactly the
//! resources each model id needs, in the `regions` byollm calls Bedrock in (the source regions):
//! - a foundation model id (`anthropic.claude-…-v1:0`): `arn:aws:bedrock:<region>::foundation-model/<id>`
//!   in every source region;
//! - a geographic inference profile (`us.`, `eu.`, `apac.`, `jp.`, `au.`, `ca.`): the profile
//!   `arn:aws:bedrock:<region>:<account>:inference-profile/<id>` in the source regions of that
//!   geography, plus the foundation model in every region of the geography
//!   (`arn:aws:bedrock:us-*::foundation-model/<model>`), the latter only when the call comes
//!   through one of those profiles (`bedrock:InferenceProfileArn`). AWS chooses, and over time
//!   extends, the destination regions of a profile; a region pattern keeps working when it does,
//!   and the condition means the model cannot be invoked any other way;
//! - a global inference profile (`global.`): the profile in the source regions, the foundation
//!   model in the source regions and the foundation model with an empty region
//!   (`arn:aws:bedrock:::foundation-model/<model>`) with `aws:RequestedRegion = unspecified`, both
//!   only through the profile, as AWS documents for global cross-region inference;
//! - an application inference profile ARN: that ARN, plus the foundation model it wraps (from its
//!   `[models]` entry's family, `profile_models`) only through that profile; when that model is not
//!   known, any foundation model through that profile.
//!
//! These rules live in [`crate::bedrock_iam`], shared with the session policy of exported
//! credentials. `byollm aws-setup` lists the models the team's or agent's routing allows
//! ([`models_from_routing`]), so the role itself cannot invoke more than its routing allows.
//!
//! When `account_id` is `None` the account appears as [`ACCOUNT_PLACEHOLDER`]; replace it before
//! applying the JSON. Terraform and CloudFormation fill in the account themselves.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Value, json};

use crate::bedrock_iam::{self, Form, Kind, ModelIdError, Target};
use crate::broker::session_policy;
use crate::config::Config;
use crate::principal::{ActorType, ScopedPrincipal, Uid};
use crate::routing::policy::PlaceholderSecrets;
use crate::routing::{Mode, RoutingPolicy};

/// Stands for the customer's 12-digit account id when the caller did not give one.
pub const ACCOUNT_PLACEHOLDER: &str = "<ACCOUNT_ID>";
/// Range IAM accepts for a role's `MaxSessionDuration`, in seconds.
pub const MAX_SESSION_RANGE: std::ops::RangeInclusive<u32> = 3600..=43200;

/// Everything the generator needs; nothing is read from elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupInput {
    /// byollm's `[issuer] url`: https, no trailing slash, no query or fragment.
    pub issuer_url: String,
    /// byollm's `[issuer] audience`, normally `sts.amazonaws.com`.
    pub audience: String,
    pub team_uid: Uid,
    pub scope: SubjectScope,
    /// Bedrock model ids, inference profile ids or application inference profile ARNs.
    pub model_ids: Vec<String>,
    /// Regions byollm calls Bedrock in (the team's `region`, and those its routes name), at least
    /// one.
    pub regions: Vec<String>,
    /// Application inference profile ARN (among `model_ids`) → the foundation model id it wraps,
    /// when known (its `[models]` entry's family): only that model is allowed through it, else
    /// any model through it.
    pub profile_models: BTreeMap<String, String>,
    /// The customer's 12-digit AWS account id, if known.
    pub account_id: Option<String>,
    pub role_name: String,
    /// The role's `MaxSessionDuration`, 3600–43200.
    pub max_session_secs: u32,
    /// The named agent this role is for (`[[teams.agents]]`); `None`: the team's own role.
    pub agent: Option<Uid>,
    /// The team mints session tags (`[[teams]] session_tags`): the trust policy allows them and
    /// checks the team and agent tags.
    pub session_tags: bool,
}

/// The default IAM role name: `byollm-<team>`, or `byollm-<team>-<agent>` for an agent's role.
pub fn default_role_name(team: &Uid, agent: Option<&Uid>) -> String {
    match agent {
        Some(agent) => format!("byollm-{team}-{agent}"),
        None => format!("byollm-{team}"),
    }
}

/// Which subjects of the team the role trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectScope {
    /// Every principal of the team: `scoped_principal:<team>/*`.
    Team,
    /// One actor type: `scoped_principal:<team>/<actor>:*`.
    Actor(ActorType),
    /// One principal: `scoped_principal:<team>/<actor>:<uid>`.
    Principal(ActorType, Uid),
}

/// The generated documents.
#[derive(Debug, Clone, PartialEq)]
pub struct SetupOutput {
    pub trust_policy: Value,
    pub permissions_policy: Value,
    /// `terraform.tfvars` for `infra/aws/terraform`.
    pub tfvars: String,
    /// `[{"ParameterKey", "ParameterValue"}]` for `byollm-role.yaml`, as accepted by
    /// `aws cloudformation create-stack --parameters file://…`.
    pub cfn_parameters: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupError {
    IssuerUrl { url: String, reason: &'static str },
    Audience,
    NoModels,
    ModelId { id: String, reason: String },
    NoRegions,
    Region(String),
    AccountId(String),
    RoleName(String),
    MaxSession(u32),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::IssuerUrl { url, reason } => write!(f, "issuer url {url:?} {reason}"),
            SetupError::Audience => {
                f.write_str("audience must be 1-255 characters without whitespace (normally sts.amazonaws.com)")
            }
            SetupError::NoModels => f.write_str("no model ids given; list the bedrock model or inference profile ids"),
            SetupError::ModelId { id, reason } => write!(f, "model id {id:?}: {reason}"),
            SetupError::NoRegions => f.write_str("no regions given; list the regions byollm calls bedrock in"),
            SetupError::Region(region) => {
                write!(f, "region {region:?} is not an aws region name such as us-east-1")
            }
            SetupError::AccountId(id) => write!(f, "account id {id:?} must be 12 digits"),
            SetupError::RoleName(name) => {
                write!(f, "role name {name:?} must be 1-64 characters of A-Z, a-z, 0-9 and +=,.@_-")
            }
            SetupError::MaxSession(secs) => write!(
                f,
                "max session duration {secs}s is outside the {}-{} seconds iam allows",
                MAX_SESSION_RANGE.start(),
                MAX_SESSION_RANGE.end()
            ),
        }
    }
}

impl std::error::Error for SetupError {}

/// The `StringLike` pattern for `<issuer-host>:sub` that admits exactly `scope` within `team`.
pub fn subject_pattern(team: &Uid, scope: &SubjectScope) -> String {
    match scope {
        SubjectScope::Team => ScopedPrincipal::team_pattern(team),
        SubjectScope::Actor(actor) => {
            format!("{}{team}/{}:*", crate::principal::SUBJECT_PREFIX, actor.as_str())
        }
        SubjectScope::Principal(actor, uid) => ScopedPrincipal::new(team.clone(), *actor, uid.clone()).to_string(),
    }
}

/// The issuer URL without `https://`: what IAM calls the provider and uses in condition keys.
pub fn issuer_host(issuer_url: &str) -> Result<&str, SetupError> {
    let bad = |reason| SetupError::IssuerUrl { url: issuer_url.to_owned(), reason };
    let rest = issuer_url.strip_prefix("https://").ok_or_else(|| bad("must start with https://"))?;
    if rest.is_empty() {
        return Err(bad("has no host"));
    }
    if rest.ends_with('/') {
        return Err(bad("must not end with a slash (tokens carry it without one)"));
    }
    if rest.contains('?') || rest.contains('#') {
        return Err(bad("must not have a query or fragment"));
    }
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("must not contain whitespace"));
    }
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    if host.contains('@') {
        return Err(bad("must not contain user information"));
    }
    if host.contains(':') {
        return Err(bad("must not contain a port (iam does not accept one)"));
    }
    if !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
        return Err(bad("has a host with characters other than letters, digits, dots and hyphens"));
    }
    if rest.contains("//") {
        return Err(bad("has an empty path segment"));
    }
    Ok(rest)
}

fn is_role_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '=' | ',' | '.' | '@' | '_' | '-'))
}

fn validate(input: &SetupInput) -> Result<(), SetupError> {
    issuer_host(&input.issuer_url)?;
    let aud = &input.audience;
    if aud.is_empty() || aud.len() > 255 || aud.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SetupError::Audience);
    }
    if input.model_ids.is_empty() {
        return Err(SetupError::NoModels);
    }
    if input.regions.is_empty() {
        return Err(SetupError::NoRegions);
    }
    if let Some(region) = input.regions.iter().find(|r| !crate::aws::is_region(r)) {
        return Err(SetupError::Region(region.clone()));
    }
    if let Some(account) = input.account_id.as_ref().filter(|a| !crate::aws::is_account(a)) {
        return Err(SetupError::AccountId(account.clone()));
    }
    if !is_role_name(&input.role_name) {
        return Err(SetupError::RoleName(input.role_name.clone()));
    }
    if !MAX_SESSION_RANGE.contains(&input.max_session_secs) {
        return Err(SetupError::MaxSession(input.max_session_secs));
    }
    for id in &input.model_ids {
        if let Kind::Geographic { region_pattern, .. } = bedrock_iam::classify(id)?
            && !input.regions.iter().any(|region| bedrock_iam::region_matches(&region_pattern, region))
        {
            return Err(SetupError::ModelId {
                id: id.clone(),
                reason: format!(
                    "is a profile for regions {region_pattern} but none of the regions ({}) is one; it can only be invoked from inside its geography",
                    input.regions.join(", ")
                ),
            });
        }
    }
    Ok(())
}

impl From<ModelIdError> for SetupError {
    fn from(error: ModelIdError) -> SetupError {
        SetupError::ModelId { id: error.id, reason: error.reason }
    }
}

/// Every model in every region, from the account: what the role is used for.
fn targets(input: &SetupInput) -> Vec<Target> {
    let account = input.account_id.as_deref().unwrap_or(ACCOUNT_PLACEHOLDER);
    let mut targets = Vec::with_capacity(input.model_ids.len() * input.regions.len());
    for id in &input.model_ids {
        for region in &input.regions {
            targets.push(Target {
                id: id.clone(),
                region: region.clone(),
                account: account.to_owned(),
                wraps: input.profile_models.get(id).cloned(),
            });
        }
    }
    targets
}

fn permissions_policy(input: &SetupInput) -> Result<Value, SetupError> {
    let statements = bedrock_iam::statements(&targets(input), Form::Exact)?;
    Ok(bedrock_iam::document(statements.statements))
}

/// The session tag keys the gateway mints (see `issuer`), as the trust policy checks them.
pub const TAG_TEAM: &str = "aws:RequestTag/team";
pub const TAG_AGENT: &str = "aws:RequestTag/agent";

fn trust_policy(input: &SetupInput, host: &str) -> Value {
    let account = input.account_id.as_deref().unwrap_or(ACCOUNT_PLACEHOLDER);
    let mut equals = serde_json::Map::new();
    equals.insert(format!("{host}:aud"), json!(input.audience));
    let mut condition = serde_json::Map::new();
    let action = if input.session_tags {
        equals.insert(TAG_TEAM.to_owned(), json!(input.team_uid.as_str()));
        match &input.agent {
            Some(agent) => {
                equals.insert(TAG_AGENT.to_owned(), json!(agent.as_str()));
            }
            None => {
                condition.insert("Null".to_owned(), json!({TAG_AGENT: "true"}));
            }
        }
        json!(["sts:AssumeRoleWithWebIdentity", "sts:TagSession", "sts:SetSourceIdentity"])
    } else {
        json!("sts:AssumeRoleWithWebIdentity")
    };
    condition.insert("StringEquals".to_owned(), Value::Object(equals));
    condition.insert(
        "StringLike".to_owned(),
        json!({format!("{host}:sub"): subject_pattern(&input.team_uid, &input.scope)}),
    );
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ByollmWebIdentity",
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::{account}:oidc-provider/{host}")},
            "Action": action,
            "Condition": condition,
        }],
    })
}

/// An HCL string literal (JSON string escaping is valid HCL, except `${` and `%{`, which our
/// validated inputs cannot contain).
fn hcl_string(value: &str) -> String {
    Value::String(value.to_owned()).to_string()
}

fn hcl_list(values: &[String]) -> String {
    format!("[{}]", values.iter().map(|v| hcl_string(v)).collect::<Vec<_>>().join(", "))
}

fn tfvars(input: &SetupInput) -> String {
    let scope = match &input.scope {
        SubjectScope::Team => "{}".to_owned(),
        SubjectScope::Actor(actor) => format!("{{ actor_type = {} }}", hcl_string(actor.as_str())),
        SubjectScope::Principal(actor, uid) => {
            format!("{{ actor_type = {}, principal_uid = {} }}", hcl_string(actor.as_str()), hcl_string(uid.as_str()))
        }
    };
    let mut out = String::new();
    let mut line = |key: &str, value: String| out.push_str(&format!("{key:<20} = {value}\n"));
    line("issuer_url", hcl_string(&input.issuer_url));
    line("audience", hcl_string(&input.audience));
    line("team_uid", hcl_string(input.team_uid.as_str()));
    line("subject_scope", scope);
    line("model_ids", hcl_list(&input.model_ids));
    line("regions", hcl_list(&input.regions));
    line("role_name", hcl_string(&input.role_name));
    line("max_session_duration", input.max_session_secs.to_string());
    // Only when they differ from the module's defaults (team role, no session tags).
    if input.session_tags {
        line("session_tags", "true".to_owned());
    }
    if let Some(agent) = &input.agent {
        line("agent", hcl_string(agent.as_str()));
    }
    out
}

fn cfn_parameters(input: &SetupInput) -> Result<Value, SetupError> {
    let (mut foundation, mut profiles, mut applications) = (Vec::new(), Vec::new(), Vec::new());
    for id in &input.model_ids {
        match bedrock_iam::classify(id)? {
            Kind::Foundation { model } => foundation.push(model),
            Kind::Geographic { id, .. } | Kind::Global { id, .. } => profiles.push(id),
            Kind::Application { arn } => applications.push(arn),
        }
    }
    let (actor, principal) = match &input.scope {
        SubjectScope::Team => ("", ""),
        SubjectScope::Actor(actor) => (actor.as_str(), ""),
        SubjectScope::Principal(actor, uid) => (actor.as_str(), uid.as_str()),
    };
    let params = [
        ("IssuerUrl", input.issuer_url.clone()),
        // The template names its condition keys after the host and cannot derive it itself.
        ("IssuerHost", issuer_host(&input.issuer_url)?.to_owned()),
        ("Audience", input.audience.clone()),
        ("TeamUid", input.team_uid.to_string()),
        ("SubjectActorType", actor.to_owned()),
        ("SubjectPrincipalUid", principal.to_owned()),
        ("FoundationModelIds", foundation.join(",")),
        ("InferenceProfileIds", profiles.join(",")),
        ("ApplicationInferenceProfileArns", applications.join(",")),
        ("Regions", input.regions.join(",")),
        ("RoleName", input.role_name.clone()),
        ("MaxSessionDuration", input.max_session_secs.to_string()),
    ];
    // Only when they differ from the template's defaults (team role, no session tags).
    let extra = [
        input.session_tags.then(|| ("SessionTags", "true".to_owned())),
        input.agent.as_ref().map(|agent| ("AgentName", agent.to_string())),
    ];
    let params = params.into_iter().chain(extra.into_iter().flatten());
    Ok(Value::Array(params.map(|(k, v)| json!({"ParameterKey": k, "ParameterValue": v})).collect()))
}

/// Fill `input.model_ids`, `regions` and `profile_models` with what the routing policy lets the
/// role's scope (`input.team_uid`, and `input.agent` for an agent's role) use on Bedrock: every
/// Bedrock route of every model it may use, in the route's region (added to `input.regions`, which
/// starts as the team's). Routes that name another role are that role's to grant, and models no
/// region can invoke are skipped; the notes say which and why.
pub fn models_from_routing(config: &Config, input: &mut SetupInput) -> Result<Vec<String>, String> {
    let routing = RoutingPolicy::from_config(config, Mode::Hosted, &PlaceholderSecrets).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
        format!("the [routing] section does not validate: {}", lines.join("; "))
    })?;
    let team = config.team(&input.team_uid);
    let scope_role = match &input.agent {
        Some(agent) => team.and_then(|t| t.agents.iter().find(|a| a.name == agent.as_str())).map(|a| &a.role_arn),
        None => team.and_then(|t| t.role_arn.as_ref()),
    };
    let mut notes = Vec::new();
    let mut candidates: Vec<String> = Vec::new();
    let agent = input.agent.as_ref().map(Uid::as_str);
    for scoped in session_policy::scope_routes(config, &routing, input.team_uid.as_str(), agent) {
        let (model, route) = (&scoped.model, &scoped.route);
        if let Some(role) = route.role.as_ref().filter(|role| Some(*role) != scope_role) {
            notes.push(format!("skipping a route of model {model}: it uses role {role}, whose own policy grants it"));
            continue;
        }
        if let Some(region) = &route.region
            && !input.regions.contains(region)
        {
            input.regions.push(region.clone());
        }
        if !candidates.contains(&route.model_id) {
            candidates.push(route.model_id.clone());
        }
        if let (Ok(Kind::Application { arn }), Some(wraps)) = (bedrock_iam::classify(&route.model_id), &scoped.wraps) {
            input.profile_models.insert(arn, wraps.clone());
        }
    }
    // Keep the models the regions can invoke (a `us.` profile cannot be used from eu-west-1).
    for id in candidates {
        let single = SetupInput { model_ids: vec![id.clone()], ..input.clone() };
        match generate(&single) {
            Ok(_) => input.model_ids.push(id),
            Err(error @ SetupError::ModelId { .. }) => notes.push(format!("skipping model {id}: {error}")),
            // Not the model's fault: the rest of the input is wrong for every model.
            Err(error) => return Err(error.to_string()),
        }
    }
    if input.model_ids.is_empty() {
        let who = match &input.agent {
            Some(agent) => format!("agent {agent} of team {}", input.team_uid),
            None => format!("team {}", input.team_uid),
        };
        return Err(format!("the routing policy lets {who} invoke no model on Bedrock from its regions"));
    }
    Ok(notes)
}

/// Validate `input` and produce the policies and deployment inputs for it.
pub fn generate(input: &SetupInput) -> Result<SetupOutput, SetupError> {
    validate(input)?;
    let host = issuer_host(&input.issuer_url)?;
    Ok(SetupOutput {
        trust_policy: trust_policy(input, host),
        permissions_policy: permissions_policy(input)?,
        tfvars: tfvars(input),
        cfn_parameters: cfn_parameters(input)?,
    })
}

#[cfg(test)]
mod tests;
