//! Which configured model a Bedrock-native request names: the `{modelId}` of `/model/{id}/…`
//! resolved to a `[models]` entry by [`bedrock_target`], before any STS or Bedrock call; and the
//! foundation-model id Bedrock's `CountTokens` takes ([`foundation_model_id`]).
//!
//! Which routes then serve the model (profile, region, role, failover) is the routing policy's
//! ([`crate::routing::Routing::start_on`]), as on every surface.
//!
//! A Bedrock id in the path also bounds where the request may go ([`Bound`]): it is served only
//! through ids of the same or a narrower geography ([`Reach`]), so a client naming an `eu.`
//! profile is never served through a `global.` one, which could run it outside the EU. One
//! exception, for the id an SDK derives from its own region (Claude Code in `us-east-1` asks for
//! `us.anthropic.…`): a geographic profile that contains the run's own region may be served
//! through the configured `global.` profile.
//!
//! Must never: read HTTP, call Bedrock, pick routes, or decide who may act for a run (that is
//! [`crate::identity::authz`]). Depends on `config`, `models` and `bedrock_iam` only.

use crate::bedrock_iam::{Reach, region_matches};
use crate::config::{Config, ModelConfig};
use crate::models;

/// How the client named the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelRef<'a> {
    /// A public name (`"model"` of a Messages request).
    Name(&'a str),
    /// The `{modelId}` segment of a Bedrock URL path, as sent (percent-encoded): a configured
    /// public name, a Bedrock model id, a cross-region profile id or an ARN.
    PathSegment(&'a str),
}

/// Where one request goes.
#[derive(Debug, Clone, PartialEq)]
pub struct BedrockTarget<'a> {
    /// The public name of the configured model that serves the request.
    pub name: &'a str,
    pub model: &'a ModelConfig,
    /// What is invoked: the configured id (model, inference profile or ARN).
    pub model_id: &'a str,
    /// Bedrock region: the run's.
    pub region: String,
    /// How far the client allowed the request to go, when it named a Bedrock id (not a public
    /// name): every route that serves it must stay within ([`BedrockTarget::allows`]).
    pub bound: Option<Bound>,
}

impl BedrockTarget<'_> {
    /// The foundation-model id behind the target ([`foundation_model_id`]).
    pub fn foundation_model_id(&self) -> &str {
        foundation_model_id(self.model, self.model_id)
    }

    /// Whether the request may be sent as `model_id` (a route's profile): the id the client named,
    /// or one whose geography is the same or narrower.
    pub fn allows(&self, model_id: &str) -> bool {
        self.bound.as_ref().is_none_or(|bound| model_id == self.model_id || bound.admits(model_id))
    }
}

/// How far a request that names a Bedrock id may go: the named id's [`Reach`], and whether a
/// global profile is admitted too (the named geography contains the run's region).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    named: Reach,
    global: bool,
}

impl Bound {
    /// The bound of `named_id` (an id or ARN) for a run in `run_region`.
    pub fn new(named_id: &str, run_region: &str) -> Bound {
        let named = Reach::of(named_id);
        let global = matches!(&named, Reach::Geography(pattern) if region_matches(pattern, run_region));
        Bound { named, global }
    }

    /// Whether the request may be sent as `id`.
    pub fn admits(&self, id: &str) -> bool {
        let reach = Reach::of(id);
        reach.within(&self.named) || (self.global && reach == Reach::Global)
    }
}

/// The foundation-model id (`anthropic.claude-…`) behind `invoked_id` (the configured id or a
/// route's profile) of `model`, for the operations Bedrock takes only with one (`CountTokens`):
/// the catalog's base id, else the id without its cross-region prefix, else the id as it is.
pub fn foundation_model_id<'a>(model: &'a ModelConfig, invoked_id: &'a str) -> &'a str {
    if let Some(entry) = model.entry() {
        return &entry.base_id;
    }
    match crate::aws::split_model_id(invoked_id) {
        (Some(_), Some(base)) if !invoked_id.starts_with("arn:") => base,
        _ => invoked_id,
    }
}

/// The model the request named is not one the caller may use here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotServed {
    /// What the client sent, decoded where it could be.
    pub requested: String,
    /// The configured id that would serve the model, had it not reached further than the id
    /// the client named.
    pub wider: Option<String>,
}

/// Resolves the model a request names to the Bedrock model and region that serve it. `region` is
/// the run's (the team's, the person's session's).
///
/// A path segment matches a configured public name exactly, else a configured model by Bedrock id
/// ([`models::find_by_bedrock_id`]: the same id, or another profile or ARN of the same catalog
/// model the named id's [`Bound`] admits, so `global.anthropic.claude-opus-4-7` is served by a
/// model configured as `us.anthropic.claude-opus-4-7`, `eu.…` never by `global.…` for a run in
/// `us-east-1`). Anything else
/// is not served, so no Bedrock call is made for a model the configuration does not list.
pub fn bedrock_target<'a>(
    config: &'a Config,
    region: &str,
    model: ModelRef<'_>,
) -> Result<BedrockTarget<'a>, NotServed> {
    // The named id's bound, worked out once (on the first substitute looked at).
    let bound = std::cell::OnceCell::new();
    let within =
        |requested: &str, model: &ModelConfig| bound.get_or_init(|| Bound::new(requested, region)).admits(&model.id);
    let found = match model {
        ModelRef::Name(name) => models::find_by_name(&config.models, name).map(|found| (found, false)),
        ModelRef::PathSegment(segment) => models::find_by_name(&config.models, segment)
            .map(|found| (found, false))
            .or_else(|| Some((models::find_by_bedrock_id(&config.models, segment, within)?, true))),
    };
    match found {
        Some(((name, model), by_id)) => Ok(BedrockTarget {
            name,
            model,
            model_id: &model.id,
            region: region.to_owned(),
            // Served by the very id named when no substitute was looked at.
            bound: by_id.then(|| bound.into_inner().unwrap_or_else(|| Bound::new(&model.id, region))),
        }),
        None => {
            let (requested, wider) = match model {
                ModelRef::Name(name) => (name.to_owned(), None),
                ModelRef::PathSegment(segment) => (
                    decode_for_message(segment),
                    models::find_by_bedrock_id(&config.models, segment, |_, _| true).map(|(_, model)| model.id.clone()),
                ),
            };
            Err(NotServed { requested, wider })
        }
    }
}

/// A path segment made readable for an error message: `%3A` → `:`, anything undecodable kept,
/// at most 256 characters.
fn decode_for_message(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() && out.len() < 256 {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_toml(
            r#"
            dev = true
            [models."opus"]
            id = "global.anthropic.claude-opus-4-7"
            [models."haiku"]
            id = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
            "#,
        )
        .unwrap()
    }

    /// `check(model ref, expected)`: `Ok((public name, invoked id))` or `Err(requested)`.
    fn check(model: ModelRef<'_>, expected: Result<(&str, &str), &str>) {
        let config = config();
        let got = bedrock_target(&config, "eu-west-1", model)
            .map(|target| {
                assert_eq!(target.region, "eu-west-1");
                (target.name.to_owned(), target.model_id.to_owned())
            })
            .map_err(|refused| refused.requested);
        let expected = expected.map(|(a, b)| (a.to_owned(), b.to_owned())).map_err(str::to_owned);
        assert_eq!(got, expected, "{model:?}");
    }

    #[test]
    fn configured_models_by_name_id_profile_or_arn_and_nothing_else() {
        use ModelRef::{Name, PathSegment};
        check(Name("opus"), Ok(("opus", "global.anthropic.claude-opus-4-7")));
        check(Name("global.anthropic.claude-opus-4-7"), Err("global.anthropic.claude-opus-4-7"));
        check(PathSegment("opus"), Ok(("opus", "global.anthropic.claude-opus-4-7")));
        check(PathSegment("global.anthropic.claude-opus-4-7"), Ok(("opus", "global.anthropic.claude-opus-4-7")));
        // Another profile of the same model is served by the configured one when it reaches no
        // further: a global request through a `us.` profile, never a `us.` one through `global.`.
        check(
            PathSegment("global.anthropic.claude-haiku-4-5-20251001-v1%3A0"),
            Ok(("haiku", "us.anthropic.claude-haiku-4-5-20251001-v1:0")),
        );
        check(PathSegment("us.anthropic.claude-opus-4-7"), Err("us.anthropic.claude-opus-4-7"));
        check(
            PathSegment("eu.anthropic.claude-haiku-4-5-20251001-v1%3A0"),
            Err("eu.anthropic.claude-haiku-4-5-20251001-v1:0"),
        );
        check(
            PathSegment("us.anthropic.claude-haiku-4-5-20251001-v1%3A0"),
            Ok(("haiku", "us.anthropic.claude-haiku-4-5-20251001-v1:0")),
        );
        check(
            PathSegment(
                "arn%3Aaws%3Abedrock%3Aus-east-1%3A111111111111%3Ainference-profile%2Fus.anthropic.claude-opus-4-7",
            ),
            Err("arn:aws:bedrock:us-east-1:111111111111:inference-profile/us.anthropic.claude-opus-4-7"),
        );
        check(
            PathSegment(
                "arn%3Aaws%3Abedrock%3Aus-east-1%3A111111111111%3Ainference-profile%2Fglobal.anthropic.claude-opus-4-7",
            ),
            Ok(("opus", "global.anthropic.claude-opus-4-7")),
        );
        // Not configured: refused by name, decoded for the message.
        check(PathSegment("us.anthropic.claude-opus-5-5"), Err("us.anthropic.claude-opus-5-5"));
        check(
            PathSegment("us.anthropic.claude-opus-4-1-20250805-v1%3A0"),
            Err("us.anthropic.claude-opus-4-1-20250805-v1:0"),
        );
        check(PathSegment("bad%zz%0Aid"), Err("bad%zzid"));
        check(Name("gpt-4o"), Err("gpt-4o"));
    }

    #[test]
    fn a_named_id_bounds_the_routes_and_a_wider_substitute_is_named_in_the_refusal() {
        let config = config();
        let eu = ModelRef::PathSegment("eu.anthropic.claude-opus-4-7");
        let refused = bedrock_target(&config, "us-east-1", eu).unwrap_err();
        assert_eq!(refused.wider.as_deref(), Some("global.anthropic.claude-opus-4-7"));
        // The profile of the run's own geography (what an SDK derives from its region) may be
        // served through the configured global profile; another geography's may not.
        let us = ModelRef::PathSegment("us.anthropic.claude-opus-4-7");
        assert_eq!(bedrock_target(&config, "us-east-1", us).unwrap().model_id, "global.anthropic.claude-opus-4-7");
        assert_eq!(bedrock_target(&config, "eu-west-1", eu).unwrap().model_id, "global.anthropic.claude-opus-4-7");
        assert!(bedrock_target(&config, "eu-west-1", us).is_err());
        let global = bedrock_target(&config, "us-east-1", ModelRef::PathSegment("global.anthropic.claude-opus-4-7"));
        let global = global.unwrap();
        assert!(global.allows("global.anthropic.claude-opus-4-7") && global.allows("eu.anthropic.claude-opus-4-7"));
        let haiku = ModelRef::PathSegment("us.anthropic.claude-haiku-4-5-20251001-v1%3A0");
        let us = bedrock_target(&config, "us-west-2", haiku).unwrap();
        assert!(us.allows("us.anthropic.claude-haiku-4-5-20251001-v1:0"));
        assert!(us.allows("anthropic.claude-haiku-4-5-20251001-v1:0"));
        assert!(us.allows("global.anthropic.claude-haiku-4-5-20251001-v1:0"), "us-west-2 is in us-*");
        assert!(!us.allows("eu.anthropic.claude-haiku-4-5-20251001-v1:0"));
        assert!(!us.allows("arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/x1"));
        let in_eu = bedrock_target(&config, "eu-central-1", haiku).unwrap();
        assert!(!in_eu.allows("global.anthropic.claude-haiku-4-5-20251001-v1:0"));
        // A public name bounds nothing: the admin's routes decide.
        let named = bedrock_target(&config, "eu-central-1", ModelRef::PathSegment("haiku")).unwrap();
        assert!(named.allows("global.anthropic.claude-haiku-4-5-20251001-v1:0"));
    }

    #[test]
    fn token_counting_uses_the_foundation_model() {
        let config = config();
        let target = bedrock_target(&config, "us-east-1", ModelRef::Name("opus")).unwrap();
        assert_eq!(target.foundation_model_id(), "anthropic.claude-opus-4-7");
        let haiku = bedrock_target(&config, "us-east-1", ModelRef::Name("haiku")).unwrap();
        assert_eq!(haiku.foundation_model_id(), "anthropic.claude-haiku-4-5-20251001-v1:0");
    }
}
