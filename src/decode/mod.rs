//! Decode: one gateway access-log record (a JSON object, or a JSON array of
//! them as Kong and APISIX batch) → typed [`AccessEvent`]s.
//!
//! A format is a field map from canonical fields to JSON Pointers (with
//! fallbacks) and named transforms; presets are built-in field maps.
//!
//! Architecture Invariant: decoding is pure and total. It never panics and
//! never fails the stream: bad input becomes a [`Drop`] with a reason and a
//! detail naming the field. Raw tokens stop here (see [`token`]).

// The pure core is total: no indexing or string slicing that can panic.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

pub mod envelope;
pub mod json;
pub mod presets;
pub mod scrub;
pub mod token;
pub mod verify;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use serde_json::value::RawValue;

use crate::config::{Config, TokenIdentity};
pub use crate::custody::RawToken;
use crate::event::{AccessEvent, Drop, DropReason, IdentityKind, TokenId, stable_hash};
use crate::format::{Field as F, FieldSource, NFIELDS, Preset};
use json::{LazyObject, PointerPart, Scalar};
use rustc_hash::FxHashMap;
use token::TokenHasher;

pub use crate::format::Transform;

#[derive(Clone, Debug, Default)]
struct CompiledField {
    /// (slot of the pointer's first key, the rest of the pointer).
    pointers: Vec<(u16, Vec<PointerPart>)>,
    transforms: Vec<Transform>,
}

/// A compiled field map: canonical field → pointers and transforms.
#[derive(Clone, Debug)]
pub struct FieldMap {
    pub name: String,
    fields: Vec<Option<CompiledField>>,
    /// Top-level keys any pointer starts with → slot; a record is parsed
    /// once into these slots and everything else is skipped.
    index: FxHashMap<Box<str>, u16>,
    /// Slots of the keys that mark an envelope ([`envelope::KEYS`]).
    envelope: [u16; 3],
    /// The preset this map is (or is based on), for hints.
    pub base: Option<Preset>,
}

impl FieldMap {
    pub fn compile(name: &str, map: &BTreeMap<F, FieldSource>) -> Result<FieldMap, String> {
        let mut fields: Vec<Option<CompiledField>> = vec![None; NFIELDS];
        let mut index: FxHashMap<Box<str>, u16> = FxHashMap::default();
        for (k, src) in map {
            let idx = *k as usize;
            let transforms = src.transforms.clone();
            let mut pointers = Vec::new();
            for p in &src.from {
                let mut parts = json::split_pointer(p);
                if parts.is_empty() {
                    return Err(format!("`{p}` is not a JSON Pointer to a field"));
                }
                let first = parts.remove(0).key.into_boxed_str();
                let n = index.len() as u16;
                let slot = *index.entry(first).or_insert(n);
                pointers.push((slot, parts));
            }
            if let Some(slot) = fields.get_mut(idx) {
                *slot = Some(CompiledField {
                    pointers,
                    transforms,
                });
            }
        }
        let envelope = envelope::KEYS.map(|k| {
            let n = index.len() as u16;
            *index.entry(k.into()).or_insert(n)
        });
        Ok(FieldMap {
            name: name.into(),
            fields,
            index,
            envelope,
            base: None,
        })
    }

    /// The compiled field map of a built-in format.
    pub fn preset(p: Preset) -> Option<FieldMap> {
        let mut map = FieldMap::compile(p.as_str(), &presets::preset(p)).ok()?;
        map.base = Some(p);
        Some(map)
    }

    /// What to configure at the gateway when a record has no identity.
    fn no_token_hint(&self) -> Option<&'static str> {
        self.base.map(presets::no_token_hint)
    }
}

/// Which field map a decoder uses.
#[derive(Clone, Debug)]
enum Format {
    Fixed(Arc<FieldMap>),
    /// Detect the preset from the first decodable record, then keep it.
    Auto(Option<Arc<FieldMap>>),
}

/// Settings shared by every decoder built from one configuration.
#[derive(Clone, Debug)]
pub struct DecodeSettings {
    trusted: Vec<IpNet>,
    identity: Vec<TokenIdentity>,
    hasher: TokenHasher,
    max_record_bytes: usize,
    /// Statuses that mean the gateway rejected the credential.
    rejected_statuses: Vec<u16>,
    /// A credential identity is one token (`per_token`) or may be shared.
    credential_per_token: bool,
    /// Secret key of the keyed hashes (token cache, per-token state key),
    /// derived from the token hash key: ids an attacker chooses cannot be
    /// made to collide with a victim's.
    sip_key: [u8; 16],
    custom: BTreeMap<String, Arc<FieldMap>>,
    /// Hand raw tokens out for custody (a revocation strategy needs them).
    keep_raw: bool,
    /// The issuer's keys (`[identity] jwks`): a JWT that does not verify is
    /// a rejected request.
    verifier: Option<Arc<verify::Verifier>>,
}

impl DecodeSettings {
    /// Build from config; `hash_key` is the resolved HMAC key.
    pub fn new(config: &Config, hash_key: &[u8]) -> Result<DecodeSettings, String> {
        let mut custom = BTreeMap::new();
        for (name, f) in &config.formats {
            let mut fields = f.base.map(presets::preset).unwrap_or_default();
            fields.extend(f.fields.clone());
            let mut map =
                FieldMap::compile(name, &fields).map_err(|e| format!("formats.{name}: {e}"))?;
            map.base = f.base;
            custom.insert(name.clone(), Arc::new(map));
        }
        let hasher = TokenHasher::new(hash_key);
        Ok(DecodeSettings {
            trusted: config.input.trusted_proxies.clone(),
            identity: config.input.token_identity.clone(),
            sip_key: hasher.subkey(b"tokenwatch keyed state hash"),
            hasher,
            max_record_bytes: config.input.max_record_bytes,
            rejected_statuses: config.input.rejected_statuses.clone(),
            credential_per_token: config.input.credential_kind
                == crate::config::CredentialKind::PerToken,
            custom,
            keep_raw: false,
            verifier: None,
        })
    }

    /// The key that seals records tokenwatch forwards through its own
    /// repartition topic, derived from the token hash key (which every
    /// instance of a group shares and `run` requires).
    pub fn forward_key(&self) -> [u8; 32] {
        self.hasher.subkey(b"tokenwatch repartition seal v1")
    }

    /// Hand every distinct raw token of an accepted request out once
    /// ([`Decoder::take_raw_tokens`]), for the edge to seal into custody
    /// so a revocation strategy can present it later.
    pub fn keep_raw_tokens(mut self) -> DecodeSettings {
        self.keep_raw = true;
        self
    }

    /// Verify every JWT with these keys; one that does not verify is
    /// treated as rejected by the gateway.
    pub fn with_verifier(mut self, verifier: Arc<verify::Verifier>) -> DecodeSettings {
        self.verifier = Some(verifier);
        self
    }

    /// The ids a raw bearer token may be known by (jti, keyed hash), for
    /// deny-list checks: the same rules as decoding.
    pub fn token_ids(&self, authorization: &str) -> Vec<String> {
        let raw = token::strip_bearer(authorization);
        if token::is_absent(raw) {
            return Vec::new();
        }
        let mut out = Vec::new();
        if let Some(jti) = token::jwt_claims(raw).and_then(|c| c.jti) {
            out.push(token::jti_id(&jti));
        }
        out.push(self.hasher.id(raw));
        out
    }

    /// A decoder for one stream (a file, a partition) in the named format.
    pub fn decoder(&self, format: &str) -> Result<Decoder, String> {
        let format = if format == "auto" {
            Format::Auto(None)
        } else if let Some(m) = self.custom.get(format) {
            Format::Fixed(m.clone())
        } else if let Some(m) = Preset::parse(format).and_then(FieldMap::preset) {
            Format::Fixed(Arc::new(m))
        } else {
            return Err(format!(
                "unknown format `{format}`: use auto, {} or a [formats.NAME] block",
                Preset::NAMES.join(", ")
            ));
        };
        Ok(Decoder {
            settings: self.clone(),
            format,
            tokens: TokenCache::new(self.sip_key),
            seen: None,
            raw: Vec::new(),
        })
    }

    pub fn hasher(&self) -> &TokenHasher {
        &self.hasher
    }

    /// `input.max_record_bytes`: sources cut longer lines at one byte more.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }
}

/// What a bearer token says about itself, cached per token so a JWT is
/// decoded (or an opaque token hashed) once, not on every request.
#[derive(Debug)]
struct ParsedToken {
    /// The jti as a token id (see [`token::jti_id`]).
    jti: Option<Arc<str>>,
    sub: Option<Arc<str>>,
    client_id: Option<Arc<str>>,
    exp: Option<i64>,
    sid: Option<String>,
    iss: Option<String>,
    opaque_id: Arc<str>,
    /// `nbf` in milliseconds.
    nbf: Option<i64>,
    /// The token is a JWT (its payload decoded).
    is_jwt: bool,
    /// With keys configured: the verdict on a JWT, and the key generation
    /// it was reached with.
    verdict: Option<(verify::Verdict, u64)>,
    /// Handed to custody already (on its first accepted request).
    kept: std::sync::atomic::AtomicBool,
}

/// Cache keyed by a keyed 128-bit SipHash of the token string (the raw
/// token itself is not kept). The key is secret, so a decoy token cannot
/// be crafted to share a victim token's entry and lend it its identity.
#[derive(Debug)]
struct TokenCache {
    sip_key: [u8; 16],
    map: FxHashMap<u128, Arc<ParsedToken>>,
    /// Which raw token (cache key) a jti belongs to: the first seen. A
    /// second, different token naming the same jti is a forgery of one of
    /// them, so it is known by its keyed hash instead: one id never stands
    /// for two raw tokens (custody, state and revocation stay each its own).
    jti_owner: FxHashMap<u128, u128>,
    routes: FxHashMap<Box<str>, Arc<str>>,
    /// Events that carried X-Forwarded-For while no proxy is trusted: their
    /// client is the peer, which is a load balancer when there is one.
    xff_untrusted: u64,
}

const TOKEN_CACHE_ENTRIES: usize = 200_000;

impl TokenCache {
    fn new(sip_key: [u8; 16]) -> TokenCache {
        TokenCache {
            sip_key,
            map: FxHashMap::default(),
            jti_owner: FxHashMap::default(),
            routes: FxHashMap::default(),
            xff_untrusted: 0,
        }
    }

    /// Route names repeat endlessly: share one allocation per route.
    fn route(&mut self, r: &str) -> Arc<str> {
        if let Some(a) = self.routes.get(r) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(r);
        if self.routes.len() >= 10_000 {
            self.routes.clear();
        }
        self.routes.insert(r.into(), a.clone());
        a
    }

    /// The parsed token (claims decoded, signature checked against the
    /// keys when configured: once per distinct token, and again after a key
    /// refresh for a token that failed).
    fn get(
        &mut self,
        token: &str,
        hasher: &TokenHasher,
        verifier: Option<&verify::Verifier>,
    ) -> Arc<ParsedToken> {
        use std::hash::Hasher;
        let mut h = siphasher::sip128::SipHasher13::new_with_key(&self.sip_key);
        h.write(token.as_bytes());
        let key = siphasher::sip128::Hasher128::finish128(&h).as_u128();
        if let Some(p) = self.map.get(&key) {
            let stale = match (verifier, &p.verdict) {
                (Some(v), Some((verify::Verdict::Failed(_), g))) => *g != v.generation(),
                _ => false,
            };
            if !stale {
                return p.clone();
            }
        }
        let mut claims = token::jwt_claims(token);
        if let Some(c) = claims.as_mut()
            && let Some(j) = &c.jti
        {
            let mut h = siphasher::sip128::SipHasher13::new_with_key(&self.sip_key);
            h.write(b"jti\0");
            h.write(j.as_bytes());
            let jk = siphasher::sip128::Hasher128::finish128(&h).as_u128();
            let owner = *self.jti_owner.entry(jk).or_insert(key);
            if owner != key {
                c.jti = None;
            }
        }
        let verdict = match (verifier, &claims) {
            (Some(v), Some(_)) => Some(v.verify(token)),
            _ => None,
        };
        let arc = |v: Option<String>| v.map(Arc::from);
        let parsed = Arc::new(match claims {
            Some(c) => ParsedToken {
                jti: c.jti.as_deref().map(|j| Arc::from(token::jti_id(j))),
                sub: arc(c.sub),
                client_id: arc(c.client_id),
                exp: c.exp.map(|e| (e * 1000.0) as i64),
                sid: c.sid,
                iss: c.iss,
                opaque_id: Arc::from(hasher.id(token)),
                nbf: c.nbf.map(|e| (e * 1000.0) as i64),
                is_jwt: true,
                verdict,
                kept: false.into(),
            },
            None => ParsedToken {
                jti: None,
                sub: None,
                client_id: None,
                exp: None,
                sid: None,
                iss: None,
                opaque_id: Arc::from(hasher.id(token)),
                nbf: None,
                is_jwt: false,
                verdict: None,
                kept: false.into(),
            },
        });
        if self.map.len() >= TOKEN_CACHE_ENTRIES {
            self.map.clear();
            self.jti_owner.clear();
        }
        self.map.insert(key, parsed.clone());
        parsed
    }
}

/// The key of a token's state: a keyed SipHash of its (namespaced) id.
pub fn token_key(sip_key: &[u8; 16], id: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = siphasher::sip::SipHasher24::new_with_key(sip_key);
    h.write(id.as_bytes());
    h.finish()
}

/// Decodes the records of one stream.
#[derive(Debug)]
pub struct Decoder {
    settings: DecodeSettings,
    format: Format,
    tokens: TokenCache,
    /// `tokenwatch explain`: what each decoded object's hashed fields said,
    /// one entry per result pushed (`None` for a drop).
    seen: Option<Vec<Option<Seen>>>,
    /// Raw tokens of the last record for custody (`keep_raw_tokens`).
    raw: Vec<RawToken>,
}

/// The values behind an event's hashed fields, kept only when explaining
/// (see [`Decoder::explain`]): the hot path keeps hashes only.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Seen {
    pub ja3: Option<String>,
    pub ja4: Option<String>,
    pub accept_language: Option<String>,
    /// The id-like path segment the event's `object` hashes.
    pub object: Option<String>,
    /// Canonical fields the record did not fill (a default or nothing was
    /// used instead).
    pub unfilled: Vec<F>,
}

/// Envelopes inside envelopes are not opened: a record is at most one
/// envelope deep.
const MAX_ENVELOPE_DEPTH: u8 = 1;

impl Decoder {
    /// The format in use (`None` while `auto` has not seen a record yet).
    pub fn format_name(&self) -> Option<&str> {
        match &self.format {
            Format::Fixed(m) | Format::Auto(Some(m)) => Some(&m.name),
            Format::Auto(None) => None,
        }
    }

    /// Events so far that carried X-Forwarded-For while `trusted_proxies`
    /// is empty: their client address is the peer (a load balancer's, when
    /// there is one), and the edge says so.
    pub fn xff_without_trusted_proxy(&self) -> u64 {
        self.tokens.xff_untrusted
    }

    /// The preset the format in use is (or is based on).
    pub fn format_base(&self) -> Option<Preset> {
        match &self.format {
            Format::Fixed(m) | Format::Auto(Some(m)) => m.base,
            Format::Auto(None) => None,
        }
    }

    /// Keep, for every result [`Decoder::decode`] pushes, the values behind
    /// its hashed fields; take them with [`Decoder::take_seen`].
    pub fn explain(mut self) -> Decoder {
        self.seen = Some(Vec::new());
        self
    }

    /// What the results pushed since the last call read (explain mode),
    /// one entry per result, in order.
    pub fn take_seen(&mut self) -> Vec<Option<Seen>> {
        self.seen.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Decode one record (one line): pushes one result per JSON object.
    pub fn decode(&mut self, record: &[u8], out: &mut Vec<Result<AccessEvent, Drop>>) {
        // Bounded to one record's tokens even if the edge never takes them.
        self.raw.clear();
        self.decode_at(record, 0, out);
    }

    /// The raw tokens the last [`Decoder::decode`] handed out for custody.
    pub fn take_raw_tokens(&mut self) -> std::vec::Drain<'_, RawToken> {
        self.raw.drain(..)
    }

    fn push(
        &mut self,
        r: Result<(AccessEvent, Option<Seen>), Drop>,
        out: &mut Vec<Result<AccessEvent, Drop>>,
    ) {
        match r {
            Ok((e, seen)) => {
                if let Some(v) = &mut self.seen {
                    v.push(seen);
                }
                out.push(Ok(e));
            }
            Err(d) => self.drop(d, out),
        }
    }

    fn drop(&mut self, d: Drop, out: &mut Vec<Result<AccessEvent, Drop>>) {
        if let Some(v) = &mut self.seen {
            v.push(None);
        }
        out.push(Err(d));
    }

    fn decode_at(&mut self, record: &[u8], depth: u8, out: &mut Vec<Result<AccessEvent, Drop>>) {
        if record.len() > self.settings.max_record_bytes {
            let d = Drop::new(
                DropReason::TooLarge,
                format!(
                    "record is over input.max_record_bytes = {} (raise it if your gateway \
                     writes records this large)",
                    self.settings.max_record_bytes
                ),
            );
            self.drop(d, out);
            return;
        }
        let text = match std::str::from_utf8(record) {
            Ok(t) => t.trim(),
            Err(e) => {
                self.drop(
                    Drop::new(DropReason::NotJson, format!("not UTF-8: {e}")),
                    out,
                );
                return;
            }
        };
        match text.as_bytes().first() {
            Some(b'[') => match serde_json::from_str::<Vec<&RawValue>>(text) {
                Ok(items) => {
                    for item in items {
                        self.decode_object(item.get(), depth, out);
                    }
                }
                Err(e) => self.drop(
                    Drop::new(DropReason::NotJson, format!("invalid JSON array: {e}")),
                    out,
                ),
            },
            Some(b'{') => self.decode_object(text, depth, out),
            Some(_) => {
                let reason = if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
                    DropReason::NotObject
                } else {
                    DropReason::NotJson
                };
                self.drop(
                    Drop::new(
                        reason,
                        "a record must be a JSON object or an array of objects",
                    ),
                    out,
                );
            }
            None => {}
        }
    }

    /// An envelope's contents, decoded as records of their own.
    fn open_envelope(
        &mut self,
        inner: envelope::Inner<'_>,
        depth: u8,
        out: &mut Vec<Result<AccessEvent, Drop>>,
    ) {
        match inner {
            envelope::Inner::Lines(lines) => {
                for l in lines {
                    self.decode_at(l.as_bytes(), depth + 1, out);
                }
            }
            envelope::Inner::Object(o) => self.decode_object(o, depth + 1, out),
        }
    }

    fn decode_object(&mut self, text: &str, depth: u8, out: &mut Vec<Result<AccessEvent, Drop>>) {
        let bad_json = |e: serde_json::Error| {
            let reason = if text.starts_with('{') {
                DropReason::NotJson
            } else {
                DropReason::NotObject
            };
            Drop::new(reason, format!("invalid JSON: {e}"))
        };
        let map = match &mut self.format {
            Format::Fixed(m) => m.clone(),
            Format::Auto(Some(m)) => m.clone(),
            Format::Auto(None) => {
                let obj = match LazyObject::parse(text) {
                    Ok(o) => o,
                    Err(e) => return self.drop(bad_json(e), out),
                };
                if depth < MAX_ENVELOPE_DEPTH
                    && let Some(inner) = envelope::open(envelope::KEYS.map(|k| obj.get(k)))
                {
                    return self.open_envelope(inner, depth, out);
                }
                let keys: Vec<&str> = obj.keys().collect();
                let Some(name) = presets::detect(&keys) else {
                    let d = Drop::new(
                        DropReason::UnknownFormat,
                        "cannot tell the gateway format from the keys; pass --format \
                         (or input.format) with a preset or a [formats.NAME] block",
                    );
                    return self.drop(d, out);
                };
                let Some(m) = FieldMap::preset(name) else {
                    return self.drop(Drop::new(DropReason::UnknownFormat, name.as_str()), out);
                };
                let m = Arc::new(m);
                self.format = Format::Auto(Some(m.clone()));
                m
            }
        };
        let mut slots: Vec<Option<&RawValue>> = vec![None; map.index.len()];
        if let Err(e) = json::parse_slots(text, &map.index, &mut slots) {
            return self.drop(bad_json(e), out);
        }
        if depth < MAX_ENVELOPE_DEPTH
            && map
                .envelope
                .iter()
                .any(|s| slots.get(usize::from(*s)).is_some_and(Option::is_some))
            && let Some(inner) = envelope::open(
                map.envelope
                    .map(|s| slots.get(usize::from(s)).copied().flatten()),
            )
        {
            return self.open_envelope(inner, depth, out);
        }
        let ext = Extract {
            slots: &slots,
            nested: std::cell::RefCell::new(Vec::new()),
            map: &map,
            settings: &self.settings,
        };
        let r = ext.event(&mut self.tokens, &mut self.raw).map(|e| {
            let seen = self.seen.as_ref().map(|_| ext.seen(&e));
            (e, seen)
        });
        self.push(r, out);
    }
}

struct Extract<'a, 'o> {
    slots: &'o [Option<&'a RawValue>],
    /// Nested objects parsed so far in this record (Kong's `request`,
    /// `request/headers`…), keyed by their address in the record.
    nested: std::cell::RefCell<Vec<(usize, LazyObject<'a>)>>,
    map: &'o FieldMap,
    settings: &'o DecodeSettings,
}

impl<'a> Extract<'a, '_> {
    fn resolve(&self, slot: u16, rest: &[PointerPart]) -> Option<&'a RawValue> {
        let mut cur = (*self.slots.get(usize::from(slot))?)?;
        for part in rest {
            let text = cur.get();
            if !text.starts_with('{') {
                return json::resolve_from(cur, std::slice::from_ref(part));
            }
            let addr = text.as_ptr() as usize;
            let mut nested = self.nested.borrow_mut();
            let pos = match nested.iter().position(|(a, _)| *a == addr) {
                Some(p) => p,
                None => {
                    nested.push((addr, LazyObject::parse(text).ok()?));
                    nested.len() - 1
                }
            };
            cur = nested.get(pos)?.1.get(&part.key)?;
        }
        Some(cur)
    }

    /// The first pointer that resolves to a non-null value, transformed.
    fn get(&self, f: F) -> Result<Option<Scalar<'a>>, Drop> {
        let Some(Some(cf)) = self.map.fields.get(f as usize) else {
            return Ok(None);
        };
        for (slot, rest) in &cf.pointers {
            let Some(raw) = self.resolve(*slot, rest) else {
                continue;
            };
            let mut v = match Scalar::from_raw(raw) {
                // A header sent more than once (Kong, APISIX: a JSON array).
                Scalar::Composite(a) if a.starts_with('[') => repeated(a, f),
                v => v,
            };
            for t in &cf.transforms {
                v = self.apply(t, v, f)?;
            }
            if v != Scalar::Null {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    fn apply(&self, t: &Transform, v: Scalar<'a>, f: F) -> Result<Scalar<'a>, Drop> {
        let name = f.as_str();
        Ok(match (t, v) {
            (_, Scalar::Null) => Scalar::Null,
            (Transform::DashNull, Scalar::Str(s)) if s.trim().is_empty() || s.trim() == "-" => {
                Scalar::Null
            }
            (Transform::StripBearer, Scalar::Str(s)) => Scalar::Str(match s {
                Cow::Borrowed(b) => Cow::Borrowed(token::strip_bearer(b)),
                Cow::Owned(o) => Cow::Owned(token::strip_bearer(&o).to_string()),
            }),
            (Transform::JwtClaim(c), Scalar::Str(s)) => {
                match token::jwt_claims(token::strip_bearer(&s)) {
                    Some(claims) => match c.as_str() {
                        "jti" => claims
                            .jti
                            .map(|v| Scalar::Str(v.into()))
                            .unwrap_or(Scalar::Null),
                        "sub" => claims
                            .sub
                            .map(|v| Scalar::Str(v.into()))
                            .unwrap_or(Scalar::Null),
                        "client_id" | "azp" | "cid" | "appid" => claims
                            .client_id
                            .map(|v| Scalar::Str(v.into()))
                            .unwrap_or(Scalar::Null),
                        "iss" => claims
                            .iss
                            .map(|v| Scalar::Str(v.into()))
                            .unwrap_or(Scalar::Null),
                        "exp" => claims.exp.map(Scalar::Num).unwrap_or(Scalar::Null),
                        _ => Scalar::Null,
                    },
                    None => Scalar::Null,
                }
            }
            (Transform::Hash, Scalar::Str(s)) => {
                Scalar::Str(Cow::Owned(self.settings.hasher.id(s.trim())))
            }
            (Transform::RequestLineMethod, Scalar::Str(s)) => match request_line(&s) {
                Some((m, _)) => Scalar::Str(Cow::Owned(m.to_string())),
                None => Scalar::Str(s),
            },
            (Transform::RequestLinePath, Scalar::Str(s)) => match request_line(&s) {
                Some((_, t)) => Scalar::Str(Cow::Owned(t.to_string())),
                None => Scalar::Str(s),
            },
            (Transform::HostPort, Scalar::Str(s)) => match parse_ip_loose(&s) {
                Some(ip) => Scalar::Str(Cow::Owned(ip.to_string())),
                None => Scalar::Str(s),
            },
            (Transform::XffRightmostUntrusted, Scalar::Str(s)) => {
                match self.client_ip(None, Some(&s)) {
                    Ok(ip) => Scalar::Str(Cow::Owned(ip.to_string())),
                    Err(e) => return Err(e),
                }
            }
            (Transform::EpochMs | Transform::EpochS | Transform::EpochNs, v) => {
                let n = match &v {
                    Scalar::Num(n) => *n,
                    Scalar::Str(s) => s.trim().parse::<f64>().map_err(|_| {
                        Drop::new(
                            DropReason::BadTimestamp,
                            format!("{name}: `{s}` is not an epoch number"),
                        )
                    })?,
                    other => {
                        return Err(Drop::new(
                            DropReason::WrongType,
                            format!(
                                "{name}: expected an epoch number, got {}",
                                other.type_name()
                            ),
                        ));
                    }
                };
                let ms = match t {
                    Transform::EpochMs => n,
                    Transform::EpochS => n * 1000.0,
                    _ => n / 1_000_000.0,
                };
                Scalar::Num(ms.round())
            }
            (Transform::Rfc3339, Scalar::Str(s)) => {
                Scalar::Num(parse_rfc3339(&s).ok_or_else(|| {
                    Drop::new(
                        DropReason::BadTimestamp,
                        format!("{name}: `{s}` is not an RFC 3339 time"),
                    )
                })? as f64)
            }
            (_, v @ Scalar::Composite(_)) | (_, v @ Scalar::Bool(_)) => {
                return Err(Drop::new(
                    DropReason::WrongType,
                    format!("{name}: expected a scalar, got {}", v.type_name()),
                ));
            }
            (_, v) => v,
        })
    }

    fn string(&self, f: F) -> Result<Option<Cow<'a, str>>, Drop> {
        match self.get(f)? {
            None => Ok(None),
            Some(Scalar::Str(s)) => Ok(Some(s)),
            Some(Scalar::Num(n)) => Ok(Some(Cow::Owned(fmt_num(n)))),
            Some(other) => Err(Drop::new(
                DropReason::WrongType,
                format!(
                    "{}: expected a string, got {}",
                    f.as_str(),
                    other.type_name()
                ),
            )),
        }
    }

    fn number(&self, f: F) -> Result<Option<f64>, Drop> {
        match self.get(f)? {
            None => Ok(None),
            Some(Scalar::Num(n)) => Ok(Some(n)),
            Some(Scalar::Str(s)) if s.trim() == "-" || s.trim().is_empty() => Ok(None),
            Some(Scalar::Str(s)) => s.trim().parse::<f64>().map(Some).map_err(|_| {
                Drop::new(
                    DropReason::WrongType,
                    format!("{}: `{s}` is not a number", f.as_str()),
                )
            }),
            Some(other) => Err(Drop::new(
                DropReason::WrongType,
                format!(
                    "{}: expected a number, got {}",
                    f.as_str(),
                    other.type_name()
                ),
            )),
        }
    }

    fn timestamp(&self) -> Result<i64, Drop> {
        let v = self.get(F::Timestamp)?.ok_or_else(|| {
            Drop::new(
                DropReason::MissingTimestamp,
                format!("no timestamp in format `{}`", self.map.name),
            )
        })?;
        let ms = match v {
            Scalar::Num(n) => epoch_auto(n),
            Scalar::Str(s) => match s.trim().parse::<f64>() {
                Ok(n) => epoch_auto(n),
                Err(_) => parse_rfc3339(&s).ok_or_else(|| {
                    Drop::new(
                        DropReason::BadTimestamp,
                        format!("timestamp: `{s}` is neither epoch nor RFC 3339"),
                    )
                })?,
            },
            other => {
                return Err(Drop::new(
                    DropReason::WrongType,
                    format!(
                        "timestamp: expected a number or string, got {}",
                        other.type_name()
                    ),
                ));
            }
        };
        // Years 2000..2200: anything else is a unit mistake, not an event.
        if !(946_684_800_000..7_258_118_400_000).contains(&ms) {
            return Err(Drop::new(
                DropReason::BadTimestamp,
                format!("timestamp: {ms} ms is out of range"),
            ));
        }
        Ok(ms)
    }

    /// Right-most address of `xff` + `peer` that is not a trusted proxy.
    fn client_ip(&self, peer: Option<&str>, xff: Option<&str>) -> Result<IpAddr, Drop> {
        let mut hops: Vec<IpAddr> = Vec::with_capacity(4);
        if let Some(x) = xff {
            for part in x
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty() && *p != "-" && *p != "unknown")
            {
                match parse_ip_loose(part) {
                    Some(ip) => hops.push(ip),
                    None => {
                        return Err(Drop::new(
                            DropReason::BadIp,
                            format!("forwarded_for: `{part}` is not an IP"),
                        ));
                    }
                }
            }
        }
        if let Some(p) = peer {
            match parse_ip_loose(p) {
                Some(ip) => hops.push(ip),
                None => {
                    return Err(Drop::new(
                        DropReason::BadIp,
                        format!("peer_ip: `{p}` is not an IP"),
                    ));
                }
            }
        }
        let trusted = |ip: &IpAddr| self.settings.trusted.iter().any(|n| n.contains(ip));
        if let Some(ip) = hops.iter().rev().find(|ip| !trusted(ip)) {
            return Ok(*ip);
        }
        hops.first().copied().ok_or_else(|| {
            Drop::new(
                DropReason::MissingIp,
                "no client address (peer_ip / forwarded_for)",
            )
        })
    }

    fn event(
        &self,
        cache: &mut TokenCache,
        raw_out: &mut Vec<RawToken>,
    ) -> Result<AccessEvent, Drop> {
        let ts = self.timestamp()?;
        let peer = self.string(F::PeerIp)?;
        let xff = self.string(F::ForwardedFor)?;
        let client_ip = self.client_ip(peer.as_deref(), xff.as_deref())?;
        if self.settings.trusted.is_empty()
            && xff
                .as_deref()
                .is_some_and(|x| x.split(',').any(|p| parse_ip_loose(p.trim()).is_some()))
        {
            cache.xff_untrusted += 1;
        }

        let authorization = self.string(F::Authorization)?;
        // A Basic credential is a password: known by its keyed hash as a
        // credential, never parsed as a token or kept in custody.
        let (auth, basic) = match authorization.as_deref() {
            Some(a) if is_basic(a) => (None, Some(a.trim())),
            a => (
                a.map(token::strip_bearer).filter(|t| !token::is_absent(t)),
                None,
            ),
        };
        let verifier = self.settings.verifier.as_deref();
        let parsed = auth.map(|a| cache.get(a, &self.settings.hasher, verifier));
        let mut token_id: Option<Arc<str>> = None;
        let mut identity = IdentityKind::Token;
        for ident in &self.settings.identity {
            token_id = match ident {
                TokenIdentity::Jwt => parsed.as_ref().and_then(|c| c.jti.clone()),
                TokenIdentity::JtiField => self
                    .string(F::Jti)?
                    .filter(|s| !token::is_absent(s))
                    .map(|s| Arc::from(token::jti_id(&s))),
                TokenIdentity::Credential => {
                    identity = if self.settings.credential_per_token {
                        IdentityKind::Token
                    } else {
                        IdentityKind::Credential
                    };
                    match self.string(F::Credential)?.filter(|s| !token::is_absent(s)) {
                        Some(s) => Some(Arc::from(format!("c:{s}"))),
                        None => {
                            basic.map(|b| Arc::from(format!("c:{}", self.settings.hasher.id(b))))
                        }
                    }
                }
                TokenIdentity::Consumer => {
                    identity = IdentityKind::Consumer;
                    self.string(F::Consumer)?
                        .filter(|s| !token::is_absent(s))
                        .map(|s| Arc::from(format!("u:{s}")))
                }
                TokenIdentity::OpaqueHash => {
                    let raw = self.string(F::Token)?;
                    match raw
                        .as_deref()
                        .map(token::strip_bearer)
                        .filter(|t| !token::is_absent(t))
                    {
                        Some(t) => Some(
                            cache
                                .get(t, &self.settings.hasher, verifier)
                                .opaque_id
                                .clone(),
                        ),
                        None => parsed.as_ref().map(|p| p.opaque_id.clone()),
                    }
                }
            };
            if token_id.is_some() {
                if !matches!(ident, TokenIdentity::Credential | TokenIdentity::Consumer) {
                    identity = IdentityKind::Token;
                }
                // (a shared credential stays `Credential`, a consumer `Consumer`)
                break;
            }
        }
        let token_id = token_id.ok_or_else(|| {
            Drop::new(
                DropReason::NoToken,
                format!(
                    "no identity in this record (authorization, jti, credential, token or \
                     consumer field of format `{}`)",
                    self.map.name
                ),
            )
            .with_hint(self.map.no_token_hint())
        })?;

        let subject = match parsed.as_ref().and_then(|c| c.sub.clone()) {
            Some(s) => Some(s),
            None => self
                .string(F::Subject)?
                .filter(|s| !token::is_absent(s))
                .map(|s| Arc::from(s.as_ref())),
        };
        let client_id = match parsed.as_ref().and_then(|c| c.client_id.clone()) {
            Some(s) => Some(s),
            None => self
                .string(F::ClientId)?
                .filter(|s| !token::is_absent(s))
                .map(|s| Arc::from(s.as_ref())),
        };
        let status = self.number(F::Status)?.unwrap_or(0.0);
        if !(0.0..1000.0).contains(&status) {
            return Err(Drop::new(
                DropReason::WrongType,
                format!("status: {status} is not an HTTP status"),
            ));
        }
        let status = status as u16;
        // The gateway refused the credential (401/407 by default, or Envoy's
        // ext_authz denial flag): the record proves nothing about who sent it.
        let rejected = self.settings.rejected_statuses.contains(&status)
            || self
                .string(F::ResponseFlags)?
                .is_some_and(|f| f.split(',').any(|x| x.trim() == "UAEX"))
            || match (verifier, &parsed) {
                // With keys: a JWT is believed only if it verifies and is
                // valid at the event's time.
                (Some(v), Some(p)) if p.is_jwt => {
                    !matches!(p.verdict, Some((verify::Verdict::Verified, _)))
                        || p.exp
                            .is_some_and(|exp| exp.saturating_add(v.leeway_ms) < ts)
                        || p.nbf
                            .is_some_and(|nbf| ts.saturating_add(v.leeway_ms) < nbf)
                }
                _ => false,
            };
        let token_exp = parsed.as_ref().and_then(|c| c.exp);
        if !rejected
            && self.settings.keep_raw
            && let (Some(raw), Some(p)) = (auth, &parsed)
            && !p.kept.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            // Once per distinct token, for the edge to seal.
            raw_out.push(RawToken {
                token_id: token_id.clone(),
                raw: zeroize::Zeroizing::new(raw.to_string()),
                facts: crate::custody::TokenFacts {
                    session_id: p.sid.clone(),
                    issuer: p.iss.clone(),
                    exp_ms: token_exp,
                },
                exp_ms: token_exp,
                ts,
            });
        }

        let full_path = self.string(F::Path)?.unwrap_or(Cow::Borrowed("/"));
        let (path, query) = match full_path.split_once('?') {
            Some((p, q)) => (p, q),
            None => (full_path.as_ref(), ""),
        };
        let route = match self.string(F::Route)? {
            Some(r) if !r.is_empty() => r,
            _ => Cow::Owned(template_path(path)),
        };
        let bytes = self.number(F::BytesSent)?.map(|b| b.max(0.0) as u64);
        let opt = |f: F| -> Result<Option<Box<str>>, Drop> {
            Ok(self.string(f)?.map(|s| Box::from(s.as_ref())))
        };
        let hashed = |f: F| -> Result<Option<u32>, Drop> {
            Ok(self.string(f)?.and_then(|s| crate::event::tls_hash(&s)))
        };
        Ok(AccessEvent {
            ts,
            token_key: token_key(&self.settings.sip_key, &token_id),
            token: TokenId(token_id),
            identity,
            rejected,
            subject,
            client_id,
            token_exp,
            client_ip,
            method: method_name(self.string(F::Method)?.as_deref()),
            route: cache.route(&route),
            object: object_id(path),
            page: page_of(query),
            path: redact_path(path).as_ref().into(),
            status,
            bytes_sent: bytes,
            user_agent: opt(F::UserAgent)?,
            accept_language: self
                .string(F::AcceptLanguage)?
                .and_then(|s| crate::event::lang_tag(&s)),
            ja3: hashed(F::Ja3)?,
            ja4: hashed(F::Ja4)?,
        })
    }
}

impl Extract<'_, '_> {
    /// The values behind `e`'s hashed fields, read by the same getters
    /// that built `e` (so they succeed again: explaining never turns an
    /// event into a drop).
    fn seen(&self, e: &AccessEvent) -> Seen {
        let s = |f: F| -> Option<String> {
            self.string(f)
                .ok()
                .flatten()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty() && v != "-")
        };
        let mut seen = Seen {
            ja3: s(F::Ja3),
            ja4: s(F::Ja4),
            accept_language: s(F::AcceptLanguage),
            object: object_segment(&e.path).map(str::to_string),
            unfilled: Vec::new(),
        };
        for f in [
            F::Method,
            F::Path,
            F::Route,
            F::Status,
            F::BytesSent,
            F::ForwardedFor,
        ] {
            if self.get(f).ok().flatten().is_none() {
                seen.unfilled.push(f);
            }
        }
        for (name, filled) in [
            (F::UserAgent, e.user_agent.is_some()),
            (F::Subject, e.subject.is_some()),
            (F::ClientId, e.client_id.is_some()),
            (F::AcceptLanguage, seen.accept_language.is_some()),
            (F::Ja3, seen.ja3.is_some()),
            (F::Ja4, seen.ja4.is_some()),
        ] {
            if !filled {
                seen.unfilled.push(name);
            }
        }
        seen
    }
}

/// A header the client sent more than once, as Kong and APISIX log it (a
/// JSON array, in the order sent): X-Forwarded-For hops are joined, as a
/// proxy joins repeated lines; any other field takes the first value, the
/// one the gateway's own header lookup returns.
fn repeated(array: &str, f: F) -> Scalar<'_> {
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(array) else {
        return Scalar::Composite(array);
    };
    if f == F::ForwardedFor {
        let hops: Vec<String> = items
            .iter()
            .filter_map(|i| match Scalar::from_raw(i) {
                Scalar::Str(s) => Some(s.into_owned()),
                _ => None,
            })
            .collect();
        return Scalar::Str(Cow::Owned(hops.join(", ")));
    }
    items.first().map_or(Scalar::Null, |i| Scalar::from_raw(i))
}

/// `Authorization: Basic …`
fn is_basic(v: &str) -> bool {
    v.trim_start()
        .get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case("basic "))
}

/// `GET /path?q HTTP/1.1` → (`GET`, `/path?q`); `None` for anything that is
/// not a request line (a bare path or method).
fn request_line(s: &str) -> Option<(&str, &str)> {
    let (method, rest) = s.trim().split_once(' ')?;
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let rest = rest.trim();
    let target = match rest.rsplit_once(' ') {
        Some((t, proto)) if proto.starts_with("HTTP/") => t.trim_end(),
        _ => rest,
    };
    (!target.is_empty()).then_some((method, target))
}

fn method_name(m: Option<&str>) -> &'static str {
    match m.map(str::trim) {
        None | Some("GET") | Some("get") => "GET",
        Some("POST") | Some("post") => "POST",
        Some("PUT") | Some("put") => "PUT",
        Some("PATCH") | Some("patch") => "PATCH",
        Some("DELETE") | Some("delete") => "DELETE",
        Some("HEAD") | Some("head") => "HEAD",
        Some("OPTIONS") | Some("options") => "OPTIONS",
        Some(_) => "OTHER",
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// Guess the unit of an epoch number by its magnitude.
fn epoch_auto(n: f64) -> i64 {
    let ms = if n > 1e17 {
        n / 1e6
    } else if n > 1e14 {
        n / 1e3
    } else if n > 1e11 {
        n
    } else {
        n * 1e3
    };
    ms.round() as i64
}

pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    // AWS `requestTime`: 01/Jan/2026:00:00:00 +0000
    chrono::DateTime::parse_from_str(s, "%d/%b/%Y:%H:%M:%S %z")
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Parse `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`.
pub fn parse_ip_loose(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

fn is_id_segment(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    if digits == b.len() {
        return true;
    }
    let hexish = b.iter().all(|c| c.is_ascii_hexdigit() || *c == b'-');
    (hexish && b.len() >= 8 && digits > 0) || (b.len() >= 16 && digits * 4 >= b.len())
}

/// A path segment that looks like a credential (a reset or magic-link
/// token, a JWT, an API key): long, of token characters, and mixing
/// classes no word or slug mixes. It is never kept: `{secret}`.
fn is_secret_segment(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.len() < 20
        || !b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.~=+%".contains(c))
    {
        return false;
    }
    let upper = b.iter().any(u8::is_ascii_uppercase);
    let lower = b.iter().any(u8::is_ascii_lowercase);
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let classes = usize::from(upper) + usize::from(lower) + usize::from(digits > 0);
    (classes == 3 && digits >= 2) || seg.starts_with("eyJ")
}

/// The path with credential-like segments replaced by `{secret}`.
fn redact_path(path: &str) -> Cow<'_, str> {
    if !path.split('/').any(is_secret_segment) {
        return Cow::Borrowed(path);
    }
    let segs: Vec<&str> = path
        .split('/')
        .map(|s| if is_secret_segment(s) { "{secret}" } else { s })
        .collect();
    Cow::Owned(segs.join("/"))
}

/// `/v1/accounts/10023/orders` → `/v1/accounts/{id}/orders`.
pub fn template_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for seg in path.split('/').skip(1) {
        out.push('/');
        out.push_str(if is_secret_segment(seg) {
            "{secret}"
        } else if is_id_segment(seg) {
            "{id}"
        } else {
            seg
        });
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The last id-like path segment: the object a request addresses (a
/// credential-like segment is not an object).
fn object_segment(path: &str) -> Option<&str> {
    path.rsplit('/')
        .find(|s| is_id_segment(s) && !is_secret_segment(s))
}

/// Hash of [`object_segment`].
fn object_id(path: &str) -> Option<u64> {
    object_segment(path).map(|s| stable_hash(s.as_bytes()))
}

/// Pagination depth from `page=N` or `offset=N&limit=M`.
fn page_of(query: &str) -> Option<u32> {
    let mut offset = None;
    let mut limit = None;
    for kv in query.split('&') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "page" | "p" | "page_number" => return v.parse().ok(),
            "offset" | "start" => offset = v.parse::<u64>().ok(),
            "limit" | "per_page" | "page_size" | "size" => limit = v.parse::<u64>().ok(),
            _ => {}
        }
    }
    match (offset, limit) {
        (Some(o), Some(l)) if l > 0 => Some((o / l + 1).min(u64::from(u32::MAX)) as u32),
        (Some(o), _) => Some((o / 100 + 1).min(u64::from(u32::MAX)) as u32),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)]
mod tests {
    use super::*;

    #[test]
    fn templates_ids_and_reads_pages() {
        assert_eq!(
            template_path("/v1/accounts/10023/orders"),
            "/v1/accounts/{id}/orders"
        );
        assert_eq!(
            template_path("/v1/u/7b11c9e2-5a4d-4c3b-9d8e-0f1a2b3c4d5e"),
            "/v1/u/{id}"
        );
        assert_eq!(template_path("/v1/records"), "/v1/records");
        assert_eq!(page_of("page=9"), Some(9));
        assert_eq!(page_of("offset=200&limit=50"), Some(5));
        assert_eq!(page_of("q=x"), None);
        assert!(object_id("/v1/accounts/10023").is_some());
        assert!(object_id("/v1/records").is_none());
    }

    #[test]
    fn splits_request_lines_and_leaves_other_values() {
        assert_eq!(
            request_line("GET /v1/records?page=1 HTTP/1.1"),
            Some(("GET", "/v1/records?page=1"))
        );
        assert_eq!(request_line("DELETE /a HTTP/2.0"), Some(("DELETE", "/a")));
        assert_eq!(
            request_line("GET /no-protocol"),
            Some(("GET", "/no-protocol"))
        );
        assert_eq!(request_line("/v1/records"), None);
        assert_eq!(request_line("GET"), None);
        assert_eq!(request_line("get /lower HTTP/1.1"), None);
        assert_eq!(request_line("GЕT /cyrillic-e HTTP/1.1"), None);
    }

    #[test]
    fn repeated_headers_join_hops_and_take_the_first_value_otherwise() {
        let xff = repeated(r#"["198.51.100.40","10.0.0.7"]"#, F::ForwardedFor);
        assert_eq!(xff, Scalar::Str("198.51.100.40, 10.0.0.7".into()));
        let ua = repeated(r#"["app/1.0","CFNetwork/1410"]"#, F::UserAgent);
        assert_eq!(ua, Scalar::Str("app/1.0".into()));
        assert_eq!(repeated("[]", F::UserAgent), Scalar::Null);
        assert!(matches!(
            repeated("[1,", F::UserAgent),
            Scalar::Composite(_)
        ));
    }

    #[test]
    fn basic_is_recognised_in_any_case_and_nothing_else_is() {
        assert!(is_basic("Basic dXNlcjpwYXNz"));
        assert!(is_basic("  basic dXNlcjpwYXNz"));
        assert!(!is_basic("Bearer abc"));
        assert!(!is_basic("Basi"));
        assert!(!is_basic("Basicé"));
    }

    #[test]
    fn envelopes_open_only_when_they_are_envelopes() {
        let raw = |s: &str| serde_json::value::RawValue::from_string(s.to_string()).unwrap();
        let events = raw(r#"[{"id":"1","timestamp":1,"message":"{\"a\":1}"},{"message":"x"}]"#);
        let data = raw(r#""DATA_MESSAGE""#);
        let control = raw(r#""CONTROL_MESSAGE""#);
        match envelope::open([Some(&events), Some(&data), None]) {
            Some(envelope::Inner::Lines(l)) => assert_eq!(l, vec![r#"{"a":1}"#, "x"]),
            _ => panic!("a data message holds lines"),
        }
        match envelope::open([Some(&events), Some(&control), None]) {
            Some(envelope::Inner::Lines(l)) => assert!(l.is_empty()),
            _ => panic!("a control message holds none"),
        }
        // logEvents without messageType, or of the wrong shape: not an envelope.
        assert!(envelope::open([Some(&events), None, None]).is_none());
        let bad = raw(r#"[{"no_message":1}]"#);
        assert!(envelope::open([Some(&bad), Some(&data), None]).is_none());
        let tyk = raw(r#"{"method":"GET"}"#);
        assert!(matches!(
            envelope::open([None, None, Some(&tyk)]),
            Some(envelope::Inner::Object(_))
        ));
        assert!(envelope::open([None, None, Some(&raw("\"s\""))]).is_none());
    }

    /// Issue 14, point 16: a token in a path never travels in the route.
    #[test]
    fn credential_like_segments_are_redacted_not_kept() {
        for (path, route) in [
            ("/reset/Zx8kP2mQ9vR4tL7wB1nC5dF3", "/reset/{secret}"),
            (
                "/magic/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln/open",
                "/magic/{secret}/open",
            ),
            ("/v1/accounts/10023", "/v1/accounts/{id}"),
            ("/v1/u/7b11c9e2-5a4d-4c3b-9d8e-0f1a2b3c4d5e", "/v1/u/{id}"),
            (
                "/blog/a-very-long-article-title-with-words",
                "/blog/a-very-long-article-title-with-words",
            ),
            ("/v1/ListAllTheThingsNow", "/v1/ListAllTheThingsNow"),
        ] {
            assert_eq!(template_path(path), route, "{path}");
        }
        assert_eq!(
            redact_path("/reset/Zx8kP2mQ9vR4tL7wB1nC5dF3"),
            "/reset/{secret}"
        );
        assert_eq!(object_segment("/reset/Zx8kP2mQ9vR4tL7wB1nC5dF3"), None);
        assert_eq!(object_segment("/v1/accounts/10023"), Some("10023"));
        assert_eq!(
            token::invalid_token_id("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"),
            Some("that is a raw JWT, not a token id: use the id the finding shows")
        );
        assert!(token::invalid_token_id("Bearer abc").is_some());
        assert!(token::invalid_token_id("h:0123456789abcdef").is_none());
        assert!(
            token::invalid_token_id("AT.fH3kT9s2m5QwXyZ1aB2cD3eF4gH5iJ6kL7mN8oP9qR0").is_none()
        );
    }

    #[test]
    fn parses_loose_ips() {
        assert_eq!(
            parse_ip_loose("198.51.100.23:51544"),
            "198.51.100.23".parse().ok()
        );
        assert_eq!(
            parse_ip_loose("[2001:db8::1]:40112"),
            "2001:db8::1".parse().ok()
        );
        assert_eq!(parse_ip_loose("nope"), None);
    }
}
