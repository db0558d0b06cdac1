//! The fakes behind a cloud gateway (`byollm serve`): a fake STS that trusts the team role [`ROLE`]
//! for team `acme`'s run principals, and a fake Bedrock that accepts only the credentials that STS
//! issued; [`config`] points a gateway at both. The test starts the gateway itself (plain, TLS,
//! with extra environment) and then lets the fake STS fetch its keys with
//! `sts.set_providers(vec![gateway.issuer_host()])`. Nothing here reaches AWS.

use crate::harness::callers_toml;
use crate::support::{CredentialStore, FakeBedrock, FakeBedrockOptions, FakeSts, FakeStsOptions, TrustedRole};

/// The role of team `acme`.
pub const ROLE: &str = "arn:aws:iam::111111111111:role/byollm-acme";
/// The role of team `other`, in another account ([`fakes_with_other`]).
pub const OTHER_ROLE: &str = "arn:aws:iam::222222222222:role/byollm-other";

/// Starts both fakes: `sts` and `bedrock` are completed with the trusted role and a credential store
/// they share.
pub async fn fakes(sts: FakeStsOptions, bedrock: FakeBedrockOptions) -> (FakeSts, FakeBedrock) {
    start(vec![trusted(ROLE, "acme")], sts, bedrock).await
}

/// [`fakes`], with team `other`'s [`OTHER_ROLE`] trusted too ([`config_with_other`]).
pub async fn fakes_with_other(sts: FakeStsOptions, bedrock: FakeBedrockOptions) -> (FakeSts, FakeBedrock) {
    start(vec![trusted(ROLE, "acme"), trusted(OTHER_ROLE, "other")], sts, bedrock).await
}

fn trusted(role: &str, team: &str) -> TrustedRole {
    TrustedRole::new(role).sub_like(&[&format!("scoped_principal:{team}/*")]).aud_equals(&["sts.amazonaws.com"])
}

async fn start(roles: Vec<TrustedRole>, sts: FakeStsOptions, bedrock: FakeBedrockOptions) -> (FakeSts, FakeBedrock) {
    let credentials = CredentialStore::new();
    let sts = FakeSts::start(FakeStsOptions { roles, credentials: credentials.clone(), ..sts }).await;
    let bedrock = FakeBedrock::start(FakeBedrockOptions { credentials, ..bedrock }).await;
    (sts, bedrock)
}

/// The gateway's config: the test callers, both fakes' endpoints, team `acme` with [`ROLE`], then
/// `extra` (models, ...).
pub fn config(sts: &FakeSts, bedrock: &FakeBedrock, extra: &str) -> String {
    format!(
        "{}\n[sts]\nendpoint_url = \"{}\"\n[bedrock]\nendpoint_url = \"{}\"\n[[teams]]\nuid = \"acme\"\nrole_arn = \"{ROLE}\"\n{extra}",
        callers_toml(),
        sts.url(),
        bedrock.url()
    )
}

/// [`config`] with team `other` ([`OTHER_ROLE`]) too.
pub fn config_with_other(sts: &FakeSts, bedrock: &FakeBedrock, extra: &str) -> String {
    config(sts, bedrock, &format!("[[teams]]\nuid = \"other\"\nrole_arn = \"{OTHER_ROLE}\"\n{extra}"))
}
