//! Enrich: geo and network facts for the client address (MaxMind City and
//! ASN databases, network class), and a client fingerprint (parsed user
//! agent, JA4 preferred over JA3, accept-language).
//!
//! Architecture Invariant: enrichment is pure once built: the databases are
//! read into memory at start-up and lookups never fail the event (a missing
//! or unknown address is simply "no place"). Caches make hot IPs and user
//! agents cost a hash lookup; they never change results.

// The pure core is total: no indexing or string slicing that can panic.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

pub mod netclass;
pub mod ua;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use dashmap::DashMap;
use maxminddb::{Reader, geoip2};
use rustc_hash::FxBuildHasher;

use crate::config::Config;
use crate::event::{AccessEvent, Enriched, NetInfo, Place};
use netclass::NetClassifier;

/// Errors opening the GeoIP databases (start-up only).
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("cannot open GeoIP database {path}: {reason}")]
    Open {
        path: String,
        reason: maxminddb::MaxMindDbError,
    },
}

/// Read-only enrichment state, shared by all pipeline threads.
pub struct Enricher {
    city: Option<Reader<Vec<u8>>>,
    asn: Option<Reader<Vec<u8>>>,
    classifier: NetClassifier,
    ip_cache: DashMap<IpAddr, Arc<NetInfo>, FxBuildHasher>,
    ua_cache: DashMap<u64, Arc<crate::event::UaInfo>, FxBuildHasher>,
    cache_entries: usize,
}

impl Enricher {
    /// Open the databases named in the config (relative paths are taken
    /// relative to `base`, the config file's directory).
    pub fn from_config(config: &Config, base: &Path) -> Result<Enricher, GeoError> {
        let open = |p: &Option<String>| -> Result<Option<Reader<Vec<u8>>>, GeoError> {
            match p {
                None => Ok(None),
                Some(p) => {
                    let path = if Path::new(p).is_absolute() {
                        Path::new(p).to_path_buf()
                    } else {
                        base.join(p)
                    };
                    Reader::open_readfile(&path)
                        .map(Some)
                        .map_err(|reason| GeoError::Open {
                            path: path.display().to_string(),
                            reason,
                        })
                }
            }
        };
        Ok(Enricher::new(
            open(&config.geoip.city)?,
            open(&config.geoip.asn)?,
            NetClassifier::new(&config.network_classes),
            config.geoip.cache_entries,
        ))
    }

    pub fn new(
        city: Option<Reader<Vec<u8>>>,
        asn: Option<Reader<Vec<u8>>>,
        classifier: NetClassifier,
        cache_entries: usize,
    ) -> Enricher {
        Enricher {
            city,
            asn,
            classifier,
            ip_cache: DashMap::with_hasher(FxBuildHasher),
            ua_cache: DashMap::with_hasher(FxBuildHasher),
            cache_entries: if cache_entries == 0 {
                1 << 18
            } else {
                cache_entries
            },
        }
    }

    pub fn has_geo(&self) -> bool {
        self.city.is_some()
    }

    /// Geo and network facts for an address (cached).
    pub fn net(&self, ip: IpAddr) -> Arc<NetInfo> {
        if let Some(v) = self.ip_cache.get(&ip) {
            return v.clone();
        }
        let info = Arc::new(self.lookup(ip));
        if self.ip_cache.len() >= self.cache_entries {
            // Simple bound: start over. Hot addresses come back within moments.
            self.ip_cache.clear();
        }
        self.ip_cache.insert(ip, info.clone());
        info
    }

    fn lookup(&self, ip: IpAddr) -> NetInfo {
        let place = self.city.as_ref().and_then(|r| {
            let c: geoip2::City = r.lookup(ip).ok()?.decode().ok()??;
            let (lat, lon) = (c.location.latitude?, c.location.longitude?);
            Some(Place {
                city: c.city.names.english.map(Arc::from),
                country: c.country.iso_code.map(Arc::from),
                lat: lat as f32,
                lon: lon as f32,
                radius_km: c.location.accuracy_radius.unwrap_or(100),
            })
        });
        let (asn, org) = self
            .asn
            .as_ref()
            .and_then(|r| {
                let a: geoip2::Asn = r.lookup(ip).ok()?.decode().ok()??;
                Some((
                    a.autonomous_system_number.unwrap_or(0),
                    a.autonomous_system_organization.map(Arc::from),
                ))
            })
            .unwrap_or((0, None));
        NetInfo {
            place,
            asn,
            class: self.classifier.classify(asn, org.as_deref()),
            as_org: org,
        }
    }

    /// Enrich one event.
    pub fn enrich(&self, event: AccessEvent) -> Enriched {
        let net = self.net(event.client_ip);
        let ua_text = event.user_agent.as_deref().unwrap_or("");
        let key = fx_hash(ua_text.as_bytes());
        let ua = match self.ua_cache.get(&key) {
            Some(v) => v.clone(),
            None => {
                let v = Arc::new(ua::parse(ua_text));
                if self.ua_cache.len() >= self.cache_entries {
                    self.ua_cache.clear();
                }
                self.ua_cache.insert(key, v.clone());
                v
            }
        };
        let fp = ua::fingerprint(&ua, event.ja4, event.ja3, event.accept_language);
        let order_key = order_key(&event);
        Enriched {
            event,
            net,
            ua,
            fp,
            order_key,
            source: None,
        }
    }
}

fn fx_hash(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(bytes);
    h.finish()
}

/// Content hash used to order events with equal timestamps deterministically
/// (FxHash is unseeded: the same on every run).
fn order_key(e: &AccessEvent) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    e.token_key.hash(&mut h);
    e.path.hash(&mut h);
    e.status.hash(&mut h);
    e.bytes_sent.hash(&mut h);
    e.client_ip.hash(&mut h);
    e.user_agent.hash(&mut h);
    h.finish()
}
