//! The `byollm` command line: parses arguments, loads config, sets up logging, and runs one
//! command. All behaviour lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use byollm::config::Config;
use byollm::issuer::keys::{KeyDir, KeyPolicy, KeyState};
use byollm::issuer::{Issuer, RunClaims, unix_now};
use byollm::routing::policy::ProcessSecrets;
use byollm::routing::reload::{PolicyReloader, ReloadOutcome};
use byollm::routing::{Mode, RoutingPolicy};

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
struct ConfigArgs {
    /// Path to byollm.toml. Without it, the built-in defaults (for serve: a dev issuer on loopback).
    #[arg(long, short, env = "BYOLLM_CONFIG", global = true)]
    config: Option<PathBuf>,
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
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// Development mode: allow an http:// issuer URL on loopback.
        #[arg(long)]
        dev: bool,
    },
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
    Local {
        #[command(flatten)]
        config: ConfigArgs,
        /// AWS profile to use (default: AWS_PROFILE, else the default profile).
        #[arg(long, env = "AWS_PROFILE")]
        profile: Option<String>,
        /// Port to listen on, on 127.0.0.1 (default 8080). server.listen from a config is ignored.
        #[arg(long, conflicts_with = "listen")]
        port: Option<u16>,
        /// Listen on this exact address instead; beyond loopback anyone who reaches it and holds
        /// the session key can use your AWS session.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Where to write the session key (default: $XDG_RUNTIME_DIR/byollm/local-<port>.key,
        /// else ~/.byollm/local-<port>.key), readable by you only.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Bedrock region (default: the profile's region, else bedrock.region).
        #[arg(long)]
        region: Option<String>,
    },
    /// Check credentials without printing any secret: a local profile, or a team's web-identity set-up.
    #[command(after_help = "Examples:\n  byollm doctor --profile work\n  \
byollm doctor --config byollm.toml --team acme --actor service_account --principal ci-bot [--agent reviewer]\n\n\
For a team it mints a token and calls STS AssumeRoleWithWebIdentity for the team's (or agent's) role, so AWS \
itself says whether the OIDC provider, trust policy and role are right. With --model it then makes one minimal \
real call (max_tokens 1) to that model and explains the usual first-use failures: model access not enabled, AWS \
Marketplace subscription missing, IAM or organization policy, a profile Bedrock does not offer from this region. \
Exit code 0 when credentials were obtained (and the model answered).")]
    Doctor {
        #[command(flatten)]
        config: ConfigArgs,
        /// Local mode: the AWS profile to check (default: AWS_PROFILE, else default).
        #[arg(long, env = "AWS_PROFILE", conflicts_with = "team")]
        profile: Option<String>,
        /// Cloud mode: the team whose role to assume.
        #[arg(long, requires_all = ["actor", "principal"])]
        team: Option<String>,
        /// Cloud mode: actor type of the principal (user or service_account).
        #[arg(long)]
        actor: Option<String>,
        /// Cloud mode: principal uid the token is minted for.
        #[arg(long)]
        principal: Option<String>,
        /// A named agent with its own role.
        #[arg(long)]
        agent: Option<String>,
        /// Then make one minimal real call to this served model (its public name) and explain the
        /// usual first-use failures.
        #[arg(long)]
        model: Option<String>,
    },
    /// Print the model catalog (what byollm knows about each Claude model on Bedrock) and the
    /// models this config serves, with the catalog entry and overrides of each.
    #[command(after_help = "Examples:\n  byollm models\n  byollm models --config byollm.toml\n\n\
The catalog is compiled in (src/models/catalog.toml). A configured id that matches no entry gets conservative \
rules; name its entry with family = \"<FAMILY>\" in its [models] section, or set the rules themselves.")]
    Models {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Manage the signing key set (active, next, retired).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Mint tokens from the command line, for operators.
    #[command(subcommand)]
    Token(TokenCommand),
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
    AwsSetup {
        #[command(flatten)]
        config: ConfigArgs,
        /// Team uid the role is for.
        #[arg(long)]
        team: String,
        /// The customer's 12-digit AWS account id (placeholder in the JSON policies without it).
        #[arg(long)]
        account_id: Option<String>,
        /// Output: json (both policies), tfvars, or cfn-params.
        #[arg(long, default_value = "json", value_parser = ["json", "tfvars", "cfn-params"])]
        format: String,
        /// Narrow the trust policy to one actor type (user or service_account).
        #[arg(long)]
        actor: Option<String>,
        /// Narrow the trust policy to one principal uid (needs --actor).
        #[arg(long, requires = "actor")]
        principal: Option<String>,
        /// The role of this named agent of the team (default: the team's own role).
        #[arg(long)]
        agent: Option<String>,
        /// IAM role name (default: byollm-<team>, or byollm-<team>-<agent> with --agent).
        #[arg(long)]
        role_name: Option<String>,
    },
    /// Create and hash caller API keys.
    #[command(subcommand)]
    Callers(CallersCommand),
}

/// Where the key set is: the config (for keys.* settings) and an optional directory override.
#[derive(Args, Clone)]
struct KeyDirArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Key directory (default: keys.dir from config, else ./jwks).
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl KeyDirArgs {
    fn open(self) -> Result<(Config, KeyDir), Failure> {
        let config = load_config(&self.config, true)?;
        let dir = KeyDir::new(self.dir.unwrap_or_else(|| config.keys.dir.clone()));
        Ok((config, dir))
    }
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key set (an active and a next key) or add a next key to one that has none.
    Generate {
        #[command(flatten)]
        keys: KeyDirArgs,
        /// RSA key size: 2048, 3072 or 4096 (default: keys.rsa_bits, else 2048).
        #[arg(long)]
        bits: Option<u32>,
    },
    /// Show each key's state and age.
    List {
        #[command(flatten)]
        keys: KeyDirArgs,
    },
    /// Promote next → active, active → retired, create a new next key, drop expired retired keys.
    #[command(after_help = "Refuses while the next key has been published for less than keys.min_next_age_secs \
(verifiers such as AWS STS may not have fetched it yet); --force overrides. Running gateways pick up the change on \
SIGHUP or within keys.reload_interval_secs.")]
    Rotate {
        #[command(flatten)]
        keys: KeyDirArgs,
        /// RSA size of the new next key: 2048, 3072 or 4096 (default: keys.rsa_bits).
        #[arg(long)]
        bits: Option<u32>,
        /// Promote the next key even if it was published only recently.
        #[arg(long)]
        force: bool,
    },
    /// Remove a key no token needs any more: a retired key whose tokens have expired, or the next key.
    #[command(after_help = "Routine housekeeping; for a compromised key use `keys revoke`.\n\n\
Allowed: the next key (it has signed nothing; run `keys generate` afterwards to add a new one, `keys rotate` needs it); \
a retired key once the longest token lifetime (1 h) plus keys.retired_grace_secs has passed since it retired \
(earlier only with --force: tokens it signed then fail at STS once STS refetches the JWKS).\n\
Refused: the active key (it signs every new token): `keys rotate` retires it, `keys revoke` replaces it at once.\n\
The key leaves keyset.json and its <kid>.pem is deleted. Running gateways stop publishing it on SIGHUP or within \
keys.reload_interval_secs; in Kubernetes, replace the Secret from the changed directory.")]
    Remove {
        #[command(flatten)]
        keys: KeyDirArgs,
        /// The kid to remove (as `keys list` shows it; it may start with `-`).
        #[arg(allow_hyphen_values = true)]
        kid: String,
        /// Remove a retired key even though tokens it signed may still be in flight.
        #[arg(long)]
        force: bool,
    },
    /// Stop trusting a compromised key at once: unpublish it, delete its private key, promote or replace.
    #[command(
        after_help = "Any state, any age. Revoking the active key makes the next key active at once (without the \
keys.min_next_age_secs wait) and creates a new next key; it is refused when there is no next key, since nothing \
could sign. Revoking the next key creates a new one. Revoking a retired key only removes it.\n\n\
Tokens the revoked key signed stop verifying once a verifier refetches the JWKS. AWS does not document how long \
STS caches a provider's JWKS, so it may keep accepting tokens signed with the revoked key for a while: follow the \
compromise runbook in infra/README.md (revoke the role sessions issued before the revocation). If the whole key \
directory or Secret leaked, every key in it (including the next key this command promotes) is compromised: \
generate a fresh key set in a new directory instead."
    )]
    Revoke {
        #[command(flatten)]
        keys: KeyDirArgs,
        /// The kid to revoke (as `keys list` shows it; it may start with `-`).
        #[arg(allow_hyphen_values = true)]
        kid: String,
        /// RSA size of the replacement next key: 2048, 3072 or 4096 (default: keys.rsa_bits).
        #[arg(long)]
        bits: Option<u32>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Sign a token for one principal and print it on stdout.
    #[command(after_help = "Example:\n  byollm token mint --team acme --actor service_account --principal ci-bot")]
    Mint {
        #[command(flatten)]
        config: ConfigArgs,
        /// Team uid (1-128 of A-Z a-z 0-9 _ -).
        #[arg(long)]
        team: String,
        /// Actor type: user or service_account.
        #[arg(long)]
        actor: String,
        /// Principal uid (1-128 of A-Z a-z 0-9 _ -).
        #[arg(long)]
        principal: String,
        /// Token lifetime in seconds (60-3600; default issuer.token_lifetime_secs).
        #[arg(long)]
        lifetime_secs: Option<u64>,
        /// Agent name recorded in the token's `agent` claim (an identifier, lands in CloudTrail).
        #[arg(long)]
        agent: Option<String>,
        /// Run id recorded in the token's `run_id` claim (an identifier, lands in CloudTrail).
        #[arg(long)]
        run_id: Option<String>,
    },
}

#[derive(Subcommand)]
enum CallersCommand {
    /// Generate a new random API key and print it with the key_sha256 to put in [[callers]].
    NewKey,
    /// Read an API key on stdin and print its SHA-256 for [[callers]].key_sha256.
    HashKey,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
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

enum Failure {
    Config(byollm::config::ConfigError),
    Other(String),
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::Other(error.to_string())
    }
}

/// byollm at info; the AWS SDK's own info lines (which name access key ids) only from warn up.
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
fn config_env(dev: bool) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    if dev {
        env.push(("BYOLLM_DEV".into(), "true".into()));
    }
    env
}

fn load_config(args: &ConfigArgs, dev: bool) -> Result<Config, Failure> {
    let config = Config::load(args.config.as_deref(), config_env(dev)).map_err(Failure::Config)?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    Ok(config)
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Serve { config, dev } => {
            let reload = config.config.clone().map(|path| (path, config_env(dev)));
            let config = load_config(&config, dev)?;
            let routing = load_routing(&config, Mode::Hosted)?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(serve(config, routing, reload))
        }
        Command::Local { config, profile, port, listen, key_file, region } => {
            let reload = config.config.clone().map(|path| (path, config_env(true)));
            let config = load_config(&config, true)?;
            let routing = load_routing(&config, Mode::Local)?;
            // Loopback unless --listen says otherwise explicitly: a shared config's
            // server.listen (0.0.0.0 in the Kubernetes one) never applies here.
            let listen = listen.unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(8080))));
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(local(config, routing, reload, LocalArgs { profile, listen, key_file, region }))
        }
        Command::Doctor { config, profile, team, actor, principal, agent, model } => {
            let config = load_config(&config, false)?;
            let bedrock = byollm::upstream::BedrockClient::new(config.bedrock.endpoint_url.clone());
            let served = match &model {
                Some(name) => Some(byollm::models::find_by_name(&config.models, name).ok_or_else(|| {
                    format!("--model: {name:?} is not served by this config (byollm models lists them)")
                })?),
                None => None,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let report = runtime.block_on(async {
                let probe = served.map(|(name, model)| byollm::doctor::ModelProbe { name, model, bedrock: &bedrock });
                match (team, actor, principal) {
                    (Some(team), Some(actor), Some(principal)) => {
                        let team_uid = byollm::principal::Uid::parse(&team).map_err(|e| format!("--team: {e}"))?;
                        let broker = cli_broker(config.clone())?;
                        let request = byollm::authz::RunRequest {
                            actor: Some(actor),
                            principal: Some(principal),
                            agent,
                            ..Default::default()
                        };
                        Ok::<_, Failure>(byollm::doctor::team_report(&broker, &team_uid, request, probe).await)
                    }
                    _ => {
                        let source = byollm::broker::local::LocalSource {
                            profile: profile.or(config.local.profile.clone()),
                            config_file: std::env::var_os("AWS_CONFIG_FILE").map(PathBuf::from),
                            credentials_file: std::env::var_os("AWS_SHARED_CREDENTIALS_FILE").map(PathBuf::from),
                            refresh_interval: config.local.refresh_interval,
                        };
                        Ok(byollm::doctor::local_model_report(source, Some(config.bedrock.region.clone()), probe).await)
                    }
                }
            })?;
            println!("{report}");
            match (report.ok, report.passed()) {
                (true, true) => Ok(()),
                (true, false) => Err(Failure::Other("the credentials work, the model call did not (see above)".into())),
                _ => Err(Failure::Other("no usable credentials (see above)".into())),
            }
        }
        Command::Models { config } => {
            let config = load_config(&config, true)?;
            println!("Model catalog (src/models/catalog.toml):\n");
            print!("{}", byollm::models::report::catalog_table(byollm::models::catalog()));
            println!("\nServed models:\n");
            print!("{}", byollm::models::report::served_table(&config.models));
            for warning in &config.warnings {
                println!("\nwarning: {warning}");
            }
            Ok(())
        }
        Command::Keys(command) => keys(command),
        Command::Token(TokenCommand::Mint { config, team, actor, principal, lifetime_secs, agent, run_id }) => {
            use byollm::authz::{Purpose, RunRequest, authorize};
            let config = load_config(&config, false)?;
            let issuer = Issuer::open(&config)?;
            let team_uid = byollm::principal::Uid::parse(&team).map_err(|e| format!("--team: {e}"))?;
            // The operator goes through the same authorization as every caller: uids, agents and
            // run ids are checked, and the team's session-tag setting applies.
            let request =
                RunRequest { actor: Some(actor), principal: Some(principal), agent, run_id, ..Default::default() };
            let operator = byollm::auth::Caller::operator(team_uid);
            let run = authorize(&config, &operator, &request, Purpose::Token).map_err(|e| e.to_string())?;
            let minted = issuer
                .mint(&run.principal, lifetime_secs.map(Duration::from_secs), &RunClaims::from(&run), unix_now())
                .map_err(|e| e.to_string())?;
            println!("{}", minted.token.expose());
            eprintln!("minted for {} with key {}, expires at {}", minted.subject, minted.kid, minted.expires_at);
            Ok(())
        }
        Command::AwsSetup { config, team, account_id, format, actor, principal, agent, role_name } => {
            use byollm::aws_setup::{SetupInput, SubjectScope, generate};
            let config = load_config(&config, false)?;
            let team_uid = byollm::principal::Uid::parse(&team).map_err(|e| format!("--team: {e}"))?;
            let actor = actor
                .map(|a| a.parse::<byollm::principal::ActorType>())
                .transpose()
                .map_err(|e| format!("--actor: {e}"))?;
            let scope = match (actor, principal) {
                (None, _) => SubjectScope::Team,
                (Some(actor), None) => SubjectScope::Actor(actor),
                (Some(actor), Some(principal)) => SubjectScope::Principal(
                    actor,
                    byollm::principal::Uid::parse(&principal).map_err(|e| format!("--principal: {e}"))?,
                ),
            };
            let agent =
                agent.map(|a| byollm::principal::Uid::parse(&a)).transpose().map_err(|e| format!("--agent: {e}"))?;
            let team_config = config.team(&team_uid);
            if let Some(agent) = &agent
                && !team_config.is_some_and(|t| t.agents.iter().any(|a| a.name == agent.as_str()))
            {
                eprintln!("note: team {team_uid} configures no agent {agent} yet; add it under [[teams.agents]]");
            }
            let region = team_config.and_then(|t| t.region.clone()).unwrap_or_else(|| config.bedrock.region.clone());
            let mut input = SetupInput {
                issuer_url: config.issuer.url.clone(),
                audience: config.issuer.audience.clone(),
                role_name: role_name.unwrap_or_else(|| byollm::aws_setup::default_role_name(&team_uid, agent.as_ref())),
                session_tags: team_config.is_some_and(|t| t.session_tags),
                agent,
                team_uid,
                scope,
                model_ids: Vec::new(),
                regions: vec![region],
                profile_models: Default::default(),
                account_id,
                max_session_secs: (config.sts.duration.as_secs() as u32).max(3600),
            };
            for note in byollm::aws_setup::models_from_routing(&config, &mut input).map_err(Failure::Other)? {
                eprintln!("{note}");
            }
            let output = generate(&input)?;
            match format.as_str() {
                "tfvars" => print!("{}", output.tfvars),
                "cfn-params" => println!("{}", serde_json::to_string_pretty(&output.cfn_parameters)?),
                _ => println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "trust_policy": output.trust_policy,
                        "permissions_policy": output.permissions_policy,
                    }))?
                ),
            }
            Ok(())
        }
        Command::Callers(CallersCommand::NewKey) => {
            let key = byollm::auth::generate_key().map_err(|e| e.message)?;
            println!("api key (give to the caller, store nowhere else): {key}");
            println!("key_sha256 = \"{}\"", byollm::auth::hex(&byollm::auth::hash_key(&key)));
            Ok(())
        }
        Command::Callers(CallersCommand::HashKey) => {
            let mut key = String::new();
            std::io::stdin().read_line(&mut key)?;
            let key = key.trim();
            if key.is_empty() {
                return Err(Failure::Other("no key on stdin".into()));
            }
            println!("key_sha256 = \"{}\"", byollm::auth::hex(&byollm::auth::hash_key(key)));
            Ok(())
        }
    }
}

fn keys(command: KeysCommand) -> Result<(), Failure> {
    match command {
        KeysCommand::Generate { keys, bits } => {
            let (config, dir) = keys.open()?;
            let manifest = dir.generate(bits.unwrap_or(config.keys.rsa_bits), unix_now())?;
            print_keys(&manifest, unix_now());
            Ok(())
        }
        KeysCommand::List { keys } => {
            let (_, dir) = keys.open()?;
            print_keys(&dir.read_manifest()?, unix_now());
            Ok(())
        }
        KeysCommand::Rotate { keys, bits, force } => {
            let (config, dir) = keys.open()?;
            let policy = KeyPolicy::from_config(&config.keys);
            let manifest = dir.rotate(bits.unwrap_or(config.keys.rsa_bits), unix_now(), &policy, force)?;
            print_keys(&manifest, unix_now());
            eprintln!("rotated; running gateways reload on SIGHUP or within keys.reload_interval_secs");
            Ok(())
        }
        KeysCommand::Remove { keys, kid, force } => {
            let (config, dir) = keys.open()?;
            let policy = KeyPolicy::from_config(&config.keys);
            let manifest = dir.remove(&kid, unix_now(), &policy, force)?;
            print_keys(&manifest, unix_now());
            eprintln!(
                "removed {kid}; running gateways stop publishing it on SIGHUP or within keys.reload_interval_secs"
            );
            Ok(())
        }
        KeysCommand::Revoke { keys, kid, bits } => {
            let (config, dir) = keys.open()?;
            let revoked = dir.revoke(&kid, bits.unwrap_or(config.keys.rsa_bits), unix_now())?;
            print_keys(&revoked.manifest, unix_now());
            eprintln!("revoked {kid} (was {}); its private key file is deleted", revoked.state);
            if let Some(promoted) = &revoked.promoted {
                eprintln!("{promoted} is now the active key");
            }
            if let Some(next) = &revoked.new_next {
                eprintln!("{next} is the new next key");
            }
            eprintln!(
                "AWS STS may keep trusting its cached copy of the JWKS for a time AWS does not document: \
ask each customer to revoke role sessions issued before now (infra/README.md, compromised key)"
            );
            Ok(())
        }
    }
}

fn print_keys(manifest: &byollm::issuer::keys::Manifest, now: u64) {
    println!("{:<45} {:<8} {:>5} {:>10} {:>10}", "KID", "STATE", "BITS", "AGE", "IN STATE");
    for key in &manifest.keys {
        let since = match key.state {
            KeyState::Next => key.created_at,
            KeyState::Active => key.activated_at.unwrap_or(key.created_at),
            KeyState::Retired => key.retired_at.unwrap_or(key.created_at),
        };
        println!(
            "{:<45} {:<8} {:>5} {:>10} {:>10}",
            key.kid,
            key.state.to_string(),
            key.bits,
            human_age(now.saturating_sub(key.created_at)),
            human_age(now.saturating_sub(since))
        );
    }
}

fn human_age(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// The broker for one command-line check (`doctor`): STS through the SDK, the system clock.
fn cli_broker(config: Config) -> Result<byollm::broker::Broker, Failure> {
    let issuer = Issuer::open(&config)?;
    let sts = byollm::broker::sts::SdkSts::new(&config.sts.region, config.sts.endpoint_url.as_deref());
    Ok(byollm::broker::Broker::new(
        Arc::new(config),
        Arc::new(issuer),
        Arc::new(sts),
        Arc::new(byollm::broker::cache::SystemClock),
        Arc::new(byollm::metrics::Metrics::default()),
    ))
}

/// The routing policy of a loaded configuration, its problems reported like the config's own.
fn load_routing(config: &Config, mode: Mode) -> Result<RoutingPolicy, Failure> {
    RoutingPolicy::from_config(config, mode, &ProcessSecrets).map_err(|errors| {
        let source = "the [routing] section".to_owned();
        Failure::Config(byollm::config::ConfigError { source, errors })
    })
}

/// Put a new routing policy in force when the config file changes (polled every 2 s) or on
/// SIGHUP (which also re-reads the key files the policy names).
async fn watch_routing(
    mut reloader: PolicyReloader,
    routing: Arc<byollm::routing::Routing>,
    metrics: Arc<byollm::metrics::Metrics>,
) {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            _ = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
        };
        match reloader.check(&routing, forced) {
            ReloadOutcome::Unchanged => {}
            ReloadOutcome::Replaced { restart_needed } => {
                metrics.policy_reloads.inc("changed");
                tracing::info!("routing policy reloaded");
                byollm::broker::session_policy::log_scopes(reloader.config(), &routing.policy());
                if !restart_needed.is_empty() {
                    tracing::warn!(
                        sections = %restart_needed.join(", "),
                        "the config file changed outside [routing]: those changes take effect only after a restart"
                    );
                }
            }
            ReloadOutcome::Invalid(error) => {
                metrics.policy_reloads.inc("error");
                tracing::error!("routing policy not reloaded, the one in force stays: {error}");
            }
        }
    }
}

async fn serve(
    config: Config,
    routing: RoutingPolicy,
    reload: Option<(PathBuf, Vec<(String, String)>)>,
) -> Result<(), Failure> {
    if config.dev {
        tracing::warn!(
            issuer = %config.issuer.url,
            "DEV MODE: http issuer on loopback; AWS STS cannot reach it. Do not use in production"
        );
    }
    let issuer = Issuer::open(&config)?;
    let listen = config.server.listen;
    let public_listen = config.server.public_listen;
    let reload_interval = config.keys.reload_interval;
    let tls = load_tls(&config)?;
    let telemetry = byollm::telemetry::Telemetry::start(&config.telemetry)?;
    let mut state = byollm::AppState::new(config, issuer, routing);
    if let Some(telemetry) = &telemetry {
        state.chat.audit.set_observer(telemetry.clone());
    }
    if let Some((path, env)) = reload {
        let reloader = PolicyReloader::new(path, env, state.config.clone(), Mode::Hosted);
        tokio::spawn(watch_routing(reloader, state.chat.routing.clone(), state.metrics.clone()));
    }

    let internal =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let public = match public_listen {
        Some(addr) => {
            Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?)
        }
        None => None,
    };
    tokio::spawn(watch_keys(state.clone(), reload_interval, tls.clone()));

    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    tracing::info!(
        internal = %internal.local_addr()?,
        public = ?public.as_ref().and_then(|l| l.local_addr().ok()),
        issuer = %state.config.issuer.url,
        tls = tls.is_some(),
        "byollm ready"
    );
    let server = &state.config.server;
    let limits = |max_connections| byollm::http::ListenerLimits {
        header_read_timeout: server.header_read_timeout,
        max_connections,
    };
    let (internal_limits, public_limits) = (limits(server.max_connections), limits(server.public_max_connections));
    let internal_server =
        byollm::http::serve(internal, byollm::router(state.clone()), internal_limits, tls.clone(), shutdown.clone());
    match public {
        Some(public) => {
            let public_server = byollm::http::serve(public, byollm::public_router(state), public_limits, tls, shutdown);
            tokio::join!(internal_server, public_server);
        }
        None => internal_server.await,
    }
    if let Some(telemetry) = telemetry {
        telemetry.shutdown().await;
    }
    Ok(())
}

/// What `byollm local` was asked for on its command line.
struct LocalArgs {
    profile: Option<String>,
    listen: std::net::SocketAddr,
    key_file: Option<PathBuf>,
    region: Option<String>,
}

async fn local(
    config: Config,
    routing: RoutingPolicy,
    reload: Option<(PathBuf, Vec<(String, String)>)>,
    args: LocalArgs,
) -> Result<(), Failure> {
    let LocalArgs { profile, listen, key_file, region } = args;
    use byollm::adapter::routes::{ChatState, CredentialSource};
    use byollm::broker::local::{LocalSession, LocalSource};
    let source = LocalSource {
        profile: profile.or(config.local.profile.clone()),
        config_file: std::env::var_os("AWS_CONFIG_FILE").map(PathBuf::from),
        credentials_file: std::env::var_os("AWS_SHARED_CREDENTIALS_FILE").map(PathBuf::from),
        refresh_interval: config.local.refresh_interval,
    };
    let tls = load_tls(&config)?;
    let session = Arc::new(LocalSession::new(source).await);
    let region = region.or_else(|| session.region().map(str::to_owned)).unwrap_or(config.bedrock.region.clone());
    if !listen.ip().is_loopback() {
        tracing::warn!(%listen, "local mode listening beyond loopback: anyone who reaches this address and holds the session key can use your AWS session");
    }
    let _refresher = session.clone().spawn_refresher();
    let config = Arc::new(config);
    let metrics = Arc::new(byollm::metrics::Metrics::default());
    let audit_sink = Arc::new(byollm::audit::StdoutSink::start());
    let mut audit = byollm::audit::Audit::new(audit_sink, metrics.clone());
    let telemetry = byollm::telemetry::Telemetry::start(&config.telemetry)?;
    if let Some(telemetry) = &telemetry {
        audit.set_observer(telemetry.clone());
    }
    let chat = ChatState {
        callers: Arc::new(byollm::auth::Callers::new(&config.callers)),
        metrics: metrics.clone(),
        bedrock: Arc::new(byollm::upstream::BedrockClient::new(config.bedrock.endpoint_url.clone())),
        source: CredentialSource::Local { session: session.clone(), region: region.clone() },
        routing: Arc::new(byollm::routing::Routing::new(routing)),
        direct: Arc::new(byollm::upstream::direct::DirectClient::new()),
        audit,
        config,
    };
    if let Some((path, env)) = reload {
        let reloader = PolicyReloader::new(path, env, chat.config.clone(), Mode::Local);
        tokio::spawn(watch_routing(reloader, chat.routing.clone(), metrics));
    }
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = listener.local_addr()?;
    // A key per session, required on every request; written where only this user can read it.
    let key = Arc::new(byollm::auth::SessionKey::generate().map_err(|e| e.message)?);
    let key_path = key_file
        .or_else(|| {
            let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| p.is_dir());
            let home = std::env::var_os("HOME").map(PathBuf::from);
            byollm::auth::SessionKey::default_path(runtime.as_deref(), home.as_deref(), bound.port())
        })
        .ok_or("no place for the session key: set HOME or pass --key-file")?;
    key.write_file(&key_path).map_err(|e| format!("cannot write the session key to {}: {e}", key_path.display()))?;
    println!("session key (send as the API key; new each start): {}", key.expose());
    println!("written to {} (readable by you only)", key_path.display());
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("  export OPENAI_API_KEY=$(cat {}) OPENAI_BASE_URL={scheme}://{bound}/v1", key_path.display());
    tracing::info!(
        listen = %bound,
        profile = %session.profile_name(),
        %region,
        key_file = %key_path.display(),
        tls = tls.is_some(),
        "byollm ready (local mode): point OpenAI clients at {scheme}://{bound}/v1 with the session key"
    );
    if let Some(tls) = tls.clone() {
        tokio::spawn(watch_tls(tls, chat.config.keys.reload_interval));
    }
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop.send(true);
    });
    let limits = byollm::http::ListenerLimits {
        header_read_timeout: chat.config.server.header_read_timeout,
        max_connections: chat.config.server.max_connections,
    };
    let router = byollm::http::local_router(chat, listen.ip().is_loopback(), key);
    byollm::http::serve(listener, router, limits, tls, shutdown).await;
    if let Some(telemetry) = telemetry {
        telemetry.shutdown().await;
    }
    // The key dies with the session.
    let _ = std::fs::remove_file(&key_path);
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The listeners' certificate and key (`server.tls_cert_file`, `server.tls_key_file`), loaded now:
/// unusable files stop the start.
fn load_tls(config: &Config) -> Result<Option<Arc<byollm::tls::ReloadingTls>>, Failure> {
    match &config.server.tls {
        Some(files) => {
            let tls = byollm::tls::ReloadingTls::new(files.clone())
                .map_err(|e| format!("server.tls_cert_file / server.tls_key_file: {e}"))?;
            Ok(Some(Arc::new(tls)))
        }
        None => Ok(None),
    }
}

/// Re-read the TLS files if they changed; a broken pair keeps the certificate in force.
async fn reload_tls(tls: &Arc<byollm::tls::ReloadingTls>) {
    let tls = tls.clone();
    match tokio::task::spawn_blocking(move || tls.reload_if_changed()).await {
        Ok(Ok(true)) => tracing::info!("tls certificate reloaded"),
        Ok(Ok(false)) | Err(_) => {}
        Ok(Err(error)) => tracing::error!(%error, "tls reload failed; keeping the certificate in force"),
    }
}

/// `byollm local`: re-read the TLS files every `interval`.
async fn watch_tls(tls: Arc<byollm::tls::ReloadingTls>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        reload_tls(&tls).await;
    }
}

/// Reload the key set (and the TLS files) on SIGHUP and every `interval` (which also retires keys
/// on time), and drop expired credentials from the broker's cache.
async fn watch_keys(state: byollm::AppState, interval: Duration, tls: Option<Arc<byollm::tls::ReloadingTls>>) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        #[cfg(unix)]
        {
            let hup = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = ticker.tick() => {}
                _ = hup => tracing::info!("SIGHUP: reloading the key set"),
            }
        }
        #[cfg(not(unix))]
        ticker.tick().await;
        if let Some(tls) = &tls {
            reload_tls(tls).await;
        }
        let purged = state.broker.purge_expired();
        if purged > 0 {
            tracing::debug!(purged, "dropped expired credentials from the cache");
        }
        let issuer = state.issuer.clone();
        match tokio::task::spawn_blocking(move || issuer.reload(unix_now())).await {
            Ok(Ok(true)) => state.metrics.key_reloads.inc("changed"),
            Ok(Ok(false)) => state.metrics.key_reloads.inc("unchanged"),
            Ok(Err(error)) => {
                state.metrics.key_reloads.inc("error");
                tracing::error!(%error, "key set reload failed; keeping the keys in force");
            }
            Err(_) => state.metrics.key_reloads.inc("error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kids are base64url thumbprints: a quarter of them start with `-`, which must not be taken
    /// for an option.
    #[test]
    fn kids_starting_with_a_hyphen_are_values() {
        for verb in ["remove", "revoke"] {
            let cli = Cli::try_parse_from(["byollm", "keys", verb, "-Xy_z0"]).unwrap_or_else(|e| panic!("{verb}: {e}"));
            let kid = match cli.command {
                Command::Keys(KeysCommand::Remove { kid, .. } | KeysCommand::Revoke { kid, .. }) => kid,
                _ => panic!("{verb}: not a keys command"),
            };
            assert_eq!(kid, "-Xy_z0");
        }
    }
}
