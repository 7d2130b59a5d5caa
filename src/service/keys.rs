//! The token hash key every command derives opaque-token ids (`h:…`)
//! with: from `$TOKENWATCH_HASH_KEY` (`input.token_hash_key_env`) or
//! `input.token_hash_key` (`env:NAME` / `file:/path`). Batch commands may
//! fall back to the documented key and say so; `run` never does.

use anyhow::{Result, bail};

use crate::config::{self, Config};

/// The documented key: anyone can compute ids under it.
pub const DEFAULT_HASH_KEY: &[u8] = b"tokenwatch-default-hash-key";

/// A configured key shorter than this is refused.
pub const MIN_HASH_KEY_BYTES: usize = 16;

/// The configured key; `None` when neither the variable nor the key is set.
pub fn configured(cfg: &Config) -> Result<Option<Vec<u8>>> {
    let env = &cfg.input.token_hash_key_env;
    let key = if let Ok(k) = std::env::var(env)
        && !k.is_empty()
    {
        k
    } else if let Some(k) = &cfg.input.token_hash_key {
        config::resolve_secret(k).map_err(|e| anyhow::anyhow!("input.token_hash_key: {e}"))?
    } else {
        return Ok(None);
    };
    if key.len() < MIN_HASH_KEY_BYTES {
        bail!(
            "the token hash key is {} bytes: use at least {MIN_HASH_KEY_BYTES} random bytes, \
             e.g. `export {env}=$(openssl rand -hex 32)`",
            key.len()
        );
    }
    Ok(Some(key.into_bytes()))
}

/// The configured key, else the documented one, silently (synthetic data).
pub fn or_documented(cfg: &Config) -> Vec<u8> {
    configured(cfg)
        .ok()
        .flatten()
        .unwrap_or_else(|| DEFAULT_HASH_KEY.to_vec())
}

/// Batch commands (replay, explain, load) may run under the documented
/// key, and say so once.
pub fn batch(cfg: &Config) -> Result<Vec<u8>> {
    Ok(match configured(cfg)? {
        Some(k) => k,
        None => {
            eprintln!(
                "note: no token hash key ({} or input.token_hash_key): opaque-token ids (h:…) \
                 use the built-in documented key, which anyone can compute; set one for real logs",
                cfg.input.token_hash_key_env
            );
            DEFAULT_HASH_KEY.to_vec()
        }
    })
}

/// `run` watches real traffic: it never starts under the documented key.
pub fn service(cfg: &Config) -> Result<Vec<u8>> {
    configured(cfg)?.ok_or_else(|| {
        anyhow::anyhow!(
            "tokenwatch run needs a secret token hash key: the built-in one is public, so anyone \
             could compute the ids (h:…) of opaque tokens. Set {env} (e.g. \
             `export {env}=$(openssl rand -hex 32)`, the same on every instance) or \
             input.token_hash_key = \"file:/path\"",
            env = cfg.input.token_hash_key_env
        )
    })
}
