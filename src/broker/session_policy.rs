//! The session policy for credentials that leave the gateway (`/v1/credentials*`): passed as
//! `Policy` to `AssumeRoleWithWebIdentity`, it narrows the role's permissions (never widens them)
//! to `bedrock:InvokeModel` and `bedrock:InvokeModelWithResponseStream` (which also cover
//! `Converse` and `ConverseStream`) on the foundation models and inference profiles of the
//! configured models. A worker holding such credentials can do nothing else with the role.
//!
//! STS accepts at most 2,048 characters of plaintext policy (and a packed size shared with session
//! tags); a policy that would be longer falls back to the same actions on every foundation model
//! and inference profile, still narrower than nothing, and says so in the log at start.
//! `sts.session_policy = false` turns it off.

use serde_json::json;

use crate::ops::aws_setup::{BEDROCK_ACTIONS, invoke_arns};

/// STS's limit on a session policy's plaintext, in characters.
pub const MAX_POLICY_CHARS: usize = 2048;

/// Every foundation model and inference profile: the fallback when the exact list is too long.
const BROAD: [&str; 3] = [
    "arn:aws:bedrock:*::foundation-model/*",
    "arn:aws:bedrock:*:*:inference-profile/*",
    "arn:aws:bedrock:*:*:application-inference-profile/*",
];

/// The policy document (compact JSON) for `model_ids`, and whether it lists them exactly.
pub fn session_policy<'a>(model_ids: impl IntoIterator<Item = &'a str>) -> (String, bool) {
    let mut resources: Vec<String> = Vec::new();
    let mut exact = true;
    for id in model_ids {
        match invoke_arns(id) {
            Ok(arns) => resources.extend(arns),
            Err(error) => {
                tracing::warn!(%error, "a configured model id is not understood; the session policy allows every model");
                exact = false;
            }
        }
    }
    resources.sort();
    resources.dedup();
    let document = |resources: &[String]| {
        json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": BEDROCK_ACTIONS, "Resource": resources}],
        })
        .to_string()
    };
    if exact && !resources.is_empty() {
        let policy = document(&resources);
        if policy.chars().count() <= MAX_POLICY_CHARS {
            return (policy, true);
        }
    }
    (document(&BROAD.map(str::to_owned)), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_models_fit_exactly() {
        let models = crate::models::default_models();
        assert!(!models.is_empty());
        let (policy, exact) = session_policy(models.values().map(|m| m.id.as_str()));
        assert!(exact && policy.len() <= MAX_POLICY_CHARS, "{} chars", policy.len());
        let value: serde_json::Value = serde_json::from_str(&policy).unwrap();
        let statement = &value["Statement"][0];
        assert_eq!(statement["Action"], json!(["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]));
        let resources: Vec<&str> =
            statement["Resource"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        for model in models.values() {
            for arn in invoke_arns(&model.id).unwrap() {
                assert!(resources.contains(&arn.as_str()), "{arn} missing from {resources:?}");
            }
        }
        assert!(!resources.iter().any(|r| r.ends_with("/*")), "{resources:?}");
    }

    #[test]
    fn too_many_models_fall_back_to_every_model_but_the_same_actions() {
        let ids: Vec<String> = (0..40).map(|i| format!("us.anthropic.claude-model-{i:02}-20250101-v1:0")).collect();
        let (policy, exact) = session_policy(ids.iter().map(String::as_str));
        assert!(!exact && policy.len() <= MAX_POLICY_CHARS);
        assert!(policy.contains("foundation-model/*") && policy.contains("bedrock:InvokeModelWithResponseStream"));
        assert!(!policy.contains("\"*\""), "never every action or every resource: {policy}");
    }
}
