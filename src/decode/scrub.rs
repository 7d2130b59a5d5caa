//! Credentials out of records that leave tokenwatch readable: dead letters.
//!
//! A dead letter is a record tokenwatch could not read, kept so that an
//! operator can see why: it may be truncated, not JSON, or JSON of any
//! shape, and it may carry the raw `Authorization` header, a cookie, an API
//! key or a token in a query string. [`scrub`] replaces every such value
//! with `[redacted]` and leaves the rest byte for byte, so the record still
//! shows what was wrong with it. It works on the bytes, not on a parse, so
//! it scrubs what no parser would accept, and JSON strings holding JSON
//! (a CloudWatch `message`) too. It removes:
//!
//! - the value of any key or parameter whose name ends in a credential
//!   name ([`NAMES`]: `authorization`, `cookie`, `apikey`, `token`,
//!   `secret`, `password`…), with `:` or `=` after it: JSON, logfmt,
//!   query strings, header dumps;
//! - the credential after a `Bearer` or `Basic` scheme anywhere;
//! - anything shaped like a JWT (`eyJ….….…`) anywhere.
//!
//! Total: it never panics, on any bytes (fuzzed).

#![deny(clippy::indexing_slicing, clippy::string_slice)]

/// What a removed value becomes.
pub const REDACTED: &[u8] = b"[redacted]";

/// Names (lowercase, `-` for `_`) whose value is a credential, matched as
/// the end of a key: `http_authorization`, `request.headers.x-api-key`,
/// `access_token`, `X-Amz-Security-Token`.
pub const NAMES: [&str; 8] = [
    "authorization",
    "cookie",
    "apikey",
    "api-key",
    "token",
    "secret",
    "password",
    "credentials",
];

/// `record` without its credentials (see the module doc).
pub fn scrub(record: &[u8]) -> Vec<u8> {
    let lower: Vec<u8> = record
        .iter()
        .map(|b| match b.to_ascii_lowercase() {
            b'_' => b'-',
            c => c,
        })
        .collect();
    let mut cuts: Vec<Cut> = Vec::new();
    for name in NAMES {
        for i in memchr::memmem::find_iter(&lower, name.as_bytes()) {
            if let Some(c) = key_value(record, i, i + name.len()) {
                cuts.push(c);
            }
        }
    }
    for scheme in ["bearer", "basic"] {
        for i in memchr::memmem::find_iter(&lower, scheme.as_bytes()) {
            if let Some(c) = after_scheme(record, i, i + scheme.len()) {
                cuts.push(c);
            }
        }
    }
    for i in memchr::memmem::find_iter(record, b"eyJ") {
        if let Some(c) = jwt(record, i) {
            cuts.push(c);
        }
    }
    apply(record, cuts)
}

/// A range to replace, and with what.
#[derive(Clone, Copy, Debug)]
struct Cut {
    start: usize,
    end: usize,
    with: &'static [u8],
}

fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

fn word(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

fn token68(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

fn b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_')
}

/// The value after a credential key ending at `end` (the name starts at
/// `start`): `name": "v"`, `name=v`, `name: v`, `\"name\":\"v\"`, arrays.
fn key_value(b: &[u8], start: usize, end: usize) -> Option<Cut> {
    if start > 0 && word(at(b, start - 1)) {
        return None;
    }
    let mut j = end;
    // The key's closing quote, escaped inside a JSON string or not.
    let escaped = at(b, j) == b'\\' && at(b, j + 1) == b'"';
    if escaped {
        j += 2;
    } else if matches!(at(b, j), b'"' | b'\'') {
        j += 1;
    }
    while at(b, j) == b' ' {
        j += 1;
    }
    let sep = at(b, j);
    if sep != b':' && sep != b'=' {
        return None;
    }
    j += 1;
    while at(b, j) == b' ' {
        j += 1;
    }
    let quoted: &'static [u8] = if escaped {
        b"\\\"[redacted]\\\""
    } else {
        b"\"[redacted]\""
    };
    match at(b, j) {
        b'\\' if at(b, j + 1) == b'"' => {
            // \"value\" inside a JSON string: up to the next \".
            let v = j + 2;
            let close = find_from(b, v, b"\\\"")?;
            Some(Cut {
                start: v,
                end: close,
                with: REDACTED,
            })
        }
        q @ (b'"' | b'\'') => {
            let v = j + 1;
            let mut k = v;
            while k < b.len() && at(b, k) != q {
                k += if at(b, k) == b'\\' { 2 } else { 1 };
            }
            Some(Cut {
                start: v,
                end: k.min(b.len()),
                with: REDACTED,
            })
        }
        b'[' if sep == b':' => {
            // A repeated header logged as an array: the whole array.
            let close = b.get(j..)?.iter().position(|&c| c == b']')? + j + 1;
            Some(Cut {
                start: j,
                end: close,
                with: quoted,
            })
        }
        b'{' => None,
        _ => {
            let mut k = j;
            while k < b.len()
                && !matches!(
                    at(b, k),
                    b' ' | b'\t' | b'\r' | b'\n' | b'&' | b',' | b';' | b'}' | b']' | b'"' | b'\''
                )
            {
                k += 1;
            }
            if k == j {
                return None;
            }
            // An unquoted JSON value (a number, null) becomes a string;
            // `name=v` stays unquoted.
            let with = if sep == b':' { quoted } else { REDACTED };
            Some(Cut {
                start: j,
                end: k,
                with,
            })
        }
    }
}

fn find_from(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(b.get(from..)?, needle).map(|p| p + from)
}

/// The credential after `Bearer ` / `Basic ` (any case, any spaces).
fn after_scheme(b: &[u8], start: usize, end: usize) -> Option<Cut> {
    if start > 0 && word(at(b, start - 1)) {
        return None;
    }
    let mut j = end;
    let mut spaced = false;
    loop {
        if at(b, j) == b' ' || at(b, j) == b'+' {
            j += 1;
        } else if at(b, j) == b'%' && at(b, j + 1) == b'2' && at(b, j + 2) == b'0' {
            j += 3;
        } else {
            break;
        }
        spaced = true;
    }
    if !spaced {
        return None;
    }
    let mut k = j;
    while k < b.len() && token68(at(b, k)) {
        k += 1;
    }
    (k > j).then_some(Cut {
        start: j,
        end: k,
        with: REDACTED,
    })
}

/// `eyJ…` `.` `…` `.` `…` in base64url: a JWT, signed or not.
fn jwt(b: &[u8], start: usize) -> Option<Cut> {
    if start > 0 && b64url(at(b, start - 1)) {
        return None;
    }
    let mut k = start;
    for segment in 0..3 {
        let from = k;
        while k < b.len() && b64url(at(b, k)) {
            k += 1;
        }
        if segment < 2 && k - from < 2 {
            return None;
        }
        if segment < 2 {
            if at(b, k) != b'.' {
                return None;
            }
            k += 1;
        }
    }
    Some(Cut {
        start,
        end: k,
        with: REDACTED,
    })
}

/// The record with the cuts applied; overlapping cuts merge (the first
/// replacement wins).
fn apply(b: &[u8], mut cuts: Vec<Cut>) -> Vec<u8> {
    if cuts.is_empty() {
        return b.to_vec();
    }
    cuts.sort_by_key(|c| (c.start, std::cmp::Reverse(c.end)));
    let mut out = Vec::with_capacity(b.len());
    let mut pos = 0;
    for c in cuts {
        let end = c.end.min(b.len());
        if c.start < pos {
            // Inside (or overlapping) a cut already made: extend it.
            pos = pos.max(end);
            continue;
        }
        out.extend_from_slice(b.get(pos..c.start).unwrap_or_default());
        out.extend_from_slice(c.with);
        pos = end;
    }
    out.extend_from_slice(b.get(pos..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> String {
        String::from_utf8(scrub(text.as_bytes())).unwrap()
    }

    #[test]
    fn credentials_go_and_the_rest_stays() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        for (input, want) in [
            (
                format!(r#"{{"method":"GET","authorization":"Bearer {jwt}","path":"/a"}}"#),
                r#"{"method":"GET","authorization":"[redacted]","path":"/a"}"#.to_string(),
            ),
            (
                r#"{"request":{"headers":{"x-api-key":"k-123","cookie":"sid=abc; t=1"}}}"#.into(),
                r#"{"request":{"headers":{"x-api-key":"[redacted]","cookie":"[redacted]"}}}"#
                    .into(),
            ),
            (
                r#"{"http_authorization": ["Basic dTpw", "Bearer x"], "status":200}"#.into(),
                r#"{"http_authorization": "[redacted]", "status":200}"#.into(),
            ),
            (
                r#"{"uri":"/v1/x?page=2&access_token=SECRET&q=1"}"#.into(),
                r#"{"uri":"/v1/x?page=2&access_token=[redacted]&q=1"}"#.into(),
            ),
            (
                r#"{"token": 12345, "token_exp": 99}"#.into(),
                r#"{"token": "[redacted]", "token_exp": 99}"#.into(),
            ),
            (
                format!(r#"{{"message":"{{\"authorization\":\"opaque-1\",\"ua\":\"{jwt}\"}}"}}"#),
                r#"{"message":"{\"authorization\":\"[redacted]\",\"ua\":\"[redacted]\"}"}"#.into(),
            ),
            (
                format!("127.0.0.1 - - \"GET /a HTTP/1.1\" 200 5 \"bearer   {jwt}\" {{\"start_"),
                "127.0.0.1 - - \"GET /a HTTP/1.1\" 200 5 \"bearer   [redacted]\" {\"start_".into(),
            ),
            (
                "no credential here: tokens=3 basicly".into(),
                "no credential here: tokens=3 basicly".into(),
            ),
        ] {
            assert_eq!(s(&input), want, "{input}");
        }
    }

    #[test]
    fn scrubbed_json_stays_json() {
        for input in [
            r#"{"authorization":"Bearer a\"b","x":1}"#,
            r#"{"apikey":null,"x":[1,2]}"#,
            r#"{"headers":{"cookie":["a=1","b=2"]},"password":"p"}"#,
        ] {
            let out = scrub(input.as_bytes());
            let v: serde_json::Value = serde_json::from_slice(&out).expect("still JSON");
            assert!(!v.to_string().contains("a\\\"b"), "{v}");
        }
    }

    #[test]
    fn truncated_and_odd_input_never_panics() {
        for input in [
            "",
            "token",
            "token=",
            "token:\"",
            "\"authorization\\",
            "Bearer",
            "Bearer ",
            "eyJ",
            "eyJa.b",
            "eyJab.cd.",
            "\\\"token\\\":\\\"x",
            "cookie:[\"a\"",
            "é token=é",
        ] {
            let out = scrub(input.as_bytes());
            assert!(std::str::from_utf8(&out).is_ok(), "{input}");
        }
        assert_eq!(s("eyJab.cd."), "[redacted]");
    }
}
