//! A cloud worker getting a run's AWS credentials from byollm through the AWS container-credentials
//! protocol, with nothing but two environment variables and a stock AWS SDK.
//!
//! Set, in the worker's environment (the same variables ECS and EKS Pod Identity use):
//!
//! ```sh
//! AWS_CONTAINER_CREDENTIALS_FULL_URI='https://byollm.internal:8080/v1/credentials/container?actor=service_account&principal=ci-bot&run_id=run-42'
//! AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=/run/secrets/byollm-api-key   # or AWS_CONTAINER_AUTHORIZATION_TOKEN=<API key>
//! ```
//!
//! The SDK's default credential chain then fetches the run's credentials from the gateway,
//! sending the API key as the `Authorization` header, and fetches again before they expire (add
//! `agent=<name>` to the query for an agent's own role). What crosses the network: the API key goes
//! to the gateway on every fetch and the temporary AWS credentials come back through it, so use TLS
//! or a private network. The AWS SDKs accept a plain `http://` full URI only for loopback and the
//! ECS/EKS link-local addresses, so a remote gateway must be `https://`.
//!
//! Run against a running gateway; it prints only the masked access key id:
//!
//! ```sh
//! AWS_CONTAINER_CREDENTIALS_FULL_URI='http://127.0.0.1:8080/v1/credentials/container?actor=service_account&principal=ci-bot&run_id=example-run' \
//! AWS_CONTAINER_AUTHORIZATION_TOKEN=byollm_... \
//! cargo run --example worker_container_credentials
//! ```

use aws_credential_types::provider::ProvideCredentials;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_none() {
        return Err(
            "set AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN (see the doc comment)".into(),
        );
    }
    // Exactly what any worker does: the default configuration, nothing byollm-specific.
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let provider = config.credentials_provider().ok_or("no credentials provider")?;
    let credentials = provider.provide_credentials().await?;
    let id = credentials.access_key_id();
    println!("got credentials: access key id ****{}", &id[id.len().saturating_sub(4)..]);
    if let Some(expiry) = credentials.expiry() {
        let left = expiry.duration_since(std::time::SystemTime::now()).unwrap_or_default();
        println!("they expire in {}s; the SDK fetches new ones before then", left.as_secs());
    }
    // From here, e.g. aws_sdk_bedrockruntime::Client::new(&config) signs with these credentials.
    Ok(())
}
