//! What an IAM policy must allow for Bedrock `InvokeModel*` calls, and nothing more: the one rule
//! behind both the role's permissions policy (`byollm aws-setup`, [`crate::ops::aws_setup`]) and the
//! session policy of credentials that leave the gateway ([`crate::broker::session_policy`]).
//!
//! A [`Target`] is one way a role is used: a model id, system inference profile id or application
//! inference profile ARN, called in a (source) region from an account. [`statements`] turns
//! targets into policy statements in one of two [`Form`]s:
//! - [`Form::Exact`], as AWS documents it ("Prerequisites for inference profiles", the IAM
//!   examples for cross-Region inference): a foundation model in its region; a system profile in
//!   its source region, plus its foundation model in the regions of the profile's geography (a
//!   global profile: the source region, and the region-less ARN with `aws:RequestedRegion =
//!   unspecified`), the latter only with `bedrock:InferenceProfileArn` naming the profile; an
//!   application profile's ARN, plus the foundation model it wraps only through it. An application
//!   profile whose model is unknown needs `foundation-model/*` through it: then the statements are
//!   not called exact.
//! - [`Form::Compact`], to fit STS's 2,048 characters: regions become `*`, a foundation model a
//!   wildcard over its family (`anthropic.claude-sonnet-4-5*`, never one that matches another
//!   catalog model), and the condition names any system profile of the account. Which profiles may
//!   be called stays exact, so only these families are reachable, and only through a profile.
//!
//! Facts about AWS (actions, geographies, STS's limit) live in `bedrock_iam.toml`. Must never:
//! allow another action, `Resource: "*"`, or a wildcard while [`Statements::exact`] says exact.
//! Pure: no configuration, environment or network.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::aws::{is_account, is_region};

/// Facts about AWS, from `bedrock_iam.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Facts {
    /// The actions an invocation is authorized as.
    pub actions: Vec<String>,
    /// STS's limit on a session policy's plaintext, in characters.
    pub max_session_policy_chars: usize,
    /// Id prefix of global cross-Region profiles.
    pub global_prefix: String,
    /// Geographic profile id prefix → the pattern of its geography's region names.
    pub geographies: BTreeMap<String, String>,
}

/// The facts, parsed once. The file is compiled in and checked by the tests, so a parse failure is
/// a build defect and stops the process.
pub fn facts() -> &'static Facts {
    static FACTS: LazyLock<Facts> = LazyLock::new(|| {
        toml::from_str(include_str!("bedrock_iam.toml"))
            .unwrap_or_else(|error| panic!("src/bedrock_iam/bedrock_iam.toml: {error}"))
    });
    &FACTS
}

/// One way a role invokes Bedrock.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// A foundation model id, a system inference profile id (`us.…`, `global.…`) or an
    /// application inference profile ARN.
    pub id: String,
    /// The region the call is made in (the source region of a profile).
    pub region: String,
    /// The account the call is made from: 12 digits, or a placeholder.
    pub account: String,
    /// For an application inference profile: the foundation model id it wraps, when known.
    pub wraps: Option<String>,
}

/// How a model id is invoked, and so what a policy must allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Foundation {
        model: String,
    },
    /// A geographic profile, with the region pattern of its geography.
    Geographic {
        id: String,
        model: String,
        region_pattern: String,
    },
    Global {
        id: String,
        model: String,
    },
    Application {
        arn: String,
    },
}

/// A model id that cannot be put in a policy, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIdError {
    pub id: String,
    pub reason: String,
}

impl fmt::Display for ModelIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model id {:?}: {}", self.id, self.reason)
    }
}

impl std::error::Error for ModelIdError {}

/// Which of the two forms [`statements`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Exact,
    Compact,
}

/// Policy statements for a set of targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Statements {
    pub statements: Vec<Value>,
    /// Every resource is named exactly (no wildcard but the region patterns of a geography and
    /// the regions of an application profile's known model, both behind the profile condition).
    pub exact: bool,
}

/// Whether `region` is in a geography's `pattern` (`us-*`).
pub fn region_matches(pattern: &str, region: &str) -> bool {
    pattern.strip_suffix('*').is_some_and(|prefix| region.starts_with(prefix))
}

/// How model `id` is invoked.
pub fn classify(id: &str) -> Result<Kind, ModelIdError> {
    let bad = |reason: &str| ModelIdError { id: id.to_owned(), reason: reason.to_owned() };
    if id.is_empty() {
        return Err(bad("is empty"));
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '?' | '"' | '$')) {
        return Err(bad("must not contain whitespace, quotes, $ or wildcards"));
    }
    if let Some(rest) = id.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let [partition, service, region, account, resource] = parts.as_slice() else {
            return Err(bad("is not a complete arn"));
        };
        if *partition != "aws" || *service != "bedrock" {
            return Err(bad("only arn:aws:bedrock arns are supported"));
        }
        if !resource.starts_with("application-inference-profile/") {
            return Err(bad(
                "only application inference profile arns are accepted; give foundation models and system inference profiles by id",
            ));
        }
        if !is_region(region) {
            return Err(bad("has no valid region"));
        }
        if !is_account(account) {
            return Err(bad("has no valid 12-digit account"));
        }
        return Ok(Kind::Application { arn: id.to_owned() });
    }
    if id.contains('/') || id.ends_with(':') {
        return Err(bad("is not a bedrock model id"));
    }
    if !id.contains('.') {
        return Err(bad("is not a bedrock model id (provider.model)"));
    }
    let (Some(prefix), Some(model)) = crate::aws::split_model_id(id) else {
        return Ok(Kind::Foundation { model: id.to_owned() });
    };
    let facts = facts();
    if prefix == facts.global_prefix {
        return Ok(Kind::Global { id: id.to_owned(), model: model.to_owned() });
    }
    if let Some(pattern) = facts.geographies.get(prefix.as_str()) {
        return Ok(Kind::Geographic { id: id.to_owned(), model: model.to_owned(), region_pattern: pattern.clone() });
    }
    if prefix == "us-gov" {
        return Err(bad("govcloud profiles live in the aws-us-gov partition, which byollm does not cover"));
    }
    Ok(Kind::Foundation { model: id.to_owned() })
}

/// How far from the region called a request under a Bedrock id may be served: a foundation model
/// in that region, a geographic profile within its geography (`[geographies]`), a global profile
/// in any commercial region (AWS Bedrock user guide, "Increase throughput with cross-Region
/// inference"). An application inference profile says nothing of where it sends requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    Region,
    /// The region pattern of the geography (`eu-*`).
    Geography(String),
    Global,
    Unknown,
}

impl Reach {
    /// The reach of model `id`: an id, or the ARN of a foundation model or system profile.
    pub fn of(id: &str) -> Reach {
        let unwrapped;
        let id = match crate::aws::split_model_id(id) {
            _ if !id.starts_with("arn:") => id,
            (Some(prefix), Some(model)) => {
                unwrapped = format!("{prefix}.{model}");
                &unwrapped
            }
            (None, Some(model)) => model,
            (_, None) => return Reach::Unknown,
        };
        match classify(id) {
            Ok(Kind::Foundation { .. }) => Reach::Region,
            Ok(Kind::Geographic { region_pattern, .. }) => Reach::Geography(region_pattern),
            Ok(Kind::Global { .. }) => Reach::Global,
            Ok(Kind::Application { .. }) | Err(_) => Reach::Unknown,
        }
    }

    /// Whether every region `self` may send a request to is one `bound` allows: the same or a
    /// narrower geography (`jp`'s `ap-northeast-*` is within `apac`'s `ap-*`). An unknown reach
    /// is within nothing and bounds nothing.
    pub fn within(&self, bound: &Reach) -> bool {
        match (self, bound) {
            (Reach::Unknown, _) | (_, Reach::Unknown) => false,
            (Reach::Region, _) | (_, Reach::Global) => true,
            (Reach::Geography(inner), Reach::Geography(outer)) => {
                outer.strip_suffix('*').is_some_and(|prefix| inner.starts_with(prefix))
            }
            (Reach::Global, _) | (Reach::Geography(_), Reach::Region) => false,
        }
    }
}

/// `model` without a trailing date and version (`anthropic.claude-sonnet-4-5-20250929-v1:0` →
/// `anthropic.claude-sonnet-4-5`).
fn family_stem(model: &str) -> &str {
    let mut stem = model;
    if let Some((head, version)) = stem.rsplit_once("-v")
        && version.split(':').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
    {
        stem = head;
    }
    if let Some((head, date)) = stem.rsplit_once('-')
        && date.len() == 8
        && date.bytes().all(|b| b.is_ascii_digit())
    {
        stem = head;
    }
    stem
}

/// A wildcard over the family of foundation model `model` (`anthropic.claude-sonnet-4-5*`), or
/// `model` itself when that wildcard would also match another catalog model
/// (`anthropic.claude-opus-5*` matches `anthropic.claude-opus-5-5`).
pub fn family_pattern(model: &str) -> String {
    let stem = family_stem(model);
    let collides = crate::models::catalog()
        .models
        .iter()
        .any(|entry| entry.base_id.starts_with(stem) && family_stem(&entry.base_id) != stem);
    if collides { model.to_owned() } else { format!("{stem}*") }
}

fn foundation_arn(region: &str, model: &str) -> String {
    format!("arn:aws:bedrock:{region}::foundation-model/{model}")
}

fn profile_arn(region: &str, account: &str, id: &str) -> String {
    format!("arn:aws:bedrock:{region}:{account}:inference-profile/{id}")
}

const PROFILE_KEY: &str = "bedrock:InferenceProfileArn";

fn statement(sid: &str, resources: &BTreeSet<String>, condition: Option<Value>) -> Value {
    let mut s = json!({
        "Sid": sid,
        "Effect": "Allow",
        "Action": facts().actions,
        "Resource": resources.iter().collect::<Vec<_>>(),
    });
    if let (Some(condition), Some(map)) = (condition, s.as_object_mut()) {
        map.insert("Condition".to_owned(), condition);
    }
    s
}

/// The statements allowing exactly (or, [`Form::Compact`], at most the model families of) what
/// `targets` need. A geographic profile called from a region outside its geography cannot be
/// invoked at all and is left out. Fails on an id [`classify`] does not understand.
pub fn statements(targets: &[Target], form: Form) -> Result<Statements, ModelIdError> {
    match form {
        Form::Exact => exact(targets),
        Form::Compact => compact(targets),
    }
}

fn exact(targets: &[Target]) -> Result<Statements, ModelIdError> {
    // Allowed with no condition: foundation models called directly, and the profiles themselves.
    let mut direct = BTreeSet::new();
    // Foundation models reachable only through a system profile, and those profiles.
    let (mut via_profile, mut profiles) = (BTreeSet::new(), BTreeSet::new());
    // Region-less foundation models of global profiles, and those profiles.
    let (mut global_models, mut global_profiles) = (BTreeSet::new(), BTreeSet::new());
    // Application profiles whose model is known, and those models; those whose model is not.
    let (mut wrapped, mut known_applications, mut opaque_applications) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for target in targets {
        match classify(&target.id)? {
            Kind::Foundation { model } => {
                direct.insert(foundation_arn(&target.region, &model));
            }
            Kind::Geographic { id, model, region_pattern } => {
                if !region_matches(&region_pattern, &target.region) {
                    continue;
                }
                let profile = profile_arn(&target.region, &target.account, &id);
                direct.insert(profile.clone());
                profiles.insert(profile);
                via_profile.insert(foundation_arn(&region_pattern, &model));
            }
            Kind::Global { id, model } => {
                let profile = profile_arn(&target.region, &target.account, &id);
                direct.insert(profile.clone());
                profiles.insert(profile.clone());
                global_profiles.insert(profile);
                via_profile.insert(foundation_arn(&target.region, &model));
                global_models.insert(foundation_arn("", &model));
            }
            Kind::Application { arn } => {
                direct.insert(arn.clone());
                match &target.wraps {
                    Some(model) => {
                        wrapped.insert(foundation_arn("*", model));
                        known_applications.insert(arn);
                    }
                    None => {
                        opaque_applications.insert(arn);
                    }
                }
            }
        }
    }
    let mut statements = Vec::new();
    if !direct.is_empty() {
        statements.push(statement("InvokeModelsAndProfiles", &direct, None));
    }
    if !via_profile.is_empty() {
        statements.push(statement(
            "FoundationModelsThroughProfiles",
            &via_profile,
            Some(json!({"StringEquals": {PROFILE_KEY: profiles}})),
        ));
    }
    if !global_models.is_empty() {
        statements.push(statement(
            "GlobalFoundationModelsThroughGlobalProfiles",
            &global_models,
            Some(json!({"StringEquals": {"aws:RequestedRegion": "unspecified", PROFILE_KEY: global_profiles}})),
        ));
    }
    if !wrapped.is_empty() {
        statements.push(statement(
            "WrappedModelsThroughApplicationProfiles",
            &wrapped,
            Some(json!({"StringEquals": {PROFILE_KEY: known_applications}})),
        ));
    }
    let exact = opaque_applications.is_empty();
    if !exact {
        statements.push(opaque(&opaque_applications));
    }
    Ok(Statements { statements, exact })
}

/// Any foundation model, but only through these application profiles (which model each wraps is
/// not known here; the profile itself fixes it).
fn opaque(applications: &BTreeSet<String>) -> Value {
    statement(
        "FoundationModelsThroughApplicationProfiles",
        &BTreeSet::from([foundation_arn("*", "*")]),
        Some(json!({"StringEquals": {PROFILE_KEY: applications}})),
    )
}

fn compact(targets: &[Target]) -> Result<Statements, ModelIdError> {
    let (mut direct, mut via_profile, mut through) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mut opaque_applications = BTreeSet::new();
    for target in targets {
        match classify(&target.id)? {
            Kind::Foundation { model } => {
                direct.insert(foundation_arn("*", &family_pattern(&model)));
            }
            Kind::Geographic { id, model, region_pattern } => {
                if !region_matches(&region_pattern, &target.region) {
                    continue;
                }
                direct.insert(profile_arn("*", &target.account, &id));
                via_profile.insert(foundation_arn("*", &family_pattern(&model)));
                through.insert(profile_arn("*", &target.account, "*"));
            }
            Kind::Global { id, model } => {
                direct.insert(profile_arn("*", &target.account, &id));
                via_profile.insert(foundation_arn("*", &family_pattern(&model)));
                through.insert(profile_arn("*", &target.account, "*"));
            }
            Kind::Application { arn } => {
                direct.insert(arn.clone());
                match &target.wraps {
                    Some(model) => {
                        via_profile.insert(foundation_arn("*", &family_pattern(model)));
                        through.insert(arn);
                    }
                    None => {
                        opaque_applications.insert(arn);
                    }
                }
            }
        }
    }
    let mut statements = Vec::new();
    if !direct.is_empty() {
        statements.push(statement("InvokeModelsAndProfiles", &direct, None));
    }
    if !via_profile.is_empty() {
        statements.push(statement(
            "ModelFamiliesThroughProfiles",
            &via_profile,
            Some(json!({"StringLike": {PROFILE_KEY: through}})),
        ));
    }
    if !opaque_applications.is_empty() {
        statements.push(opaque(&opaque_applications));
    }
    Ok(Statements { statements, exact: false })
}

/// A policy document of `statements`.
pub fn document(statements: Vec<Value>) -> Value {
    json!({"Version": "2012-10-17", "Statement": statements})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reach_is_within_the_same_or_a_wider_one_only() {
        let reach = |id: &str| Reach::of(id);
        let base = reach("anthropic.claude-opus-4-7");
        let (us, eu, jp, apac, global) = (
            reach("us.anthropic.claude-opus-4-7"),
            reach("eu.anthropic.claude-opus-4-7"),
            reach("jp.anthropic.claude-opus-4-7"),
            reach("apac.anthropic.claude-opus-4-7"),
            reach("global.anthropic.claude-opus-4-7"),
        );
        assert_eq!(us, Reach::Geography("us-*".into()));
        assert_eq!(reach("arn:aws:bedrock:eu-west-1:111111111111:inference-profile/eu.anthropic.claude-opus-4-7"), eu);
        assert_eq!(reach("arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-opus-4-7"), base);
        let app = reach("arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/abc123");
        assert_eq!(app, Reach::Unknown);
        for wider in [&us, &eu, &global] {
            assert!(base.within(wider) && wider.within(&global));
        }
        assert!(jp.within(&apac) && !apac.within(&jp));
        assert!(!global.within(&eu) && !eu.within(&us) && !us.within(&base) && !global.within(&base));
        assert!(!app.within(&global) && !base.within(&app) && !app.within(&app));
    }

    fn target(id: &str, region: &str) -> Target {
        Target { id: id.into(), region: region.into(), account: "111111111111".into(), wraps: None }
    }

    fn resources(statement: &Value) -> Vec<&str> {
        statement["Resource"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect()
    }

    #[test]
    fn the_facts_parse_and_name_only_the_invoke_actions() {
        let facts = facts();
        assert_eq!(facts.actions, ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]);
        assert_eq!(facts.max_session_policy_chars, 2048);
        assert_eq!(facts.geographies["us"], "us-*");
        assert!(facts.geographies.values().all(|pattern| pattern.ends_with("-*")));
    }

    #[test]
    fn family_patterns_drop_the_version_and_never_reach_another_catalog_model() {
        assert_eq!(family_pattern("anthropic.claude-sonnet-4-5-20250929-v1:0"), "anthropic.claude-sonnet-4-5*");
        assert_eq!(family_pattern("anthropic.claude-opus-4-6-v1"), "anthropic.claude-opus-4-6*");
        assert_eq!(family_pattern("anthropic.claude-sonnet-4-6"), "anthropic.claude-sonnet-4-6*");
        // claude-sonnet-4* would reach claude-sonnet-4-5 and 4-6; claude-opus-5* claude-opus-5-5.
        assert_eq!(
            family_pattern("anthropic.claude-sonnet-4-20250514-v1:0"),
            "anthropic.claude-sonnet-4-20250514-v1:0"
        );
        assert_eq!(family_pattern("anthropic.claude-opus-5"), "anthropic.claude-opus-5");
        // Over the whole catalog: a pattern matches its own model and no other entry's.
        let catalog = &crate::models::catalog().models;
        for entry in catalog {
            let pattern = family_pattern(&entry.base_id);
            let prefix = pattern.strip_suffix('*').unwrap_or(&pattern);
            for other in catalog {
                let matches =
                    if pattern.ends_with('*') { other.base_id.starts_with(prefix) } else { other.base_id == pattern };
                assert_eq!(matches, other.base_id == entry.base_id, "{pattern} vs {}", other.base_id);
            }
        }
    }

    #[test]
    fn a_geographic_profile_outside_its_geography_is_left_out() {
        let out = statements(&[target("us.anthropic.claude-haiku-4-5-20251001-v1:0", "eu-west-1")], Form::Exact);
        assert!(out.unwrap().statements.is_empty());
        for form in [Form::Exact, Form::Compact] {
            assert!(statements(&[target("anthropic.*", "us-east-1")], form).is_err());
        }
    }

    #[test]
    fn application_profiles_are_exact_only_when_their_model_is_known() {
        let arn = "arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/abc123";
        let known = Target { wraps: Some("anthropic.claude-sonnet-4-6".into()), ..target(arn, "us-east-1") };
        let out = statements(std::slice::from_ref(&known), Form::Exact).unwrap();
        assert!(out.exact);
        assert_eq!(resources(&out.statements[0]), [arn]);
        assert_eq!(resources(&out.statements[1]), ["arn:aws:bedrock:*::foundation-model/anthropic.claude-sonnet-4-6"]);
        assert_eq!(out.statements[1]["Condition"]["StringEquals"][PROFILE_KEY], json!([arn]));
        assert!(!out.statements.iter().any(|s| resources(s).iter().any(|r| r.ends_with("/*"))));

        let out = statements(&[target(arn, "us-east-1")], Form::Exact).unwrap();
        assert!(!out.exact, "foundation-model/* through the profile is not exact");
        assert_eq!(resources(&out.statements[1]), ["arn:aws:bedrock:*::foundation-model/*"]);
        assert_eq!(out.statements[1]["Condition"]["StringEquals"][PROFILE_KEY], json!([arn]));
    }

    #[test]
    fn the_compact_form_keeps_profiles_exact_and_models_behind_a_profile() {
        let targets = [
            target("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "us-east-1"),
            target("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "us-west-2"),
            target("anthropic.claude-3-5-haiku-20241022-v1:0", "us-east-1"),
        ];
        let out = statements(&targets, Form::Compact).unwrap();
        assert!(!out.exact);
        assert_eq!(
            resources(&out.statements[0]),
            [
                "arn:aws:bedrock:*:111111111111:inference-profile/global.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "arn:aws:bedrock:*:111111111111:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "arn:aws:bedrock:*::foundation-model/anthropic.claude-3-5-haiku*",
            ]
        );
        assert_eq!(resources(&out.statements[1]), ["arn:aws:bedrock:*::foundation-model/anthropic.claude-sonnet-4-5*"]);
        assert_eq!(
            out.statements[1]["Condition"]["StringLike"][PROFILE_KEY],
            json!(["arn:aws:bedrock:*:111111111111:inference-profile/*"])
        );
        assert_eq!(out.statements.len(), 2);
    }
}
