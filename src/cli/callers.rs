//! `byollm callers`: API keys for callers (a new key, or the hash of one).

use clap::Subcommand;

use super::Failure;
use crate::identity::auth::{generate_key, hash_key, hex};

#[derive(Subcommand)]
pub enum CallersCommand {
    /// Generate a new random API key and print it with the key_sha256 to put in [[callers]].
    NewKey,
    /// Read an API key on stdin and print its SHA-256 for [[callers]].key_sha256.
    HashKey,
}

pub fn run(command: CallersCommand) -> Result<(), Failure> {
    match command {
        CallersCommand::NewKey => {
            let key = generate_key().map_err(|e| e.message)?;
            println!("api key (give to the caller, store nowhere else): {key}");
            println!("key_sha256 = \"{}\"", hex(&hash_key(&key)));
            Ok(())
        }
        CallersCommand::HashKey => {
            let mut key = String::new();
            std::io::stdin().read_line(&mut key)?;
            let key = key.trim();
            if key.is_empty() {
                return Err(Failure::Other("no key on stdin".into()));
            }
            println!("key_sha256 = \"{}\"", hex(&hash_key(key)));
            Ok(())
        }
    }
}
