//! Token identity: claims of the real IdPs' access tokens, read leniently;
//! `strip_bearer` total on any text; jti namespacing.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

const SAMPLE: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLmNvbS8iLCJzdWIiOiJ1LTEwNDQyIiwiY2xpZW50X2lkIjoid2ViLWFwcCIsImp0aSI6IjdiMTFjOWUyLTVhNGQtNGMzYi05ZDhlLTBmMWEyYjNjNGQ1ZSIsImlhdCI6MTc2NzIyNTAwMCwiZXhwIjoxNzY3MjI4NjAwLCJzY29wZSI6InJlY29yZHM6cmVhZCJ9.c2lnbmF0dXJl";

fn jwt(claims: &Value) -> String {
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[test]
fn reads_claims_of_the_sample_jwt() {
    let c = jwt_claims(strip_bearer(&format!("Bearer {SAMPLE}"))).unwrap();
    assert_eq!(
        c.jti.as_deref(),
        Some("7b11c9e2-5a4d-4c3b-9d8e-0f1a2b3c4d5e")
    );
    assert_eq!(c.sub.as_deref(), Some("u-10442"));
    assert_eq!(c.client_id.as_deref(), Some("web-app"));
    assert_eq!(c.exp, Some(1767228600.0));
}

#[test]
fn opaque_hash_is_keyed_and_stable() {
    let a = TokenHasher::new(b"k1");
    let b = TokenHasher::new(b"k2");
    assert_eq!(a.id("tok"), a.id("tok"));
    assert_ne!(a.id("tok"), b.id("tok"));
    assert_eq!(a.id("tok").len(), 18);
    assert!(jwt_claims("not.a.jwt").is_none());
    assert!(is_absent("REDACTED") && is_absent("-") && !is_absent("abc"));
    assert_ne!(a.subkey::<16>(b"x"), a.subkey::<16>(b"y"));
    assert_ne!(a.subkey::<32>(b"x"), b.subkey::<32>(b"x"));
}

/// The made-up tokens of `../shared/samples/upstream/jwts.json`, shaped as
/// Keycloak (client_id absent, `azp`), Auth0 (`aud` array, no jti) and Okta
/// (`cid`, `scp` array, `AT.` jti).
#[test]
fn upstream_shaped_tokens_keep_their_identity() {
    let kc = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6InNhbXBsZS1raWQtMSJ9.eyJleHAiOjE3NjcyMjkyMDAsImlhdCI6MTc2NzIyNTYwMCwianRpIjoiMGI0ZjNjMmUtOGExZC00ZTVmLTljN2ItMmQzZTRmNWE2YjdjIiwiaXNzIjoiaHR0cHM6Ly9zc28uZXhhbXBsZS5jb20vcmVhbG1zL2FjbWUiLCJhdWQiOiJhY2NvdW50Iiwic3ViIjoiZjNjMWQyZTQtNWI2YS00YzdkLThlOWYtMGExYjJjM2Q0ZTVmIiwidHlwIjoiQmVhcmVyIiwiYXpwIjoid2ViLXBvcnRhbCIsInNpZCI6IjlhOGI3YzZkLTVlNGYtNGEzYi0yYzFkLTBlOWY4YTdiNmM1ZCIsInNjb3BlIjoib3BlbmlkIHByb2ZpbGUgZW1haWwifQ.bm90LWEtcmVhbC1zaWduYXR1cmUtanVzdC1ieXRlcy1mb3Itc2hhcGU";
    let c = jwt_claims(kc).unwrap();
    assert_eq!(
        c.jti.as_deref(),
        Some("0b4f3c2e-8a1d-4e5f-9c7b-2d3e4f5a6b7c")
    );
    assert_eq!(c.client_id.as_deref(), Some("web-portal"));
    assert_eq!(c.aud, vec!["account".to_string()]);
    let ok = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6InNhbXBsZS1raWQtMSJ9.eyJ2ZXIiOjEsImp0aSI6IkFULmZIM2tUOXMybTVRd1h5WjFhQjJjRDNlRjRnSDVpSjZrTDdtTjhvUDlxUjAiLCJpc3MiOiJodHRwczovL2FjbWUub2t0YS5jb20vb2F1dGgyL2RlZmF1bHQiLCJhdWQiOiJhcGk6Ly9kZWZhdWx0IiwiaWF0IjoxNzY3MjI1NjAwLCJleHAiOjE3NjcyMjkyMDAsImNpZCI6IjBvYTFiMmMzZDRlNWY2ZzdoOGk5IiwidWlkIjoiMDB1MWEyYjNjNGQ1ZTZmN2c4aDkiLCJzY3AiOlsicmVjb3Jkcy5yZWFkIl0sInN1YiI6ImFsaWNlQGV4YW1wbGUuY29tIn0.bm90LWEtcmVhbC1zaWduYXR1cmUtanVzdC1ieXRlcy1mb3Itc2hhcGU";
    let c = jwt_claims(ok).unwrap();
    assert_eq!(c.client_id.as_deref(), Some("0oa1b2c3d4e5f6g7h8i9"));
    assert_eq!(c.sub.as_deref(), Some("alice@example.com"));
    assert!(c.jti.as_deref().is_some_and(|j| j.starts_with("AT.")));
}

#[test]
fn client_id_and_azp_together_are_one_token_not_a_duplicate_field() {
    let c = jwt_claims(&jwt(&json!({
        "jti": "j-1", "sub": "u-1", "client_id": "api-client", "azp": "web-portal", "cid": "x",
        "exp": "1767229200", "aud": ["a", "b", 7], "scope": 12
    })))
    .unwrap();
    assert_eq!(c.jti.as_deref(), Some("j-1"));
    assert_eq!(c.client_id.as_deref(), Some("api-client"), "client_id wins");
    assert_eq!(c.exp, Some(1_767_229_200.0), "numeric string exp");
    assert_eq!(c.aud, vec!["a".to_string(), "b".to_string()]);
    let c = jwt_claims(&jwt(
        &json!({"sub": 10442, "appid": "app-1", "uti": "u-t-i", "exp": true}),
    ))
    .unwrap();
    assert_eq!(c.sub.as_deref(), Some("10442"), "numeric sub");
    assert_eq!(c.client_id.as_deref(), Some("app-1"), "Entra v1 appid");
    assert_eq!(c.jti.as_deref(), Some("u-t-i"), "Entra's uti is its jti");
    assert_eq!(c.exp, None, "a wrong-typed exp is ignored, not the token");
}

#[test]
fn strip_bearer_is_total_on_multibyte_text() {
    // Byte 7 falls inside `й` (two bytes): must not panic.
    assert_eq!(strip_bearer("Bearerй token"), "Bearerй token");
    assert_eq!(strip_bearer("Bearer токен"), "токен");
    assert_eq!(strip_bearer("bEaReR  x"), "x");
    assert_eq!(strip_bearer("Bearer "), "Bearer");
    assert_eq!(strip_bearer("日本語のトークン"), "日本語のトークン");
    assert_eq!(strip_bearer(""), "");
}

#[test]
fn a_jti_shaped_like_another_namespace_is_escaped() {
    assert_eq!(jti_id("7b11c9e2-5a4d"), "7b11c9e2-5a4d");
    assert_eq!(jti_id("AT.abc"), "AT.abc");
    assert_eq!(jti_id("urn:uuid:1"), "urn:uuid:1");
    assert_eq!(jti_id("h:0123456789abcdef"), "j:h:0123456789abcdef");
    assert_eq!(jti_id("c:key-1"), "j:c:key-1");
    assert_eq!(jti_id("j:x"), "j:j:x");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn strip_bearer_never_panics(s in "\\PC{0,24}", prefix in prop_oneof![Just(""), Just("Bearer"), Just("Bearer "), Just("bearer"), Just(" BEARER ")]) {
        let v = format!("{prefix}{s}");
        let out = strip_bearer(&v);
        prop_assert!(v.contains(out));
    }

    /// Claim sets shaped like the real IdPs' access tokens, with any subset
    /// of the optional claims, duplicates of the client id aliases, numeric
    /// subjects and wrong-typed unrelated claims: identity survives.
    #[test]
    fn idp_shaped_claims_keep_jti_sub_and_client(
        idp in 0usize..9,
        optional in proptest::collection::vec(any::<bool>(), 12),
        numeric_sub in any::<bool>(),
        exp_as_string in any::<bool>(),
        wrong in 0usize..6,
        n in 1u64..1_000_000,
    ) {
        let sub: Value = if numeric_sub { json!(n) } else { json!(format!("user-{n}")) };
        let exp = 1_767_229_200u64 + n;
        let exp_v: Value = if exp_as_string { json!(exp.to_string()) } else { json!(exp) };
        let jti = format!("jti-{n}");
        let mut c = serde_json::Map::new();
        let on = |i: usize| optional[i];
        c.insert("sub".into(), sub.clone());
        c.insert("exp".into(), exp_v);
        c.insert("iss".into(), json!("https://idp.example/"));
        // (client claims present, in precedence order, for this IdP)
        let client: Vec<(&str, String)> = match idp {
            // Keycloak: azp always, client_id on client-credentials tokens.
            0 => { c.insert("typ".into(), json!("Bearer")); c.insert("sid".into(), json!("s-1"));
                   let mut v = vec![("azp", "web-portal".to_string())];
                   if on(0) { v.insert(0, ("client_id", "svc".to_string())); } v }
            // Okta: cid, uid, scp array, `AT.` jti.
            1 => { c.insert("scp".into(), json!(["records.read"])); c.insert("uid".into(), json!("00u1"));
                   c.insert("ver".into(), json!(1)); vec![("cid", "0oa1".to_string())] }
            // Auth0: azp, aud array, gty sometimes, no jti of its own.
            2 => { c.insert("aud".into(), json!(["https://api.example.com", "https://x/userinfo"]));
                   if on(1) { c.insert("gty".into(), json!("client-credentials")); }
                   vec![("azp", "Xy7Z".to_string())] }
            // Entra ID v1: appid, uti.
            3 => { c.insert("ver".into(), json!("1.0")); c.insert("tid".into(), json!("t")); c.insert("oid".into(), json!("o"));
                   vec![("appid", "app-guid".to_string())] }
            // Entra ID v2: azp, uti.
            4 => { c.insert("ver".into(), json!("2.0")); vec![("azp", "app-guid".to_string())] }
            // Cognito: client_id, username, token_use, origin_jti.
            5 => { c.insert("token_use".into(), json!("access")); c.insert("username".into(), json!("u"));
                   c.insert("origin_jti".into(), json!("o-j")); vec![("client_id", "3n4b".to_string())] }
            // Google-style: azp and aud.
            6 => vec![("azp", "123.apps.googleusercontent.com".to_string())],
            // Ory Hydra: client_id, scp, ext object, nbf.
            7 => { c.insert("ext".into(), json!({"k": [1, 2]})); c.insert("scp".into(), json!(["a"]));
                   c.insert("nbf".into(), json!(1_767_225_600)); vec![("client_id", "hydra-client".to_string())] }
            // Zitadel / oidc-provider: client_id, aud array.
            _ => { c.insert("aud".into(), json!(["api"])); vec![("client_id", "oidc-client".to_string())] }
        };
        let mut client = client;
        if on(2) { client.push(("azp", "dup-azp".into())); }
        if on(3) { client.push(("cid", "dup-cid".into())); }
        let order = ["client_id", "azp", "cid", "appid"];
        client.sort_by_key(|(k, _)| order.iter().position(|o| o == k));
        client.dedup_by_key(|(k, _)| *k);
        for (k, v) in &client { c.insert((*k).into(), json!(v)); }
        // The token id: jti, Entra's uti, or none (Auth0 without jti).
        let id_claim = match idp { 3 | 4 => Some("uti"), 2 if !on(4) => None, _ => Some("jti") };
        if let Some(k) = id_claim { c.insert(k.into(), json!(jti)); }
        if on(5) { c.insert("iat".into(), json!(1_767_225_600)); }
        if on(6) { c.insert("scope".into(), json!("openid profile")); }
        if on(7) { c.insert("aud".into(), json!("single-audience")); }
        // One unrelated claim of a wrong type.
        let junk = match wrong { 0 => json!(null), 1 => json!([1, {"a": 2}]), 2 => json!({"x": "y"}), 3 => json!(-1.5), 4 => json!(true), _ => json!("") };
        for k in ["scope", "aud", "iat", "nbf", "sid", "ver"].iter().skip(wrong % 6).take(1) { c.insert((*k).into(), junk.clone()); }

        let got = jwt_claims(&jwt(&Value::Object(c))).expect("a JSON object payload always decodes");
        prop_assert_eq!(got.jti.as_deref(), id_claim.map(|_| jti.as_str()));
        let want_sub = match &sub { Value::Number(x) => x.to_string(), v => v.as_str().unwrap_or_default().to_string() };
        prop_assert_eq!(got.sub.as_deref(), Some(want_sub.as_str()));
        prop_assert_eq!(got.client_id.as_deref(), client.first().map(|(_, v)| v.as_str()));
        prop_assert_eq!(got.exp, Some(exp as f64));
    }
}
