//! The fakes behind a cloud gateway (`byollm serve`): a fake STS that trusts the team role [`ROLE`]
//! for team `acme`'s run principals, and a fake Bedrock that accepts only the credentials that STS
//! issued; [`config`] points a gateway at both. The test starts the gateway itself (plain, TLS,
//! with extra environment) and then lets the fake STS fetch its keys with
//! `sts.set_providers(vec![gateway.issuer_host()])`. Nothing here reaches AWS.

use crate::harness::callers_toml;
use crate::support::{CredentialStore, FakeBedrock, FakeBedrockOptions, FakeSts, FakeStsOptions, TrustedRole};

/// The role of team `acme`.
pub const ROLE: &str = "arn:aws:iam::111111111111:role/byollm-acme";

/// Starts both fakes: `sts` and `bedrock` are completed with the trusted role and a credential store
/// they share.
pub async fn fakes(sts: FakeStsOptions, bedrock: FakeBedrockOptions) -> (FakeSts, FakeBedrock) {
    let credentials = CredentialStore::new();
    let sts = FakeSts::start(FakeStsOptions {
        roles: vec![TrustedRole::new(ROLE).sub_like(&["scoped_principal:acme/*"]).aud_equals(&["sts.amazonaws.com"])],
        credentials: credentials.clone(),
        ..sts
    })
    .await;
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
