//! The issuer's keys for `[identity] jwks`: read from a file or fetched
//! from an `https://` URL at start, then refreshed on a thread of their own
//! (key rotation). This is an edge: the verification itself is pure
//! (`decode::verify`).
//!
//! Architecture Invariant: a failed refresh keeps the keys in use (and
//! logs why); it never leaves tokenwatch with no keys, which would make
//! every token "unverified".

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;

use crate::config::IdentityConfig;
use crate::decode::verify::Verifier;

/// Where the keys come from.
#[derive(Clone, Debug, PartialEq)]
enum Source {
    File(std::path::PathBuf),
    Url(String),
}

fn source(spec: &str, base: &Path) -> Result<Source, String> {
    if let Some(p) = spec.strip_prefix("file:") {
        let p = Path::new(p);
        Ok(Source::File(if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }))
    } else if spec.starts_with("https://") || spec.starts_with("http://127.0.0.1") {
        Ok(Source::Url(spec.to_string()))
    } else {
        Err(format!(
            "identity.jwks: `{spec}`: use file:/path/jwks.json or an https:// URL"
        ))
    }
}

fn parse(text: &str, from: &str) -> Result<JwkSet, String> {
    let set: JwkSet = serde_json::from_str(text)
        .map_err(|e| format!("identity.jwks: {from}: not a JWKS: {e}"))?;
    if set.keys.is_empty() {
        return Err(format!("identity.jwks: {from}: the key set is empty"));
    }
    Ok(set)
}

fn fetch(src: &Source) -> Result<JwkSet, String> {
    match src {
        Source::File(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("identity.jwks: {}: {e}", p.display()))?;
            parse(&text, &p.display().to_string())
        }
        Source::Url(u) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("identity.jwks: {e}"))?;
            let text = rt.block_on(async {
                let resp = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| e.to_string())?
                    .get(u)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("HTTP {}", resp.status()));
                }
                resp.text().await.map_err(|e| e.to_string())
            });
            parse(&text.map_err(|e| format!("identity.jwks: {u}: {e}"))?, u)
        }
    }
}

/// The verifier for `[identity]`, or `None` when no keys are configured.
/// Keys are loaded now (an error stops start-up: the operator asked for
/// verification) and refreshed every `refresh_secs` on a background thread.
pub fn load(cfg: &IdentityConfig, base: &Path) -> Result<Option<Arc<Verifier>>, String> {
    let Some(spec) = &cfg.jwks else {
        return Ok(None);
    };
    let src = source(spec, base)?;
    let v = Arc::new(Verifier::new(cfg, fetch(&src)?)?);
    tracing::info!(keys = v.key_count(), "identity: JWT verification on");
    let every = Duration::from_secs(cfg.refresh_secs.max(60));
    let weak = Arc::downgrade(&v);
    std::thread::Builder::new()
        .name("jwks-refresh".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(v) = weak.upgrade() else { return };
                match fetch(&src) {
                    Ok(set) => v.replace(set),
                    Err(e) => {
                        tracing::warn!(error = %e, "jwks refresh failed; keeping the keys in use")
                    }
                }
            }
        })
        .map_err(|e| format!("identity.jwks: refresh thread: {e}"))?;
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_load_from_a_file_relative_to_the_config() {
        let cfg = IdentityConfig {
            jwks: Some("file:tests/data/jwks/jwks.json".into()),
            ..IdentityConfig::default()
        };
        let v = load(&cfg, Path::new(".")).unwrap().unwrap();
        assert_eq!(v.key_count(), 1);
        assert!(
            load(&IdentityConfig::default(), Path::new("."))
                .unwrap()
                .is_none()
        );
    }

    /// A JWKS served over HTTP on 127.0.0.1 (as an IdP's jwks_uri would be).
    #[test]
    fn keys_load_from_a_url() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new().route(
                    "/jwks",
                    axum::routing::get(|| async { include_str!("../tests/data/jwks/jwks.json") }),
                );
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                axum::serve(l, app).await.unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        let cfg = IdentityConfig {
            jwks: Some(format!("http://{addr}/jwks")),
            ..IdentityConfig::default()
        };
        let v = load(&cfg, Path::new(".")).unwrap().unwrap();
        assert_eq!(v.key_count(), 1);
        let cfg = IdentityConfig {
            jwks: Some(format!("http://{addr}/missing")),
            ..IdentityConfig::default()
        };
        assert!(load(&cfg, Path::new(".")).unwrap_err().contains("HTTP 404"));
    }

    #[test]
    fn bad_sources_say_what_to_configure() {
        let e = source("ftp://x", Path::new(".")).unwrap_err();
        assert!(e.contains("file:/path/jwks.json or an https:// URL"), "{e}");
        let cfg = IdentityConfig {
            jwks: Some("file:tests/data/jwks/missing.json".into()),
            ..IdentityConfig::default()
        };
        assert!(
            load(&cfg, Path::new("."))
                .unwrap_err()
                .contains("missing.json")
        );
        assert!(parse("{\"keys\": []}", "x").unwrap_err().contains("empty"));
    }
}
