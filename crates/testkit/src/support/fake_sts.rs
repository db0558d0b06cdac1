//! Fake AWS STS answering `AssumeRoleWithWebIdentity` (query protocol, XML), with AWS's checks.
//!
//! Trust policies are evaluated by this file's own IAM evaluator ([`iam_allows`]): `Allow`/`Deny`
//! statements, `Principal.Federated`, `Action` (a tagged token also needs `sts:TagSession`, a
//! source identity `sts:SetSourceIdentity`, as AWS requires) and the condition operators
//! `StringEquals`, `StringNotEquals`, `StringEqualsIgnoreCase`, `StringLike`, `StringNotLike` and
//! `Null` (with `...IfExists` and `ForAnyValue:`/`ForAllValues:`) over `<provider>:sub`,
//! `<provider>:aud`, `aws:RequestTag/<key>`, `aws:TagKeys` and `sts:SourceIdentity`. It shares no
//! code with the gateway's policy generator. Session tags and the source identity are read from the
//! token's `https://aws.amazon.com/tags` and `https://aws.amazon.com/source_identity` claims; a
//! session policy (`Policy`) is checked for size and JSON and recorded with what was issued.
//!
//! Identity policies (a role's permissions policy, a session policy) are evaluated by
//! [`iam_permits`], with the same operators over `Resource`; [`bedrock_allows`] models the checks
//! Bedrock makes for one invocation (the profile, and the foundation model it routes to with
//! `bedrock:InferenceProfileArn`), so a test can ask whether credentials can invoke a model.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::signature;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::{
    BASE64ISH, CredentialStore, ServerTask, StoredCredential, UPPER_DIGITS, iso8601, parse_form, random_string,
    request_id, serve, unix_now, xml_escape,
};

const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// STS error codes as they appear in `<Code>`, with AWS's HTTP status for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StsErrorCode {
    AccessDenied,
    InvalidIdentityToken,
    ExpiredToken,
    IdpCommunicationError,
    IdpRejectedClaim,
    MalformedPolicyDocument,
    PackedPolicyTooLarge,
    RegionDisabled,
    ValidationError,
    Throttling,
    /// Unknown `Action` / `Version`.
    InvalidAction,
    /// AWS's own failure (HTTP 500, `Receiver`).
    InternalFailure,
    /// STS is briefly unavailable (HTTP 503, `Receiver`).
    ServiceUnavailable,
}

impl StsErrorCode {
    pub fn code(self) -> &'static str {
        match self {
            Self::AccessDenied => "AccessDenied",
            Self::InvalidIdentityToken => "InvalidIdentityToken",
            Self::ExpiredToken => "ExpiredTokenException",
            Self::IdpCommunicationError => "IDPCommunicationError",
            Self::IdpRejectedClaim => "IDPRejectedClaim",
            Self::MalformedPolicyDocument => "MalformedPolicyDocument",
            Self::PackedPolicyTooLarge => "PackedPolicyTooLarge",
            Self::RegionDisabled => "RegionDisabledException",
            Self::ValidationError => "ValidationError",
            Self::Throttling => "Throttling",
            Self::InvalidAction => "InvalidAction",
            Self::InternalFailure => "InternalFailure",
            Self::ServiceUnavailable => "ServiceUnavailable",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::AccessDenied | Self::IdpRejectedClaim | Self::RegionDisabled => 403,
            Self::InternalFailure => 500,
            Self::ServiceUnavailable => 503,
            _ => 400,
        }
    }

    fn default_message(self) -> &'static str {
        match self {
            Self::AccessDenied => "Not authorized to perform sts:AssumeRoleWithWebIdentity",
            Self::InvalidIdentityToken => "The web identity token that was passed could not be validated by AWS.",
            Self::ExpiredToken => "Token expired",
            Self::IdpCommunicationError => {
                "The request could not be fulfilled because the identity provider (IDP) that was asked to verify \
                 the incoming identity token could not be reached."
            }
            Self::IdpRejectedClaim => "The identity provider reported that authentication failed.",
            Self::MalformedPolicyDocument => "The policy document is malformed.",
            Self::PackedPolicyTooLarge => "Packed size of the session policies and session tags combined is too large.",
            Self::RegionDisabled => "STS is not activated in this region for account:123456789012.",
            Self::ValidationError => "1 validation error detected",
            Self::Throttling => "Rate exceeded",
            Self::InvalidAction => "Could not find operation for version 2011-06-15",
            Self::InternalFailure => {
                "The request processing has failed because of an unknown error, exception or failure."
            }
            Self::ServiceUnavailable => "The request has failed due to a temporary failure of the server.",
        }
    }
}

/// One role and its trust policy: either a whole policy document ([`TrustedRole::with_policy`]),
/// or one built from the shorthand below (`Federated` principal + `sub`/`aud` conditions, with
/// `sts:AssumeRoleWithWebIdentity` only unless [`TrustedRole::allow_tags`]).
#[derive(Debug, Clone)]
pub struct TrustedRole {
    /// `arn:aws:iam::<account>:role/<path/>name`.
    pub arn: String,
    /// Registered provider (`host/path`) the trust policy names as `Federated`; `None`: any registered one.
    pub provider: Option<String>,
    /// `StringLike` on `<provider>:sub`; empty: no condition.
    pub sub_like: Vec<String>,
    /// `StringEquals` on `<provider>:aud`; empty: no condition.
    pub aud_equals: Vec<String>,
    /// The shorthand policy also allows `sts:TagSession` and `sts:SetSourceIdentity`.
    pub tags_allowed: bool,
    /// A whole trust policy document; when set, the shorthand fields above are ignored.
    pub policy: Option<Value>,
    /// The role's `MaxSessionDuration` (3600..=43200 in IAM; default 3600).
    pub max_session_duration: u32,
}

impl TrustedRole {
    pub fn new(arn: &str) -> Self {
        TrustedRole {
            arn: arn.into(),
            provider: None,
            sub_like: vec![],
            aud_equals: vec![],
            tags_allowed: false,
            policy: None,
            max_session_duration: 3600,
        }
    }

    /// A role whose trust policy is exactly `policy` (as `aws iam create-role` would take it).
    pub fn with_policy(arn: &str, policy: Value) -> Self {
        TrustedRole { policy: Some(policy), ..TrustedRole::new(arn) }
    }

    pub fn allow_tags(mut self) -> Self {
        self.tags_allowed = true;
        self
    }

    /// The trust policy document, for a token from `provider_arn` when the shorthand names none.
    pub fn document(&self, account: &str, provider_arn: &str) -> Value {
        if let Some(policy) = &self.policy {
            return policy.clone();
        }
        let federated = match &self.provider {
            Some(provider) => format!("arn:aws:iam::{account}:oidc-provider/{provider}"),
            None => provider_arn.to_owned(),
        };
        let provider = federated.split_once(":oidc-provider/").map(|(_, p)| p.to_owned()).unwrap_or_default();
        let mut actions = vec!["sts:AssumeRoleWithWebIdentity"];
        if self.tags_allowed {
            actions.extend(["sts:TagSession", "sts:SetSourceIdentity"]);
        }
        let mut condition = serde_json::Map::new();
        if !self.sub_like.is_empty() {
            condition.insert("StringLike".into(), serde_json::json!({format!("{provider}:sub"): self.sub_like}));
        }
        if !self.aud_equals.is_empty() {
            condition.insert("StringEquals".into(), serde_json::json!({format!("{provider}:aud"): self.aud_equals}));
        }
        serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": federated},
                "Action": actions,
                "Condition": condition,
            }],
        })
    }

    pub fn sub_like(mut self, patterns: &[&str]) -> Self {
        self.sub_like = patterns.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn aud_equals(mut self, values: &[&str]) -> Self {
        self.aud_equals = values.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn provider(mut self, provider: &str) -> Self {
        self.provider = Some(strip_scheme(provider).into());
        self
    }

    pub fn max_session_duration(mut self, secs: u32) -> Self {
        self.max_session_duration = secs;
        self
    }
}

#[derive(Debug, Clone)]
pub struct FakeStsOptions {
    /// Registered IAM OIDC providers, as IAM stores them: issuer URL without scheme (`host[:port]/path`).
    pub providers: Vec<String>,
    /// Client id list of the providers (`aud` must be one of them). Default `["sts.amazonaws.com"]`.
    pub audiences: Vec<String>,
    pub roles: Vec<TrustedRole>,
    /// Accept `http://127.0.0.1|localhost|[::1]` issuers (our dev mode). AWS itself requires `https://`.
    pub allow_http_loopback: bool,
    /// Override the issued credentials' lifetime (normally `DurationSeconds`) so tests see expiry quickly.
    pub credential_lifetime: Option<Duration>,
    /// How long discovery + JWKS are reused per issuer. An unknown `kid` forces one refetch.
    pub jwks_cache_ttl: Duration,
    /// Leeway for `iat` / `nbf` in the future.
    pub clock_skew: Duration,
    /// Issued credentials are added here so a [`super::FakeBedrock`] sharing it accepts them.
    pub credentials: CredentialStore,
    /// A certificate (PEM) trusted for `https://` issuers, as AWS trusts public CAs: a test's
    /// self-signed one.
    pub tls_root_pem: Option<String>,
}

impl Default for FakeStsOptions {
    fn default() -> Self {
        FakeStsOptions {
            providers: vec![],
            audiences: vec!["sts.amazonaws.com".into()],
            roles: vec![],
            allow_http_loopback: true,
            credential_lifetime: None,
            jwks_cache_ttl: Duration::from_secs(60),
            clock_skew: Duration::from_secs(60),
            credentials: CredentialStore::new(),
            tls_root_pem: None,
        }
    }
}

/// What the next calls do, consumed one per call; once empty, calls are handled normally.
#[derive(Debug, Clone)]
pub enum StsStep {
    /// Handle normally.
    Normal,
    /// Fail with this code, its AWS status and a stock message.
    Fail(StsErrorCode),
    FailWith(StsErrorCode, String),
    /// Wait, then handle normally.
    Delay(Duration),
}

impl StsStep {
    /// `n` copies of `Fail(code)`.
    pub fn fail_times(code: StsErrorCode, n: usize) -> Vec<StsStep> {
        vec![StsStep::Fail(code); n]
    }
}

/// A request as received.
#[derive(Debug, Clone, Default)]
pub struct StsRequest {
    pub action: Option<String>,
    pub version: Option<String>,
    pub role_arn: Option<String>,
    pub role_session_name: Option<String>,
    pub duration_seconds: Option<String>,
    pub web_identity_token: Option<String>,
    /// The inline session policy (`Policy`), as sent.
    pub policy: Option<String>,
    /// `Some(code)` if answered with an error.
    pub error_code: Option<String>,
    /// `Some(access key id)` if credentials were issued.
    pub access_key_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IssuedCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expiration: SystemTime,
    pub role_arn: String,
    pub role_session_name: String,
    pub subject: String,
    pub audience: String,
    /// `arn:aws:sts::<account>:assumed-role/<role name>/<session>`.
    pub assumed_role_arn: String,
    /// `<role unique id>:<session>`.
    pub assumed_role_id: String,
    /// `<Provider>`: the docs say "the value of the iss field"; real STS answers for OIDC show the
    /// provider ARN, `arn:aws:iam::<account>:oidc-provider/<host/path>`, which is what this fake returns.
    pub provider: String,
    /// Session tags from the token's `https://aws.amazon.com/tags`, `(key, value)` in token order.
    pub session_tags: Vec<(String, String)>,
    pub transitive_tag_keys: Vec<String>,
    /// From the token's `https://aws.amazon.com/source_identity`.
    pub source_identity: Option<String>,
    /// The inline session policy the credentials are limited by, parsed.
    pub session_policy: Option<Value>,
}

#[derive(Default)]
struct State {
    requests: Vec<StsRequest>,
    issued: Vec<IssuedCredentials>,
    script: VecDeque<StsStep>,
    /// issuer -> (fetched at, keys).
    jwks_cache: HashMap<String, (Instant, Vec<Value>)>,
    idp_fetches: usize,
}

/// Account set-up that tests change while the fake runs (an admin adding or deleting the IAM OIDC
/// provider, editing its client id list or the roles' trust policies), and where issuers are
/// reached (`curl --resolve` style: an issuer URL prefix fetched from another base URL).
struct Live {
    providers: Vec<String>,
    audiences: Vec<String>,
    roles: Vec<TrustedRole>,
    routes: Vec<(String, String)>,
}

struct Inner {
    options: FakeStsOptions,
    live: Mutex<Live>,
    role_ids: Mutex<HashMap<String, String>>,
    state: Mutex<State>,
    http: reqwest::Client,
}

pub struct FakeSts {
    url: String,
    inner: Arc<Inner>,
    _task: ServerTask,
}

impl FakeSts {
    pub async fn start(options: FakeStsOptions) -> FakeSts {
        let live = Mutex::new(Live {
            providers: options.providers.clone(),
            audiences: options.audiences.clone(),
            roles: options.roles.clone(),
            routes: Vec::new(),
        });
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let inner = Arc::new(Inner { options, live, role_ids: Mutex::default(), state: Mutex::default(), http });
        let handler_inner = inner.clone();
        let router = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let inner = handler_inner.clone();
            async move { handle(&inner, method, uri, headers, body).await }
        });
        let (url, task) = serve(router).await;
        FakeSts { url, inner, _task: task }
    }

    /// Endpoint URL for the SDK's `endpoint_url`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn calls(&self) -> usize {
        self.inner.state.lock().unwrap().requests.len()
    }

    pub fn requests(&self) -> Vec<StsRequest> {
        self.inner.state.lock().unwrap().requests.clone()
    }

    pub fn issued(&self) -> Vec<IssuedCredentials> {
        self.inner.state.lock().unwrap().issued.clone()
    }

    /// Number of HTTP fetches made to identity providers (discovery + JWKS).
    pub fn idp_fetches(&self) -> usize {
        self.inner.state.lock().unwrap().idp_fetches
    }

    /// Replace the queue of scripted behaviours.
    pub fn set_script(&self, steps: Vec<StsStep>) {
        self.inner.state.lock().unwrap().script = steps.into();
    }

    /// Replace the registered IAM OIDC providers (`host[:port]/path`, scheme optional): lets a test
    /// register the provider of a gateway started after the fake, or delete it.
    pub fn set_providers(&self, providers: Vec<String>) {
        self.inner.live.lock().unwrap().providers = providers;
    }

    /// Replace the providers' client id list (the accepted `aud` values).
    pub fn set_audiences(&self, audiences: Vec<String>) {
        self.inner.live.lock().unwrap().audiences = audiences;
    }

    /// Replace the account's roles and their trust policies.
    pub fn set_roles(&self, roles: Vec<TrustedRole>) {
        self.inner.live.lock().unwrap().roles = roles;
    }

    /// Fetch the discovery document and JWKS of issuer `issuer_url` (say `https://issuer.example.com`)
    /// from `base_url` instead (say the gateway on `http://127.0.0.1:port`), keeping the path.
    pub fn route_issuer(&self, issuer_url: &str, base_url: &str) {
        self.inner.live.lock().unwrap().routes.push((issuer_url.to_owned(), base_url.to_owned()));
    }

    pub fn credentials(&self) -> CredentialStore {
        self.inner.options.credentials.clone()
    }
}

struct StsError {
    code: StsErrorCode,
    message: String,
}

fn err(code: StsErrorCode, message: impl Into<String>) -> StsError {
    StsError { code, message: message.into() }
}

fn error_response(e: &StsError) -> Response {
    let rid = request_id();
    let kind = if e.code.status() >= 500 { "Receiver" } else { "Sender" };
    let body = format!(
        "<ErrorResponse xmlns=\"{STS_NS}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    \
         <Message>{}</Message>\n  </Error>\n  <RequestId>{rid}</RequestId>\n</ErrorResponse>\n",
        e.code.code(),
        xml_escape(&e.message)
    );
    xml_response(StatusCode::from_u16(e.code.status()).unwrap(), &rid, body)
}

fn xml_response(status: StatusCode, rid: &str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/xml"), (header::HeaderName::from_static("x-amzn-requestid"), rid)], body)
        .into_response()
}

async fn handle(inner: &Inner, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let form = if method == Method::POST && uri.path() == "/" {
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        std::str::from_utf8(&body).ok().filter(|_| is_form).and_then(parse_form)
    } else if method == Method::GET {
        uri.query().and_then(parse_form)
    } else {
        None
    };
    let Some(form) = form else {
        return error_response(&err(
            StsErrorCode::ValidationError,
            "Unsupported request: expected a query-protocol call",
        ));
    };
    let mut record = StsRequest {
        action: form.get("Action").cloned(),
        version: form.get("Version").cloned(),
        role_arn: form.get("RoleArn").cloned(),
        role_session_name: form.get("RoleSessionName").cloned(),
        duration_seconds: form.get("DurationSeconds").cloned(),
        web_identity_token: form.get("WebIdentityToken").cloned(),
        policy: form.get("Policy").cloned(),
        ..Default::default()
    };
    let step = inner.state.lock().unwrap().script.pop_front().unwrap_or(StsStep::Normal);
    let outcome = match step {
        StsStep::Fail(code) => Err(err(code, code.default_message())),
        StsStep::FailWith(code, message) => Err(err(code, message)),
        StsStep::Delay(d) => {
            tokio::time::sleep(d).await;
            assume(inner, &form).await
        }
        StsStep::Normal => assume(inner, &form).await,
    };
    let response = match outcome {
        Ok(issued) => {
            record.access_key_id = Some(issued.access_key_id.clone());
            let response = success_response(&issued);
            inner.options.credentials.add(StoredCredential {
                access_key_id: issued.access_key_id.clone(),
                secret_access_key: issued.secret_access_key.clone(),
                session_token: Some(issued.session_token.clone()),
                expires_at: Some(issued.expiration),
            });
            inner.state.lock().unwrap().issued.push(issued);
            response
        }
        Err(e) => {
            record.error_code = Some(e.code.code().into());
            error_response(&e)
        }
    };
    inner.state.lock().unwrap().requests.push(record);
    response
}

fn success_response(c: &IssuedCredentials) -> Response {
    let rid = request_id();
    let body = format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"{STS_NS}\">
  <AssumeRoleWithWebIdentityResult>
    <Audience>{aud}</Audience>
    <AssumedRoleUser>
      <AssumedRoleId>{arid}</AssumedRoleId>
      <Arn>{arn}</Arn>
    </AssumedRoleUser>
    <Provider>{provider}</Provider>{source_identity}
    <Credentials>
      <AccessKeyId>{akid}</AccessKeyId>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken>{token}</SessionToken>
      <Expiration>{exp}</Expiration>
    </Credentials>
    <SubjectFromWebIdentityToken>{sub}</SubjectFromWebIdentityToken>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>{rid}</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
",
        aud = xml_escape(&c.audience),
        arid = xml_escape(&c.assumed_role_id),
        arn = xml_escape(&c.assumed_role_arn),
        provider = xml_escape(&c.provider),
        akid = xml_escape(&c.access_key_id),
        secret = xml_escape(&c.secret_access_key),
        token = xml_escape(&c.session_token),
        exp = iso8601(c.expiration),
        sub = xml_escape(&c.subject),
        source_identity = c
            .source_identity
            .as_ref()
            .map(|s| format!("\n    <SourceIdentity>{}</SourceIdentity>", xml_escape(s)))
            .unwrap_or_default(),
    );
    xml_response(StatusCode::OK, &rid, body)
}

fn validation(value: Option<&str>, field: &str, constraint: &str) -> StsError {
    let value = value.map_or("null".to_string(), |v| format!("'{v}'"));
    err(
        StsErrorCode::ValidationError,
        format!("1 validation error detected: Value {value} at '{field}' failed to satisfy constraint: {constraint}"),
    )
}

fn required<'a>(form: &'a HashMap<String, String>, name: &str, field: &str) -> Result<&'a str, StsError> {
    form.get(name).map(String::as_str).ok_or_else(|| validation(None, field, "Member must not be null"))
}

fn check_len(value: &str, field: &str, min: usize, max: usize) -> Result<(), StsError> {
    let n = value.chars().count();
    if n < min {
        return Err(validation(Some(value), field, &format!("Member must have length greater than or equal to {min}")));
    }
    if n > max {
        return Err(validation(Some(value), field, &format!("Member must have length less than or equal to {max}")));
    }
    Ok(())
}

/// `arn:<partition>:iam::<12 digits>:role/<path/>name` -> (account, role name).
fn parse_role_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let path_and_name = resource.strip_prefix("role/")?;
    let name = path_and_name.rsplit('/').next()?;
    let ok = partition.starts_with("aws")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    ok.then_some((account, name))
}

/// IAM `StringLike`: `*` matches any run of characters (including `/`), `?` exactly one; case-sensitive.
pub fn iam_string_like(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi, mut star, mut mark) = (0, 0, None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn strip_scheme(url: &str) -> &str {
    url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).unwrap_or(url)
}

fn invalid_token(message: &str) -> StsError {
    err(StsErrorCode::InvalidIdentityToken, message)
}

const NO_KEY: &str = "Couldn't retrieve verification key from your identity provider,  please reference \
                      AssumeRoleWithWebIdentity documentation for requirements";

async fn assume(inner: &Inner, form: &HashMap<String, String>) -> Result<IssuedCredentials, StsError> {
    let opts = &inner.options;
    let action = form.get("Action").map(String::as_str).unwrap_or_default();
    let version = form.get("Version").map(String::as_str).unwrap_or_default();
    if action != "AssumeRoleWithWebIdentity" || version != "2011-06-15" {
        return Err(err(
            StsErrorCode::InvalidAction,
            format!("Could not find operation {action} for version {version}"),
        ));
    }
    // Parameter validation comes first, as in AWS.
    let role_arn = required(form, "RoleArn", "roleArn")?;
    check_len(role_arn, "roleArn", 20, 2048)?;
    let session = required(form, "RoleSessionName", "roleSessionName")?;
    check_len(session, "roleSessionName", 2, 64)?;
    if !session.chars().all(|c| c.is_alphanumeric() || "_+=,.@-".contains(c)) {
        return Err(validation(
            Some(session),
            "roleSessionName",
            "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
        ));
    }
    let token = required(form, "WebIdentityToken", "webIdentityToken")?;
    check_len(token, "webIdentityToken", 4, 20000)?;
    let duration: u32 = match form.get("DurationSeconds") {
        None => 3600,
        Some(d) => {
            let n: i64 = d.parse().map_err(|_| validation(Some(d), "durationSeconds", "Member must be an integer"))?;
            if n < 900 {
                return Err(validation(
                    Some(d),
                    "durationSeconds",
                    "Member must have value greater than or equal to 900",
                ));
            }
            if n > 43200 {
                return Err(validation(
                    Some(d),
                    "durationSeconds",
                    "Member must have value less than or equal to 43200",
                ));
            }
            n as u32
        }
    };
    let session_policy = match form.get("Policy") {
        None => None,
        Some(policy) => {
            check_len(policy, "policy", 1, 2048)?;
            let parsed: Value = serde_json::from_str(policy).map_err(|_| {
                err(StsErrorCode::MalformedPolicyDocument, "The policy is not in the valid JSON format.")
            })?;
            if parsed["Version"] != "2012-10-17" || !(parsed["Statement"].is_array() || parsed["Statement"].is_object())
            {
                return Err(err(StsErrorCode::MalformedPolicyDocument, "Syntax errors in policy."));
            }
            Some(parsed)
        }
    };
    let (account, role_name) =
        parse_role_arn(role_arn).ok_or_else(|| err(StsErrorCode::ValidationError, "Request ARN is invalid"))?;

    let claims = verify_token(inner, token).await?;
    let iss = claims["iss"].as_str().unwrap_or_default();
    let provider = strip_scheme(iss).to_string();
    let sub = claims["sub"].as_str().ok_or_else(|| invalid_token("Missing required claim: sub"))?.to_string();
    let auds: Vec<&str> = match &claims["aud"] {
        Value::String(a) => vec![a.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let audiences = inner.live.lock().unwrap().audiences.clone();
    let Some(aud) = auds.iter().find(|a| audiences.iter().any(|c| c == *a)) else {
        return Err(invalid_token("Incorrect token audience"));
    };

    let (session_tags, transitive_tag_keys) = token_session_tags(&claims)?;
    let source_identity = match claims.get(SOURCE_IDENTITY_CLAIM) {
        None => None,
        Some(Value::String(value))
            if (2..=64).contains(&value.chars().count())
                && value.chars().all(|c| c.is_alphanumeric() || "_+=,.@-".contains(c)) =>
        {
            Some(value.clone())
        }
        Some(_) => return Err(invalid_token("The source identity in the web identity token is invalid")),
    };

    // The trust policy, evaluated for every action the request needs.
    let provider_arn = format!("arn:aws:iam::{account}:oidc-provider/{provider}");
    let mut actions = vec!["sts:AssumeRoleWithWebIdentity"];
    if !session_tags.is_empty() {
        actions.push("sts:TagSession");
    }
    if source_identity.is_some() {
        actions.push("sts:SetSourceIdentity");
    }
    let mut context: HashMap<String, Vec<String>> = HashMap::new();
    context.insert(format!("{provider}:sub").to_lowercase(), vec![sub.clone()]);
    context.insert(format!("{provider}:aud").to_lowercase(), vec![aud.to_string()]);
    for (key, value) in &session_tags {
        context.insert(format!("aws:requesttag/{}", key.to_lowercase()), vec![value.clone()]);
    }
    if !session_tags.is_empty() {
        context.insert("aws:tagkeys".into(), session_tags.iter().map(|(k, _)| k.clone()).collect());
    }
    if let Some(source) = &source_identity {
        context.insert("sts:sourceidentity".into(), vec![source.clone()]);
    }
    let denied = || err(StsErrorCode::AccessDenied, "Not authorized to perform sts:AssumeRoleWithWebIdentity");
    let role = inner.live.lock().unwrap().roles.iter().find(|r| r.arn == role_arn).cloned().ok_or_else(denied)?;
    if !iam_allows(&role.document(account, &provider_arn), &provider_arn, &actions, &context) {
        return Err(denied());
    }
    if duration > role.max_session_duration {
        return Err(err(
            StsErrorCode::ValidationError,
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        ));
    }

    let lifetime = opts.credential_lifetime.unwrap_or(Duration::from_secs(duration.into()));
    let role_id = inner
        .role_ids
        .lock()
        .unwrap()
        .entry(role_arn.to_owned())
        .or_insert_with(|| format!("AROA{}", random_string(UPPER_DIGITS, 17)))
        .clone();
    Ok(IssuedCredentials {
        access_key_id: format!("ASIA{}", random_string(UPPER_DIGITS, 16)),
        secret_access_key: random_string(BASE64ISH, 40),
        session_token: format!("IQoJb3JpZ2luX2VjE{}", random_string(BASE64ISH, 600)),
        expiration: SystemTime::now() + lifetime,
        role_arn: role_arn.into(),
        role_session_name: session.into(),
        subject: sub,
        audience: aud.to_string(),
        assumed_role_arn: format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session}"),
        assumed_role_id: format!("{role_id}:{session}"),
        provider: provider_arn,
        session_tags,
        transitive_tag_keys,
        source_identity,
        session_policy,
    })
}

const TAGS_CLAIM: &str = "https://aws.amazon.com/tags";
/// `(key, value)` session tags in token order.
type SessionTags = Vec<(String, String)>;
const SOURCE_IDENTITY_CLAIM: &str = "https://aws.amazon.com/source_identity";

/// Session tags from `https://aws.amazon.com/tags` (`principal_tags`: key -> [value],
/// `transitive_tag_keys`), within STS's limits: at most 50 tags, keys of 1-128 and values of up to
/// 256 characters, keys unique ignoring case, transitive keys among the tags.
fn token_session_tags(claims: &Value) -> Result<(SessionTags, Vec<String>), StsError> {
    let bad = |why: &str| invalid_token(&format!("The session tags in the web identity token are invalid: {why}"));
    let Some(claim) = claims.get(TAGS_CLAIM) else { return Ok((Vec::new(), Vec::new())) };
    let object = claim.as_object().ok_or_else(|| bad("not an object"))?;
    let principal_tags = match object.get("principal_tags") {
        None => serde_json::Map::new(),
        Some(Value::Object(tags)) => tags.clone(),
        Some(_) => return Err(bad("principal_tags is not an object")),
    };
    if principal_tags.len() > 50 {
        return Err(bad("more than 50 tags"));
    }
    let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
    let mut tags = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (key, value) in principal_tags {
        let value = match value {
            Value::String(v) => v,
            Value::Array(values) if values.len() == 1 && values[0].is_string() => {
                values[0].as_str().unwrap_or_default().to_owned()
            }
            _ => return Err(bad("a tag value is not a single string")),
        };
        if !(1..=128).contains(&key.chars().count()) || value.chars().count() > 256 {
            return Err(bad("a tag key or value is too long"));
        }
        if !key.chars().all(allowed) || !value.chars().all(allowed) {
            return Err(bad("a tag key or value has a character tags cannot hold"));
        }
        if !seen.insert(key.to_lowercase()) {
            return Err(bad("two tag keys differ only in case"));
        }
        tags.push((key, value));
    }
    let transitive = match object.get("transitive_tag_keys") {
        None => Vec::new(),
        Some(Value::Array(keys)) => keys
            .iter()
            .map(|k| k.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("transitive_tag_keys holds a non-string"))?,
        Some(_) => return Err(bad("transitive_tag_keys is not a list")),
    };
    if transitive.iter().any(|k| !seen.contains(&k.to_lowercase())) {
        return Err(bad("a transitive tag key names no tag"));
    }
    Ok((tags, transitive))
}

/// String values of a policy element: a string, a boolean, or a list of them.
fn policy_strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Bool(b) => vec![b.to_string()],
        Value::Array(items) => items.iter().flat_map(policy_strings).collect(),
        _ => Vec::new(),
    }
}

/// IAM's decision for `principal_arn` doing every one of `actions` under `policy`, with the request
/// `context` (condition keys lower-cased, each with its values): every action needs an `Allow`
/// statement that matches it, its principal and all its conditions, and no matching `Deny`.
/// Anything this evaluator does not understand (NotPrincipal, NotAction, an unknown operator)
/// matches nothing, so it errs towards refusing.
pub fn iam_allows(
    policy: &Value,
    principal_arn: &str,
    actions: &[&str],
    context: &HashMap<String, Vec<String>>,
) -> bool {
    let statements: Vec<&Value> = match &policy["Statement"] {
        Value::Array(items) => items.iter().collect(),
        single @ Value::Object(_) => vec![single],
        _ => return false,
    };
    let matches = |statement: &Value, action: &str| -> bool {
        let principal_ok = match &statement["Principal"] {
            Value::String(any) => any == "*",
            Value::Object(map) => {
                map.get("Federated").is_some_and(|f| policy_strings(f).iter().any(|p| p == principal_arn))
            }
            _ => false,
        };
        let action_ok = policy_strings(&statement["Action"])
            .iter()
            .any(|pattern| iam_string_like(&pattern.to_lowercase(), &action.to_lowercase()));
        let conditions_ok = match &statement["Condition"] {
            Value::Null => true,
            Value::Object(operators) => operators.iter().all(|(operator, keys)| {
                keys.as_object().is_some_and(|keys| {
                    keys.iter().all(|(key, expected)| {
                        condition_holds(operator, context.get(&key.to_lowercase()), &policy_strings(expected))
                    })
                })
            }),
            _ => false,
        };
        principal_ok && action_ok && conditions_ok
    };
    actions.iter().all(|action| {
        let allowed = statements.iter().any(|s| s["Effect"] == "Allow" && matches(s, action));
        let denied = statements.iter().any(|s| s["Effect"] == "Deny" && matches(s, action));
        allowed && !denied
    })
}

/// IAM's decision for an identity-based policy (a role's permissions policy, or a session policy):
/// `action` on `resource` with the request `context` (condition keys lower-cased). An `Allow`
/// statement must match the action, the resource and all its conditions, and no `Deny` may.
/// Resources match as [`iam_string_like`] over the whole ARN, so a `*` may run past a `:`: that
/// allows a little more than IAM does, so a test that finds an invocation refused here is one IAM
/// refuses too. `NotAction`, `NotResource` and unknown operators match nothing.
pub fn iam_permits(policy: &Value, action: &str, resource: &str, context: &HashMap<String, Vec<String>>) -> bool {
    let statements: Vec<&Value> = match &policy["Statement"] {
        Value::Array(items) => items.iter().collect(),
        single @ Value::Object(_) => vec![single],
        _ => return false,
    };
    let matches = |statement: &Value| -> bool {
        let action_ok = policy_strings(&statement["Action"])
            .iter()
            .any(|pattern| iam_string_like(&pattern.to_lowercase(), &action.to_lowercase()));
        let resource_ok =
            policy_strings(&statement["Resource"]).iter().any(|pattern| iam_string_like(pattern, resource));
        let conditions_ok = match &statement["Condition"] {
            Value::Null => true,
            Value::Object(operators) => operators.iter().all(|(operator, keys)| {
                keys.as_object().is_some_and(|keys| {
                    keys.iter().all(|(key, expected)| {
                        condition_holds(operator, context.get(&key.to_lowercase()), &policy_strings(expected))
                    })
                })
            }),
            _ => false,
        };
        action_ok && resource_ok && conditions_ok
    };
    let allowed = statements.iter().any(|s| s["Effect"] == "Allow" && matches(s));
    let denied = statements.iter().any(|s| s["Effect"] == "Deny" && matches(s));
    allowed && !denied
}

/// One Bedrock model invocation, as Bedrock authorizes it.
#[derive(Debug, Clone, Copy)]
pub enum BedrockCall<'a> {
    /// Foundation model `model` called directly in `region`.
    Model { region: &'a str, model: &'a str },
    /// System-defined inference profile `id` (`us.…`, `global.…`) called in `region` from
    /// `account`, served by foundation model `model` in `destination` (a global profile is
    /// authorized in its source region and region-less, whatever the destination).
    Profile { region: &'a str, account: &'a str, id: &'a str, model: &'a str, destination: &'a str },
    /// Application inference profile `arn`, served by `model` in `destination`.
    Application { arn: &'a str, model: &'a str, destination: &'a str },
}

/// The IAM checks Bedrock makes for `call`, as (resource, request context) pairs; every one must
/// pass. Sources: AWS Bedrock user guide, "Prerequisites for inference profiles" (the profile, and
/// the foundation model in each region the profile routes to, with `bedrock:InferenceProfileArn`
/// set to the profile) and "Global cross-Region inference" (the foundation model in the source
/// region and region-less, the latter with `aws:RequestedRegion` = `unspecified`).
pub fn bedrock_checks(call: BedrockCall<'_>) -> Vec<(String, HashMap<String, Vec<String>>)> {
    let context = |region: &str, profile: Option<&str>| {
        let mut context = HashMap::from([("aws:requestedregion".to_owned(), vec![region.to_owned()])]);
        if let Some(profile) = profile {
            context.insert("bedrock:inferenceprofilearn".to_owned(), vec![profile.to_owned()]);
        }
        context
    };
    let foundation = |region: &str, model: &str| format!("arn:aws:bedrock:{region}::foundation-model/{model}");
    match call {
        BedrockCall::Model { region, model } => vec![(foundation(region, model), context(region, None))],
        BedrockCall::Profile { region, account, id, model, destination } => {
            let profile = format!("arn:aws:bedrock:{region}:{account}:inference-profile/{id}");
            let mut checks = vec![(profile.clone(), context(region, None))];
            if id.starts_with("global.") {
                checks.push((foundation(region, model), context(region, Some(&profile))));
                checks.push((foundation("", model), context("unspecified", Some(&profile))));
            } else {
                checks.push((foundation(destination, model), context(destination, Some(&profile))));
            }
            checks
        }
        BedrockCall::Application { arn, model, destination } => {
            let region = arn.split(':').nth(3).unwrap_or_default();
            vec![
                (arn.to_owned(), context(region, None)),
                (foundation(destination, model), context(destination, Some(arn))),
            ]
        }
    }
}

/// Whether credentials limited by `policy` may make `call`, streamed or not.
pub fn bedrock_allows(policy: &Value, call: BedrockCall<'_>) -> bool {
    ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"].iter().all(|action| {
        bedrock_checks(call).iter().all(|(resource, context)| iam_permits(policy, action, resource, context))
    })
}

/// One condition operator on one key: `actual` holds the request's values (`None`: key absent).
fn condition_holds(operator: &str, actual: Option<&Vec<String>>, expected: &[String]) -> bool {
    let (set, operator) = match operator.split_once(':') {
        Some((set @ ("ForAnyValue" | "ForAllValues"), rest)) => (Some(set), rest),
        Some(_) => return false,
        None => (None, operator),
    };
    let (operator, if_exists) = match operator.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (operator, false),
    };
    if operator == "Null" {
        return match expected {
            [value] if value == "true" => actual.is_none(),
            [value] if value == "false" => actual.is_some(),
            _ => false,
        };
    }
    let one: fn(&str, &str) -> bool = match operator {
        "StringEquals" | "StringNotEquals" => |expected, actual| expected == actual,
        "StringEqualsIgnoreCase" | "StringNotEqualsIgnoreCase" => |e, a| e.to_lowercase() == a.to_lowercase(),
        "StringLike" | "StringNotLike" => iam_string_like,
        _ => return false,
    };
    let negated = operator.contains("Not");
    let Some(actual) = actual else {
        // An absent key: negated operators, IfExists and ForAllValues hold; the rest do not.
        return negated || if_exists || set == Some("ForAllValues");
    };
    let value_matches = |value: &String| expected.iter().any(|e| one(e, value));
    let positive = match set {
        Some("ForAllValues") => actual.iter().all(value_matches),
        _ => actual.iter().any(value_matches),
    };
    positive != negated
}

fn b64url_json(part: &str) -> Option<Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

/// Verify signature and time claims; returns the payload.
async fn verify_token(inner: &Inner, token: &str) -> Result<Value, StsError> {
    let opts = &inner.options;
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts[..] else {
        return Err(invalid_token("The web identity token is not a valid JWT"));
    };
    let header = b64url_json(h).ok_or_else(|| invalid_token("The web identity token is not a valid JWT"))?;
    let claims = b64url_json(p).ok_or_else(|| invalid_token("The web identity token is not a valid JWT"))?;
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| invalid_token("The web identity token is not a valid JWT"))?;
    if header["alg"] != "RS256" {
        return Err(invalid_token("Unsupported token signing algorithm"));
    }
    let kid = header["kid"].as_str().ok_or_else(|| invalid_token("Missing kid in the web identity token header"))?;
    let iss = claims["iss"].as_str().ok_or_else(|| invalid_token("Missing required claim: iss"))?;

    let provider = strip_scheme(iss);
    let registered = inner.live.lock().unwrap().providers.iter().any(|p| strip_scheme(p) == provider);
    if !registered {
        return Err(invalid_token(&format!("No OpenIDConnect provider found in your account for {iss}")));
    }
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|l| iss.strip_prefix(l).is_some_and(|r| r.is_empty() || r.starts_with([':', '/'])));
    let scheme_ok = iss.starts_with("https://") || (opts.allow_http_loopback && loopback);
    if !scheme_ok {
        return Err(invalid_token("The issuer of the web identity token must use https"));
    }

    let mut keys = signing_keys(inner, iss, false).await?;
    let mut jwk = find_key(&keys, kid);
    if jwk.is_none() {
        keys = signing_keys(inner, iss, true).await?;
        jwk = find_key(&keys, kid);
    }
    let jwk = jwk.ok_or_else(|| invalid_token(NO_KEY))?;
    let decode = |f: &str| jwk[f].as_str().and_then(|v| URL_SAFE_NO_PAD.decode(v).ok());
    let (Some(n), Some(e)) = (decode("n"), decode("e")) else {
        return Err(invalid_token(NO_KEY));
    };
    if n.first() == Some(&0) || e.first() == Some(&0) {
        return Err(invalid_token(NO_KEY));
    }
    let signed = &token[..h.len() + 1 + p.len()];
    signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &sig)
        .map_err(|_| invalid_token("The web identity token signature is invalid"))?;

    let now = unix_now();
    let skew = opts.clock_skew.as_secs() as i64;
    let exp = claims["exp"].as_i64().ok_or_else(|| invalid_token("Missing required claim: exp"))?;
    if exp <= now {
        return Err(err(StsErrorCode::ExpiredToken, "Token expired"));
    }
    if claims["iat"].as_i64().is_some_and(|iat| iat > now + skew) {
        return Err(invalid_token("Token issued in the future (iat)"));
    }
    if claims["nbf"].as_i64().is_some_and(|nbf| nbf > now + skew) {
        return Err(invalid_token("Token is not yet valid (nbf)"));
    }
    Ok(claims)
}

fn find_key<'a>(keys: &'a [Value], kid: &str) -> Option<&'a Value> {
    keys.iter().find(|k| k["kid"] == kid && k["kty"] == "RSA" && k.get("use").is_none_or(|u| u == "sig"))
}

/// Discovery then JWKS, through a per-issuer cache.
async fn signing_keys(inner: &Inner, iss: &str, refresh: bool) -> Result<Vec<Value>, StsError> {
    if !refresh {
        let state = inner.state.lock().unwrap();
        if let Some((at, keys)) = state.jwks_cache.get(iss)
            && at.elapsed() < inner.options.jwks_cache_ttl
        {
            return Ok(keys.clone());
        }
    }
    // An OIDC provider that cannot be fetched is reported as InvalidIdentityToken "Couldn't retrieve
    // verification key ..." by AWS (IDPCommunicationError is left to `StsStep::Fail`).
    let unreachable = || invalid_token(NO_KEY);
    let discovery_url = format!("{}/.well-known/openid-configuration", iss.trim_end_matches('/'));
    let discovery = fetch_json(inner, &discovery_url).await.ok_or_else(unreachable)?;
    if discovery["issuer"].as_str() != Some(iss) {
        return Err(invalid_token("Issuer in the discovery document does not match the token issuer"));
    }
    let jwks_uri = discovery["jwks_uri"].as_str().ok_or_else(|| invalid_token(NO_KEY))?;
    let jwks = fetch_json(inner, jwks_uri).await.ok_or_else(unreachable)?;
    let keys = jwks["keys"].as_array().cloned().ok_or_else(|| invalid_token(NO_KEY))?;
    inner.state.lock().unwrap().jwks_cache.insert(iss.into(), (Instant::now(), keys.clone()));
    Ok(keys)
}

async fn fetch_json(inner: &Inner, url: &str) -> Option<Value> {
    inner.state.lock().unwrap().idp_fetches += 1;
    let routed = inner.live.lock().unwrap().routes.iter().find_map(|(from, to)| {
        url.strip_prefix(from.as_str())
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .map(|rest| format!("{to}{rest}"))
    });
    let url = routed.as_deref().unwrap_or(url);
    if let (Some(pem), true) = (&inner.options.tls_root_pem, url.starts_with("https://")) {
        let (status, body) = super::https_get(url, pem).await.ok()?;
        return if (200..300).contains(&status) { serde_json::from_slice(&body).ok() } else { None };
    }
    let response = inner.http.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}
