//! `[input]`, `[identity]`, `[geoip]`, `[network_classes]` and
//! `[formats.NAME]`: how records are read and whom a token belongs to.

use super::*;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// A preset (`envoy`, `kong`, `apisix`, `nginx`, `traefik`, `aws_apigw`,
    /// `tyk`), the name of a `[formats.NAME]` block, or `auto` (detect per file).
    pub format: String,
    /// Proxies whose X-Forwarded-For entries are trusted: the client IP is the
    /// right-most address not in these networks. Empty by default: a private
    /// peer address (a VPN user, a pod) is not a proxy, and trusting one
    /// lets it choose its apparent address. List your load balancers.
    pub trusted_proxies: Vec<IpNet>,
    /// Records longer than this are dropped as `too_large`.
    pub max_record_bytes: usize,
    /// Order in which token identities are tried: `jwt` (the `jti` of a JWT
    /// bearer token), `jti_field`, `credential` (a credential id field, or
    /// the keyed hash of a Basic or API-key credential), `opaque_hash`
    /// (keyed hash of an opaque token), `consumer` (the gateway's consumer
    /// name: every credential of a user or app; last resort).
    pub token_identity: Vec<TokenIdentity>,
    /// Response statuses that mean the gateway rejected the credential
    /// (default 401 and 407; Envoy's `UAEX` ext_authz flag always counts).
    /// Such records are counted but never teach, open incidents, spend
    /// budgets or reach a revoker: anyone can send a forged token and be
    /// refused.
    pub rejected_statuses: Vec<u16>,
    /// What a `credential` identity stands for: `shared` (default: a key,
    /// consumer or OAuth app that many tokens and people may use, so it gets
    /// baselines, siphoning and enumeration but never "replayed token" or
    /// travel), or `per_token` (every credential is one token on one device,
    /// e.g. Kong key-auth with one key per install).
    pub credential_kind: CredentialKind,
    /// Key for the HMAC-SHA256 of opaque tokens. Prefer `token_hash_key_env`.
    pub token_hash_key: Option<String>,
    /// Environment variable holding the HMAC key (used when set).
    pub token_hash_key_env: String,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            format: "auto".into(),
            trusted_proxies: Vec::new(),
            max_record_bytes: 1 << 20,
            token_identity: vec![
                TokenIdentity::Jwt,
                TokenIdentity::JtiField,
                TokenIdentity::Credential,
                TokenIdentity::OpaqueHash,
                TokenIdentity::Consumer,
            ],
            rejected_statuses: vec![401, 407],
            credential_kind: CredentialKind::Shared,
            token_hash_key: None,
            token_hash_key_env: "TOKENWATCH_HASH_KEY".into(),
        }
    }
}

/// `[identity]`: verify JWT access tokens against the issuer's keys. Without
/// keys a JWT's claims are read unverified (the gateway verified it, unless
/// the route is unauthenticated); with keys, a JWT that does not verify is
/// treated as a rejected request: counted, never learnt from or acted on.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// The JWKS: `file:/path/jwks.json` (relative to the config file) or an
    /// `https://` URL (fetched at start, refreshed every `refresh_secs`;
    /// plain `http://` only to 127.0.0.1, for tests).
    pub jwks: Option<String>,
    /// Signature algorithms accepted (`none` never is; HMAC ones only if
    /// listed here and the JWKS carries the secret).
    pub algorithms: Vec<String>,
    /// Accepted `iss` values; empty: any.
    pub issuers: Vec<String>,
    /// Accepted `aud` values (one must match); empty: not checked.
    pub audiences: Vec<String>,
    /// Clock-skew tolerance for `exp` and `nbf`, checked against the
    /// gateway's event time (so a replay gives the same verdicts).
    pub leeway_secs: u64,
    /// How often a JWKS URL is fetched again (key rotation).
    pub refresh_secs: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            jwks: None,
            algorithms: [
                "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway_secs: 60,
            refresh_secs: 3600,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    Shared,
    PerToken,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenIdentity {
    Jwt,
    JtiField,
    Credential,
    OpaqueHash,
    Consumer,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeoIpConfig {
    /// GeoLite2/GeoIP2 City database (`.mmdb`).
    pub city: Option<String>,
    /// GeoLite2/GeoIP2 ASN database (`.mmdb`).
    pub asn: Option<String>,
    /// Entries in the IP → result cache (0 = 262144).
    pub cache_entries: usize,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkClassesConfig {
    /// ASNs of home broadband networks.
    pub residential: Vec<u32>,
    /// ASNs of mobile carriers (addresses shared, places coarse).
    pub mobile: Vec<u32>,
    /// ASNs of hosting and cloud providers.
    pub hosting: Vec<u32>,
    /// ASNs of commercial VPN and relay exits.
    pub vpn: Vec<u32>,
    /// Class of ASNs in no list and with no telling organisation name.
    pub default: Option<NetClass>,
}

/// A custom format: canonical field → where to find it. Read through
/// [`RawFormat`], so that every unknown name in a block is reported, not
/// only the first.
#[derive(Clone, Debug, Default)]
pub struct FormatConfig {
    /// Start from a preset and override some fields.
    pub base: Option<Preset>,
    /// Canonical field → source (see README "Custom formats").
    pub fields: BTreeMap<Field, FieldSource>,
    /// Names the block used that are not known: (key under the block,
    /// message); reported by [`Config::validate`].
    pub(super) unknown: Vec<(String, String)>,
}

/// A `[formats.NAME]` block as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFormat {
    #[serde(default)]
    base: Option<String>,
    fields: BTreeMap<String, RawSource>,
}

/// One `fields.NAME = { from, transforms }` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    from: Vec<String>,
    #[serde(default)]
    transforms: Vec<String>,
}

impl<'de> Deserialize<'de> for FormatConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawFormat::deserialize(d)?;
        let mut f = FormatConfig::default();
        if let Some(b) = raw.base {
            match Preset::parse(&b) {
                Some(p) => f.base = Some(p),
                None => f.unknown.push((
                    "base".into(),
                    format!("unknown preset `{b}`; known: {}", Preset::NAMES.join(", ")),
                )),
            }
        }
        for (name, src) in raw.fields {
            let key = format!("fields.{name}");
            let Some(field) = Field::parse(&name) else {
                f.unknown.push((
                    key,
                    format!(
                        "unknown canonical field `{name}`; known: {}",
                        Field::NAMES.join(", ")
                    ),
                ));
                continue;
            };
            let mut transforms = Vec::new();
            for t in &src.transforms {
                match Transform::parse(t) {
                    Ok(t) => transforms.push(t),
                    Err(m) => f.unknown.push((key.clone(), m)),
                }
            }
            f.fields.insert(
                field,
                FieldSource {
                    from: src.from,
                    transforms,
                },
            );
        }
        Ok(f)
    }
}
