//! Client fingerprints: a user agent parsed with `woothee` (family, major
//! version, OS, device class), JA4 preferred over JA3, and the primary
//! accept-language tag, folded into a small fixed-size [`Fingerprint`].
//!
//! Chromium-based browsers randomise TLS extension order, so their raw JA3
//! changes on every connection; JA3 is therefore ignored for them, and JA4
//! (which sorts extensions) is used whenever the gateway logs it.

use std::sync::Arc;

use crate::event::{DeviceClass, Fingerprint, UaInfo, h32};

/// User-agent prefixes of clients people script with.
const SCRIPTING: &[&str] = &[
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "python-httpx",
    "python/",
    "aiohttp",
    "go-http-client",
    "java/",
    "apache-httpclient",
    "node-fetch",
    "axios/",
    "undici",
    "got (",
    "postmanruntime",
    "insomnia",
    "httpie",
    "libwww-perl",
    "ruby",
    "scrapy",
    "powershell",
    "rest-client",
    "guzzlehttp",
    "reqwest",
    "hackney",
];

/// Parse a user agent into what identifies a device (no minor versions).
pub fn parse(ua: &str) -> UaInfo {
    let mut info = parse_inner(ua);
    info.agent_hash = h32(&format!(
        "{}|{}|{}",
        info.family, info.os, info.device as u8
    ));
    info.os_id = (h32(&info.os) & 0xff) as u8;
    info.family_id = (h32(&info.family) & 0xff) as u8;
    info
}

fn parse_inner(ua: &str) -> UaInfo {
    let lower = ua.trim().to_ascii_lowercase();
    if lower.is_empty() || lower == "-" {
        return UaInfo {
            family: Arc::from("none"),
            major: 0,
            os: Arc::from("unknown"),
            device: DeviceClass::Library,
            scripting: true,
            agent_hash: 0,
            os_id: 0,
            family_id: 0,
        };
    }
    if SCRIPTING.iter().any(|p| lower.starts_with(p)) {
        let (family, major) = product_token(ua);
        return UaInfo {
            family: Arc::from(family),
            major,
            os: Arc::from("unknown"),
            device: DeviceClass::Library,
            scripting: true,
            agent_hash: 0,
            os_id: 0,
            family_id: 0,
        };
    }
    match woothee::parser::Parser::new().parse(ua) {
        Some(r) if r.name != "UNKNOWN" => {
            let device = match r.category {
                "pc" => DeviceClass::Desktop,
                "smartphone" | "mobilephone" => DeviceClass::Mobile,
                "crawler" => DeviceClass::Bot,
                _ => DeviceClass::Other,
            };
            UaInfo {
                family: Arc::from(r.name),
                major: leading_number(r.version),
                os: Arc::from(r.os),
                device,
                scripting: false,
                agent_hash: 0,
                os_id: 0,
                family_id: 0,
            }
        }
        _ => {
            // Native apps (okhttp, CFNetwork, Alamofire, Dart…): product
            // token and version; the OS from the platform's markers.
            let (family, major) = product_token(ua);
            let ios = [
                "cfnetwork",
                "darwin",
                "iphone",
                "ipad",
                "ipados",
                "alamofire",
            ]
            .iter()
            .any(|m| lower.contains(m))
                || ["; ios", "(ios", " ios ", "ios/"]
                    .iter()
                    .any(|m| lower.contains(m));
            let android = ["android", "okhttp", "dalvik"]
                .iter()
                .any(|m| lower.contains(m));
            let app = ios || android || lower.contains("dart");
            UaInfo {
                family: Arc::from(family),
                major,
                os: Arc::from(if android {
                    "Android"
                } else if ios {
                    "iOS"
                } else {
                    "unknown"
                }),
                device: if app {
                    DeviceClass::App
                } else {
                    DeviceClass::Other
                },
                scripting: false,
                agent_hash: 0,
                os_id: 0,
                family_id: 0,
            }
        }
    }
}

fn product_token(ua: &str) -> (String, u16) {
    let first = ua.split_whitespace().next().unwrap_or(ua);
    match first.split_once('/') {
        Some((name, ver)) => (name.to_ascii_lowercase(), leading_number(ver)),
        None => (first.to_ascii_lowercase(), 0),
    }
}

fn leading_number(s: &str) -> u16 {
    let digits: String = s
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .take(5)
        .collect();
    digits
        .parse::<u32>()
        .map(|n| n.min(u32::from(u16::MAX)) as u16)
        .unwrap_or(0)
}

fn is_chromium(family: &str) -> bool {
    matches!(
        family,
        "Chrome" | "Edge" | "Opera" | "Vivaldi" | "Yandex Browser" | "Samsung Internet" | "Brave"
    )
}

/// Fold a parsed agent and the TLS / header hints (hashes, see
/// [`crate::event::tls_hash`] and [`crate::event::lang_tag`]) into a fingerprint.
pub fn fingerprint(
    ua: &UaInfo,
    ja4: Option<u32>,
    ja3: Option<u32>,
    lang: Option<u16>,
) -> Fingerprint {
    let tls = match (ja4, ja3) {
        (Some(j), _) => j,
        // Chromium randomises extension order: its JA3 is noise.
        (None, Some(j)) if !is_chromium(&ua.family) => j,
        _ => 0,
    };
    Fingerprint {
        agent: ua.agent_hash,
        tls,
        lang: lang.unwrap_or(0),
        major: ua.major,
        device: ua.device as u8,
        os: ua.os_id,
        family: ua.family_id,
        scripting: ua.scripting,
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)]
mod tests {
    use super::*;

    const CHROME_131: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.85 Safari/537.36";
    const CHROME_131B: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.108 Safari/537.36";
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";

    #[test]
    fn minor_updates_and_ja3_churn_are_the_same_device() {
        use crate::event::{lang_tag, tls_hash};
        let a = fingerprint(
            &parse(CHROME_131),
            None,
            tls_hash("aaa"),
            lang_tag("en-GB,en;q=0.9"),
        );
        let b = fingerprint(
            &parse(CHROME_131B),
            None,
            tls_hash("bbb"),
            lang_tag("en-GB"),
        );
        assert_eq!(a.distance(&b), 0);
        assert_eq!(a, b);
    }

    #[test]
    fn native_app_agents_name_their_platform() {
        for (agent, os) in [
            (
                "Ledger/5.12 (com.example.ledger; build:512; iOS 17.2.0) Alamofire/5.8.0",
                "iOS",
            ),
            ("Ledger/51200 CFNetwork/1410.0.3 Darwin/22.6.0", "iOS"),
            ("My%20Ledger/51200 CFNetwork/1496.0.7 Darwin/23.5.0", "iOS"),
            ("okhttp/4.12.0", "Android"),
            (
                "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/UQ1A.240205.004)",
                "Android",
            ),
            ("Ledger/3.1.0 (Android 14; Pixel 8)", "Android"),
        ] {
            let info = parse(agent);
            assert_eq!(info.os.as_ref(), os, "{agent}");
            assert_eq!(info.device, DeviceClass::App, "{agent}");
            assert!(!info.scripting, "{agent}");
        }
        assert_eq!(parse("Biosphere/1.0").os.as_ref(), "unknown");
    }

    #[test]
    fn scripting_clients_and_devices_differ() {
        let curl = parse("curl/8.5.0");
        assert!(curl.scripting);
        assert_eq!(curl.major, 8);
        let phone = parse(IPHONE);
        assert_eq!(phone.device, DeviceClass::Mobile);
        let desk = fingerprint(&parse(CHROME_131), None, None, None);
        let py = fingerprint(&parse("python-requests/2.32.3"), None, None, None);
        assert!(desk.distance(&py) >= 2);
        assert!(desk.distance(&fingerprint(&phone, None, None, None)) >= 2);
        assert!(parse("okhttp/4.12.0").device == DeviceClass::App);
    }
}
