//! Which configured model a Bedrock-native request names: the `{modelId}` of `/model/{id}/…`
//! resolved to a `[models]` entry by [`bedrock_target`], before any STS or Bedrock call; and the
//! foundation-model id Bedrock's `CountTokens` takes ([`foundation_model_id`]).
//!
//! Which routes then serve the model (profile, region, role, failover) is the routing policy's
//! ([`crate::routing::Routing::start_on`]), as on every surface.
//!
//! Must never: read HTTP, call Bedrock, pick routes, or decide who may act for a run (that is
//! [`crate::identity::authz`]). Depends on `config` and `models` only.

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
}

impl BedrockTarget<'_> {
    /// The foundation-model id behind the target ([`foundation_model_id`]).
    pub fn foundation_model_id(&self) -> &str {
        foundation_model_id(self.model, self.model_id)
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
}

/// Resolves the model a request names to the Bedrock model and region that serve it. `region` is
/// the run's (the team's, the person's session's).
///
/// A path segment matches a configured public name exactly, else a configured model by Bedrock id
/// ([`models::find_by_bedrock_id`]: the same id, or another profile or ARN of the same catalog
/// model, so `us.anthropic.claude-opus-4-7` is served by a model configured as
/// `global.anthropic.claude-opus-4-7`). Anything else is not served, so no Bedrock call is made
/// for a model the configuration does not list.
pub fn bedrock_target<'a>(
    config: &'a Config,
    region: &str,
    model: ModelRef<'_>,
) -> Result<BedrockTarget<'a>, NotServed> {
    let found = match model {
        ModelRef::Name(name) => models::find_by_name(&config.models, name),
        ModelRef::PathSegment(segment) => models::find_by_name(&config.models, segment)
            .or_else(|| models::find_by_bedrock_id(&config.models, segment)),
    };
    match found {
        Some((name, model)) => Ok(BedrockTarget { name, model, model_id: &model.id, region: region.to_owned() }),
        None => {
            let requested = match model {
                ModelRef::Name(name) => name.to_owned(),
                ModelRef::PathSegment(segment) => decode_for_message(segment),
            };
            Err(NotServed { requested })
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
        // Another profile of the same model is served by the configured one.
        check(PathSegment("us.anthropic.claude-opus-4-7"), Ok(("opus", "global.anthropic.claude-opus-4-7")));
        check(
            PathSegment("us.anthropic.claude-haiku-4-5-20251001-v1%3A0"),
            Ok(("haiku", "us.anthropic.claude-haiku-4-5-20251001-v1:0")),
        );
        check(
            PathSegment(
                "arn%3Aaws%3Abedrock%3Aus-east-1%3A111111111111%3Ainference-profile%2Fus.anthropic.claude-opus-4-7",
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
    fn token_counting_uses_the_foundation_model() {
        let config = config();
        let target = bedrock_target(&config, "us-east-1", ModelRef::Name("opus")).unwrap();
        assert_eq!(target.foundation_model_id(), "anthropic.claude-opus-4-7");
        let haiku = bedrock_target(&config, "us-east-1", ModelRef::Name("haiku")).unwrap();
        assert_eq!(haiku.foundation_model_id(), "anthropic.claude-haiku-4-5-20251001-v1:0");
    }
}
