//! `byollm keys`: the signing key set (generate, list, rotate, remove, revoke).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{ConfigArgs, Failure, load_config};
use crate::config::Config;
use crate::issuer::keys::{KeyDir, KeyPolicy, KeyState};
use crate::issuer::unix_now;

#[derive(Args, Clone)]
pub struct KeyDirArgs {
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
pub enum KeysCommand {
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

pub fn run(command: KeysCommand) -> Result<(), Failure> {
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

fn print_keys(manifest: &crate::issuer::keys::Manifest, now: u64) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Kids are base64url thumbprints: a quarter of them start with `-`, which must not be taken
    /// for an option.
    #[test]
    fn kids_starting_with_a_hyphen_are_values() {
        for verb in ["remove", "revoke"] {
            let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(["byollm", "keys", verb, "-Xy_z0"])
                .unwrap_or_else(|e| panic!("{verb}: {e}"));
            let kid = match cli.command {
                crate::cli::Command::Keys(KeysCommand::Remove { kid, .. } | KeysCommand::Revoke { kid, .. }) => kid,
                _ => panic!("{verb}: not a keys command"),
            };
            assert_eq!(kid, "-Xy_z0");
        }
    }
}
