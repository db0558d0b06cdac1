//! Runs the real `byollm` binary on 127.0.0.1 for integration tests: writes its config into a
//! temporary directory, picks a free port, captures every log line, and kills it on drop. The
//! binary's path comes from the test ([`Harness::new`] with `env!("CARGO_BIN_EXE_byollm")`, which
//! only an integration test of byollm knows): this crate never builds or links byollm itself.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `byollm` binary under test. A test file declares it once:
/// `const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));`
#[derive(Debug, Clone, Copy)]
pub struct Harness {
    bin: &'static str,
}

/// A caller API key used by tests, and its SHA-256.
pub const API_KEY: &str = "byollm_test_key_acme_0123456789abcdef";
pub const OTHER_API_KEY: &str = "byollm_test_key_other_0123456789abcdef";

pub fn sha256_hex(value: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap()
}

/// The standard test callers: one for team `acme` (which may also have tokens signed), one for
/// team `other` (which may not: the default).
pub fn callers_toml() -> String {
    format!(
        r#"
[[callers]]
name = "acme-worker"
key_sha256 = "{}"
team = "acme"
mint_tokens = true

[[callers]]
name = "other-worker"
key_sha256 = "{}"
team = "other"
"#,
        sha256_hex(API_KEY),
        sha256_hex(OTHER_API_KEY)
    )
}

/// A self-signed certificate for `localhost` and `127.0.0.1` (its own CA), as PEM files.
pub struct TlsPair {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate: what clients trust (`AWS_CA_BUNDLE`, `SSL_CERT_FILE`).
    pub pem: String,
}

/// Writes `tls.crt` and `tls.key` into `dir`.
pub fn write_tls_pair(dir: &Path) -> TlsPair {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    let pem = certified.cert.pem();
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    TlsPair { cert, key, pem }
}

/// `[server]` lines that turn TLS on with `pair`.
pub fn tls_lines(pair: &TlsPair) -> String {
    format!(
        "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
        pair.cert.display().to_string(),
        pair.key.display().to_string()
    )
}

pub struct Gateway {
    child: Child,
    pub url: String,
    pub public_url: Option<String>,
    pub dir: tempfile::TempDir,
    logs: Arc<Mutex<String>>,
    /// `byollm local`: the session key it wrote to its key file.
    local_key: Option<String>,
    harness: Harness,
}

impl Harness {
    pub const fn new(bin: &'static str) -> Harness {
        Harness { bin }
    }

    /// The binary's path.
    pub fn bin(&self) -> &'static str {
        self.bin
    }

    /// Start `byollm serve` in dev mode with `extra` appended to a config that sets the listener,
    /// the issuer URL and the key directory.
    pub fn start(&self, extra: &str) -> Gateway {
        self.start_with(extra, false, &[])
    }

    pub fn start_with(&self, extra: &str, public: bool, env: &[(&str, &str)]) -> Gateway {
        self.start_full(extra, public, env, None, None)
    }

    /// Like [`Harness::start`], with both listeners on HTTPS with `pair` ([`write_tls_pair`]);
    /// `url` and the issuer are `https://localhost:<port>`.
    pub fn start_tls(&self, extra: &str, env: &[(&str, &str)], pair: &TlsPair) -> Gateway {
        self.start_full(extra, false, env, None, Some(pair))
    }

    /// Like [`Harness::start`], but tokens carry `issuer_url` (say `https://issuer.example.com`)
    /// as their `iss`; a fake STS reaches the gateway's documents through
    /// the fake STS's `route_issuer`.
    pub fn start_with_issuer(&self, extra: &str, issuer_url: &str) -> Gateway {
        self.start_full(extra, false, &[], Some(issuer_url), None)
    }

    fn start_full(
        &self,
        extra: &str,
        public: bool,
        env: &[(&str, &str)],
        issuer_url: Option<&str>,
        tls: Option<&TlsPair>,
    ) -> Gateway {
        loop {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let url =
                if tls.is_some() { format!("https://localhost:{port}") } else { format!("http://127.0.0.1:{port}") };
            let public_port = public.then(free_port);
            let mut public_line =
                public_port.map(|p| format!("public_listen = \"127.0.0.1:{p}\"\n")).unwrap_or_default();
            if let Some(pair) = tls {
                public_line.push_str(&tls_lines(pair));
            }
            let config = format!(
                "dev = true\n[server]\nlisten = \"127.0.0.1:{port}\"\n{public_line}[issuer]\nurl = \"{}\"\n[keys]\ndir = {:?}\nmin_next_age_secs = 0\nreload_interval_secs = 1\n{extra}",
                issuer_url.unwrap_or(&url),
                dir.path().join("jwks").display().to_string()
            );
            let config_path = dir.path().join("byollm.toml");
            std::fs::write(&config_path, config).unwrap();
            let mut command = self.command();
            command.arg("serve").arg("--config").arg(&config_path);
            if let Some(gateway) = self.spawn(command, dir, url, public_port, env) {
                return gateway;
            }
        }
    }

    /// Start `byollm local` on a free loopback port (`--port`) with `extra` as its config and `env`
    /// (e.g. a temporary `AWS_CONFIG_FILE` and `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`). Its session key
    /// goes to `local.key` in the gateway's directory ([`Gateway::local_key`]).
    pub fn start_local(&self, extra: &str, args: &[&str], env: &[(&str, &str)]) -> Gateway {
        loop {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let config_path = dir.path().join("byollm.toml");
            std::fs::write(&config_path, extra).unwrap();
            let key_path = dir.path().join("local.key");
            let mut command = self.command();
            command.arg("local").arg("--config").arg(&config_path).arg("--port").arg(port.to_string());
            command.arg("--key-file").arg(&key_path);
            command.args(args);
            let url = format!("http://127.0.0.1:{port}");
            if let Some(mut gateway) = self.spawn(command, dir, url, None, env) {
                gateway.local_key = Some(std::fs::read_to_string(&key_path).unwrap().trim().to_owned());
                return gateway;
            }
        }
    }

    /// `byollm local --profile dev` with a temporary AWS profile holding static keys, pointed at
    /// `bedrock_url` through `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`. Keep the returned directory alive.
    pub fn start_local_with_keys(&self, bedrock_url: &str, key_id: &str, secret: &str) -> (Gateway, tempfile::TempDir) {
        self.start_local_configured("", bedrock_url, key_id, secret)
    }

    /// [`Harness::start_local_with_keys`] with `extra` config (a `[models]` section, ...).
    pub fn start_local_configured(
        &self,
        extra: &str,
        bedrock_url: &str,
        key_id: &str,
        secret: &str,
    ) -> (Gateway, tempfile::TempDir) {
        let aws = tempfile::tempdir().unwrap();
        let config = aws.path().join("config");
        let credentials = aws.path().join("credentials");
        std::fs::write(&config, "[profile dev]\nregion = us-east-1\n").unwrap();
        std::fs::write(
            &credentials,
            format!("[dev]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"),
        )
        .unwrap();
        let env = [
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
            ("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()),
            ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", bedrock_url),
        ];
        (self.start_local(extra, &["--profile", "dev"], &env), aws)
    }

    fn spawn(
        &self,
        command: Command,
        dir: tempfile::TempDir,
        url: String,
        public_port: Option<u16>,
        env: &[(&str, &str)],
    ) -> Option<Gateway> {
        let mut command = command;
        command.env("BYOLLM_LOG", "debug").envs(env.iter().copied());
        let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut gateway = Gateway {
            child,
            url,
            public_url: public_port.map(|p| format!("http://127.0.0.1:{p}")),
            dir,
            logs: Arc::new(Mutex::new(String::new())),
            local_key: None,
            harness: *self,
        };
        gateway.capture();
        gateway.wait_ready().then_some(gateway)
    }

    /// A `byollm` command without the caller's `BYOLLM_*` and `AWS_*` variables: the binary reads
    /// `BYOLLM_<SECTION>__<FIELD>` as config overrides (and rejects unknown ones), and a developer's
    /// or CI's own variables (`BYOLLM_NOT_RUN_OK`, `AWS_PROFILE`) must not reach it.
    pub fn command(&self) -> Command {
        let mut command = Command::new(self.bin);
        for (name, _) in std::env::vars() {
            if name.starts_with("BYOLLM_") || name.starts_with("AWS_") {
                command.env_remove(name);
            }
        }
        command
    }

    /// Run a `byollm` command (with `--config config`, if given); returns (status, stdout, stderr).
    pub fn run_cli(&self, args: &[&str], config: Option<&Path>) -> (i32, String, String) {
        let mut command = self.command();
        command.args(args);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let output = command.output().unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl Gateway {
    /// The session key of a `byollm local` gateway.
    pub fn local_key(&self) -> &str {
        self.local_key.as_deref().expect("a byollm local gateway")
    }

    fn capture(&mut self) {
        let stderr = self.child.stderr.take().unwrap();
        let stdout = self.child.stdout.take().unwrap();
        for stream in [Box::new(stderr) as Box<dyn std::io::Read + Send>, Box::new(stdout)] {
            let logs = self.logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut logs = logs.lock().unwrap();
                    logs.push_str(&line);
                    logs.push('\n');
                }
            });
        }
    }

    /// True once the gateway says it is ready; false if it could not listen because another
    /// process took its free port between [`free_port`] and its bind (the caller starts it again
    /// on another port); panics on any other exit or after 20 s.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.logs().contains("byollm ready") {
                return true;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                if self.logs().contains("Address already in use") {
                    return false;
                }
                panic!("byollm exited with {status} before it was ready:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("byollm was not ready within 20s:\n{}", self.logs());
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// The logs once `needle` is among them (lines are read from the process by a thread, which
    /// can lag behind the answers on a loaded machine), or as they are after 10 s.
    pub fn logs_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            if logs.contains(needle) || Instant::now() > deadline {
                return logs;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The gateway's process id (`/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The issuer as IAM names its OIDC provider: the URL without its scheme (`127.0.0.1:port`).
    pub fn issuer_host(&self) -> String {
        self.url.trim_start_matches("http://").trim_start_matches("https://").to_owned()
    }

    pub fn key_dir(&self) -> PathBuf {
        self.dir.path().join("jwks")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("byollm.toml")
    }

    /// Send SIGTERM and wait up to `timeout` for the exit; returns the exit code and the logs.
    pub fn terminate(&mut self, timeout: Duration) -> (Option<i32>, String) {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status.code(), self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (None, self.logs())
    }

    pub fn sighup(&self) {
        let status = Command::new("kill").arg("-HUP").arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }

    /// Run another `byollm` command against this gateway's config; returns (status, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        self.harness.run_cli(args, Some(&self.config_path()))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Verify a JWT the way AWS STS does, using only what the issuer serves over HTTP and a verifier
/// that shares no code with the signer. Returns the claims.
pub async fn verify_like_aws(token: &str, expected_audience: &str) -> Result<serde_json::Value, String> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err("not three parts".into());
    }
    let decode = |part: &str| -> Result<serde_json::Value, String> {
        let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    };
    let header = decode(parts[0])?;
    let claims = decode(parts[1])?;
    if header["alg"] != "RS256" || header["typ"] != "JWT" {
        return Err(format!("bad header {header}"));
    }
    let kid = header["kid"].as_str().ok_or("no kid")?;
    let iss = claims["iss"].as_str().ok_or("no iss")?;
    let client = reqwest::Client::new();
    let discovery: serde_json::Value = client
        .get(format!("{iss}/.well-known/openid-configuration"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    if discovery["issuer"].as_str() != Some(iss) {
        return Err(format!("discovery issuer {} != iss {iss}", discovery["issuer"]));
    }
    let jwks_uri = discovery["jwks_uri"].as_str().ok_or("no jwks_uri")?;
    let response = client.get(jwks_uri).send().await.map_err(|e| e.to_string())?;
    if response.headers()["content-type"] != "application/json" {
        return Err("jwks content type".into());
    }
    let jwks: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    let keys = jwks["keys"].as_array().ok_or("no keys")?;
    let jwk = keys.iter().find(|k| k["kid"] == kid).ok_or(format!("kid {kid} not in JWKS"))?;
    if jwk["kty"] != "RSA" || jwk["use"] != "sig" || jwk["alg"] != "RS256" || jwk.get("key_ops").is_some() {
        return Err(format!("bad jwk members {jwk}"));
    }
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().ok_or("no n")?).map_err(|e| e.to_string())?;
    let e = URL_SAFE_NO_PAD.decode(jwk["e"].as_str().ok_or("no e")?).map_err(|e| e.to_string())?;
    if n.first() == Some(&0) || e.first() == Some(&0) {
        return Err("leading zero in n or e".into());
    }
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).map_err(|e| e.to_string())?;
    let message = format!("{}.{}", parts[0], parts[1]);
    aws_lc_rs::signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256, message.as_bytes(), &signature)
        .map_err(|_| "signature does not verify".to_string())?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let exp = claims["exp"].as_u64().ok_or("no exp")?;
    let iat = claims["iat"].as_u64().ok_or("no iat")?;
    if exp <= now || iat > now + 60 || claims["nbf"].as_u64().ok_or("no nbf")? > now + 60 {
        return Err("token not valid now".into());
    }
    if claims["aud"].as_str() != Some(expected_audience) {
        return Err(format!("aud {}", claims["aud"]));
    }
    Ok(claims)
}
