//! The `byollm` command line: one file per command, each parsing its arguments and calling the
//! library ([`crate::app`] for the servers, [`crate::ops`] for the operator tools). [`main`]
//! parses, sets up logging and runs one command.

mod aws_setup;
mod callers;
mod doctor;
mod keys;
mod local;
mod models;
mod serve;
mod token;
mod usage;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(
    name = "byollm",
    version,
    about = "Bring-your-own-LLM gateway: OIDC issuer, AWS credential broker, model APIs in front of Claude on Bedrock",
    long_about = "byollm lets an agent platform run inference on its customers' own AWS Bedrock accounts with no \
long-lived keys. It signs short-lived OIDC tokens that AWS STS trusts, exchanges them for temporary role \
credentials, and serves Claude on Bedrock through an OpenAI-compatible chat API, the Anthropic Messages API and \
Bedrock's own routes; a routing policy can send a model to the Anthropic API or an OpenAI-compatible endpoint \
instead.",
    after_help = "Quick start (dev issuer on 127.0.0.1:8080, key generated on first run):\n  \
byollm serve\n\nProduction:\n  byollm keys generate --dir /etc/byollm/jwks\n  byollm serve --config /etc/byollm/byollm.toml\n\n\
Configuration: a TOML file (--config or BYOLLM_CONFIG); any field can be overridden with \
BYOLLM_<SECTION>__<FIELD>, e.g. BYOLLM_ISSUER__URL=https://issuer.example.com. Log filter: BYOLLM_LOG (default: info for byollm, warn for the AWS SDK)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub struct ConfigArgs {
    /// Path to byollm.toml. Without it, the built-in defaults (for serve: a dev issuer on loopback).
    #[arg(long, short, env = "BYOLLM_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: discovery + JWKS, tokens and credentials for runs, the model APIs, health and metrics.
    #[command(
        after_help = "With no --config, serves a dev issuer at http://127.0.0.1:8080 and creates jwks/ if needed.\n\
Internal listener (server.listen): /v1/*, /model/*, /inference-profiles, /healthz, /livez, /metrics, /.well-known/*.\n\
Public listener (server.public_listen, optional): only /.well-known/openid-configuration and /.well-known/jwks.json.\n\
Send SIGHUP to reload the key set, the TLS files and the routing policy at once (the key set and TLS files are also \
re-read every keys.reload_interval_secs, the routing policy whenever the config file changes)."
    )]
    Serve(serve::ServeArgs),
    /// Serve the model APIs on your laptop, signed with your own AWS session (aws login, SSO, profiles).
    #[command(
        after_help = "Examples:\n  aws login && byollm local\n  byollm local --profile work --region eu-west-1\n\n\
Listens on 127.0.0.1:8080 (--port, or --listen for another address; server.listen is ignored). At start it makes \
a session key, prints it and writes it to a file only you can read ($XDG_RUNTIME_DIR/byollm/local-<port>.key, \
else ~/.byollm/local-<port>.key); every request must send it (Authorization: Bearer, or x-api-key):\n  \
export OPENAI_API_KEY=$(cat ~/.byollm/local-8080.key) OPENAI_BASE_URL=http://127.0.0.1:8080/v1\n\n\
Serves the chat API (/v1/chat/completions), the Anthropic Messages API (/v1/messages) and Bedrock's own routes \
(/model/*). Requests go from the client to byollm on this machine, which signs them with your session and sends \
them to Bedrock in your account (or to the Anthropic API or an endpoint a [routing] policy names, with that \
route's key). Credentials are re-read every local.refresh_interval_secs (default 15 minutes) and before they \
expire; when the session lapses, requests fail with the command that renews it."
    )]
    Local(local::LocalArgs),
    /// Check credentials without printing any secret: a local profile, or a team's web-identity set-up.
    #[command(after_help = "Examples:\n  byollm doctor --profile work\n  \
byollm doctor --config byollm.toml --team acme --actor service_account --principal ci-bot [--agent reviewer]\n\n\
For a team it mints a token and calls STS AssumeRoleWithWebIdentity for the team's (or agent's) role, so AWS \
itself says whether the OIDC provider, trust policy and role are right. With --model it then makes one minimal \
real call (max_tokens 1) to that model and explains the usual first-use failures: model access not enabled, AWS \
Marketplace subscription missing, IAM or organization policy, a profile Bedrock does not offer from this region. \
Exit code 0 when credentials were obtained (and the model answered).")]
    Doctor(doctor::DoctorArgs),
    /// Print the model catalog (what byollm knows about each Claude model on Bedrock) and the
    /// models this config serves, with the catalog entry and overrides of each.
    #[command(after_help = "Examples:\n  byollm models\n  byollm models --config byollm.toml\n\n\
The catalog is compiled in (src/models/catalog.toml). A configured id that matches no entry gets conservative \
rules; name its entry with family = \"<FAMILY>\" in its [models] section, or set the rules themselves.")]
    Models(models::ModelsArgs),
    /// Manage the signing key set (active, next, retired).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Mint tokens from the command line, for operators.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Print a team's IAM set-up (trust policy, permissions policy, Terraform or CloudFormation inputs).
    #[command(
        name = "aws-setup",
        after_help = "Derived from the running config (issuer.url, issuer.audience, the team's region, session_tags and the models its [routing] allows), \
so the issuer host, sub pattern and session-tag conditions always match what the gateway signs. One role per \
team and one per named agent (--agent): with session_tags, IAM itself refuses another agent's tokens.\n\nExamples:\n  \
byollm aws-setup --config byollm.toml --team acme --account-id 123456789012\n  \
byollm aws-setup --config byollm.toml --team acme --agent reviewer --account-id 123456789012\n  \
byollm aws-setup --config byollm.toml --team acme --format tfvars > terraform.tfvars\n  \
byollm aws-setup --config byollm.toml --team acme --format cfn-params > params.json"
    )]
    AwsSetup(aws_setup::AwsSetupArgs),
    /// Create and hash caller API keys.
    #[command(subcommand)]
    Callers(callers::CallersCommand),
    /// Print a team's usage today and its budgets' room, from the limits store the replicas share.
    #[command(after_help = "Examples:\n  byollm usage --config byollm.toml --team acme\n  \
byollm usage --config byollm.toml --team acme --json\n\n\
Reads the counters `byollm serve` keeps in Redis ([limits] redis_url): today's (UTC) requests, tokens by kind and \
cost_usd per agent and model, and each budget of the team and its agents with its use, remaining room and reset. \
Without redis_url the counters live inside each gateway process: ask it with GET /v1/usage.")]
    Usage(usage::UsageArgs),
}

/// The whole command line: parse, set up logging, run one command; the exit code says how it went
/// (2: the configuration is invalid, 1: anything else failed).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Local(args) => local::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Models(args) => models::run(args),
        Command::Keys(command) => keys::run(command),
        Command::Token(command) => token::run(command),
        Command::AwsSetup(args) => aws_setup::run(args),
        Command::Callers(command) => callers::run(command),
        Command::Usage(args) => usage::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(error)) => {
            eprint!("{error}");
            ExitCode::from(2)
        }
        Err(Failure::Other(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

pub enum Failure {
    Config(crate::config::ConfigError),
    Other(String),
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::Other(error.to_string())
    }
}

/// A multi-threaded runtime for the commands that do I/O.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

const DEFAULT_LOG_FILTER: &str =
    "info,aws_config=warn,aws_smithy_runtime=warn,aws_sdk_sts=warn,aws_sdk_bedrockruntime=warn";

/// Targets whose trace output prints whole requests and responses (the STS body carries the
/// web-identity token, signed requests carry session tokens, event streams carry completions):
/// never more verbose than debug, whatever BYOLLM_LOG asks.
const LOG_CAPS: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_smithy_eventstream",
    "aws_smithy_types",
    "aws_sigv4",
    "aws_runtime",
    "aws_config",
    "aws_sdk_sts",
    "aws_sdk_bedrockruntime",
    "hyper",
    "hyper_util",
    "h2",
];

/// Targets whose warnings quote a failing `credential_process` command's stderr (which may hold
/// anything): errors only. byollm logs the failure itself, without the stderr.
const LOG_QUIET: &[&str] = &["aws_config::profile::credentials", "aws_config::meta::credentials::chain"];

fn init_tracing() {
    use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let wanted = tracing_subscriber::EnvFilter::try_from_env("BYOLLM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let caps = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(LOG_CAPS.iter().map(|target| (*target, LevelFilter::DEBUG)))
        .with_targets(LOG_QUIET.iter().map(|target| (*target, LevelFilter::ERROR)));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false);
    tracing_subscriber::registry().with(tracing_subscriber::Layer::with_filter(layer, wanted.and(caps))).init();
}

/// The environment a configuration is loaded with (its `BYOLLM_*` overrides).
pub fn config_env(dev: bool) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    if dev {
        env.push(("BYOLLM_DEV".into(), "true".into()));
    }
    env
}

pub fn load_config(args: &ConfigArgs, dev: bool) -> Result<Config, Failure> {
    let config = Config::load(args.config.as_deref(), config_env(dev)).map_err(Failure::Config)?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    Ok(config)
}
