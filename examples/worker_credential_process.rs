//! A cloud worker getting a run's AWS credentials from byollm through `credential_process`.
//!
//! The worker's `~/.aws/config` (or `AWS_CONFIG_FILE`) gets one profile whose `credential_process`
//! asks the gateway for the run's credentials; every AWS SDK and the AWS CLI then use that profile
//! as usual and call it again when the credentials near expiry:
//!
//! ```ini
//! [profile byollm-run]
//! credential_process = curl -sSf -H @/run/secrets/byollm-auth-header -H 'Content-Type: application/json' -d '{"actor":"service_account","principal":"ci-bot","run_id":"run-42"}' https://byollm.internal:8080/v1/credentials
//! ```
//!
//! `/run/secrets/byollm-auth-header` holds one line, `Authorization: Bearer <API key>`, so the key
//! stays out of the config file and the process list. Be clear about what crosses the network: the
//! API key goes to the gateway on every call, and the temporary AWS credentials (secret key and
//! session token) come back through it, so use TLS (or a private network) between worker and
//! gateway. The gateway keeps the credentials in memory only; `DELETE /v1/runs/run-42` drops them
//! when the run ends.
//!
//! Run against a running gateway (it writes the header file and profile into a temporary
//! directory and prints only the masked access key id):
//!
//! ```sh
//! BYOLLM_URL=http://127.0.0.1:8080 BYOLLM_API_KEY=byollm_... cargo run --example worker_credential_process
//! ```

use aws_config::profile::ProfileFileCredentialsProvider;
use aws_credential_types::provider::ProvideCredentials;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("BYOLLM_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let key = std::env::var("BYOLLM_API_KEY").map_err(|_| "set BYOLLM_API_KEY to a caller's API key")?;
    let dir = tempfile::tempdir()?;
    let header = dir.path().join("byollm-auth-header");
    std::fs::write(&header, format!("Authorization: Bearer {key}\n"))?;
    let body = r#"{"actor":"service_account","principal":"ci-bot","run_id":"example-run"}"#;
    let line = format!(
        "credential_process = curl -sSf -H @{} -H 'Content-Type: application/json' -d '{body}' {url}/v1/credentials",
        header.display()
    );
    let config = dir.path().join("config");
    std::fs::write(&config, format!("[profile byollm-run]\n{line}\n"))?;
    println!("~/.aws/config:\n[profile byollm-run]\n{line}\n");

    let files = EnvConfigFiles::builder().with_file(EnvConfigFileKind::Config, &config).build();
    let provider = ProfileFileCredentialsProvider::builder().profile_files(files).profile_name("byollm-run").build();
    let credentials = provider.provide_credentials().await?;
    let id = credentials.access_key_id();
    println!("got credentials: access key id ****{}", &id[id.len().saturating_sub(4)..]);
    if let Some(expiry) = credentials.expiry() {
        let left = expiry.duration_since(std::time::SystemTime::now()).unwrap_or_default();
        println!("they expire in {}s; the SDK runs credential_process again before then", left.as_secs());
    }
    Ok(())
}
