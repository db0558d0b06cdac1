//! AWS identifiers and credentials as types: the leaf every layer shares (config, the broker,
//! the upstream signer, aws-setup). Parsing here is the one place each identifier's rules live.
//!
//! Must never: do I/O, or print a secret (the secret parts of [`AwsCredentials`] are [`Secret`]s).

pub mod bedrock_iam;

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
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
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

/// An AWS region name like `us-east-1`.
pub fn validate_region(region: String) -> Result<String, String> {
    let ok = !region.is_empty()
        && region.len() <= 32
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && region.contains('-');
    if ok { Ok(region) } else { Err(format!("{region:?} is not an AWS region like us-east-1")) }
}
