//! AWS identifiers and credentials as types: the leaf every layer shares (config, the broker,
//! the upstream signer, aws-setup). Parsing here is the one place each identifier's rules live.
//!
//! Must never: do I/O, or print a secret (the secret parts of [`AwsCredentials`] are [`Secret`]s).

use std::fmt;
use std::time::SystemTime;

use crate::secret::Secret;

/// Temporary AWS credentials. The secret parts are [`Secret`]s.
#[derive(Debug, Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    pub expiration: Option<SystemTime>,
}

impl AwsCredentials {
    /// Convert for the AWS SDK's signers.
    pub fn to_sdk(&self, provider: &'static str) -> aws_credential_types::Credentials {
        aws_credential_types::Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.expose().to_owned(),
            self.session_token.as_ref().map(|t| t.expose().to_owned()),
            self.expiration,
            provider,
        )
    }
}

/// An IAM role ARN, `arn:<partition>:iam::<12 digits>:role/<path/name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleArn(String);

impl RoleArn {
    pub fn parse(value: &str) -> Result<RoleArn, String> {
        let bad =
            || format!("{value:?} is not an IAM role ARN; expected arn:aws:iam::<12-digit account id>:role/<name>");
        let rest = value.strip_prefix("arn:").ok_or_else(bad)?;
        let (partition, rest) = rest.split_once(':').ok_or_else(bad)?;
        if !matches!(partition, "aws" | "aws-cn" | "aws-us-gov") {
            return Err(bad());
        }
        let rest = rest.strip_prefix("iam::").ok_or_else(bad)?;
        let (account, resource) = rest.split_once(':').ok_or_else(bad)?;
        if !is_account(account) {
            return Err(bad());
        }
        let name = resource.strip_prefix("role/").ok_or_else(bad)?;
        let name_ok = !name.is_empty()
            && name.len() <= 512
            && !name.ends_with('/')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b));
        if !name_ok {
            return Err(bad());
        }
        Ok(RoleArn(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn account_id(&self) -> &str {
        self.0.split(':').nth(4).unwrap_or_default()
    }

    /// The role's name, without its path.
    pub fn role_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `region` is an AWS region name such as `us-east-1`, `ap-southeast-4`, `us-gov-west-1`
/// or `eusc-de-east-1`: an area of 2 to 4 letters, words, a number. The one rule for every region byollm reads
/// (configuration, routes, ARNs, endpoints).
pub fn is_region(region: &str) -> bool {
    let mut parts = region.split('-');
    let Some(first) = parts.next() else { return false };
    let rest: Vec<&str> = parts.collect();
    region.len() <= 32
        && (2..=4).contains(&first.len())
        && first.chars().all(|c| c.is_ascii_lowercase())
        && rest.len() >= 2
        && rest.last().is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        && rest[..rest.len() - 1].iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
}

/// Whether `account` is a 12-digit AWS account id.
pub fn is_account(account: &str) -> bool {
    account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())
}

/// A region from configuration: [`is_region`], or what is wrong with it.
pub fn validate_region(region: String) -> Result<String, String> {
    if is_region(&region) { Ok(region) } else { Err(format!("{region:?} is not an AWS region like us-east-1")) }
}

/// Splits a Bedrock id into (cross-region profile prefix, foundation-model id). An ARN of a
/// foundation model or of a system-defined inference profile is unwrapped; any other ARN
/// (application inference profile, provisioned model) names no model: `(None, None)`.
pub fn split_model_id(id: &str) -> (Option<String>, Option<&str>) {
    let id = match id.strip_prefix("arn:") {
        Some(rest) => {
            // arn:<partition>:bedrock:<region>:<account>:<type>/<resource>
            let Some(resource) = rest.splitn(5, ':').nth(4) else { return (None, None) };
            match resource.split_once('/') {
                Some(("foundation-model", model)) => return (None, Some(model)),
                Some(("inference-profile", profile)) => profile,
                _ => return (None, None),
            }
        }
        None => id,
    };
    match id.split_once('.') {
        // `us.anthropic.claude-…`: a prefix, then a provider-qualified model id.
        Some((prefix, rest)) if rest.contains('.') && !prefix.is_empty() => (Some(prefix.to_owned()), Some(rest)),
        _ => (None, Some(id)),
    }
}

/// A Bedrock model id, inference profile id, or inference profile / foundation model ARN.
pub fn validate_model_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 2048
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b":.-_/".contains(&b))
        && (id.contains('.') || id.starts_with("arn:"));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a Bedrock model id (e.g. global.anthropic.claude-opus-5-5) or inference profile ARN"
        ))
    }
}
