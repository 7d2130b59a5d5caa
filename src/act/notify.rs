//! Alerts: what an alert says (built once from the stored action, finding
//! and incident), and how each channel wants it: email (text and HTML),
//! a generic JSON webhook signed per Standard Webhooks, Slack blocks, a
//! Teams (Workflows) adaptive card, PagerDuty Events v2 (one `dedup_key`
//! per incident, resolved with it) and Alertmanager's `POST /api/v2/alerts`.
//!
//! Payload builders are pure; [`send`] does the I/O.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Outcome, http_outcome};
use crate::config::{ChannelConfig, ChannelKind, Severity, resolve_secret};
use crate::decide::{ActionStatus, Incident};
use crate::store::{ActionRecord, FindingRecord};

/// Everything an alert says, in words and numbers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertView {
    pub action_id: String,
    /// `alert` or `resolve`.
    pub kind: String,
    pub rule: String,
    pub incident_id: String,
    pub token_id: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub severity: Severity,
    /// The finding kind (`token_replay`, …), when the alert is about one.
    pub finding_kind: Option<String>,
    pub title: String,
    pub summary: String,
    /// `name: value` lines of evidence.
    pub evidence: Vec<String>,
    /// What was done automatically about the incident.
    pub done: Vec<String>,
    pub event_time: Option<String>,
    pub link: String,
}

fn sev_of(s: &str) -> Option<Severity> {
    match s {
        "low" => Some(Severity::Low),
        "medium" => Some(Severity::Medium),
        "high" => Some(Severity::High),
        "critical" => Some(Severity::Critical),
        _ => None,
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() != 0.0 => format!("{f:.2}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

impl AlertView {
    /// Build from the stored action, its finding and incident, and the
    /// incident's revocations `(kind, state, why)`.
    pub fn build(
        action: &ActionRecord,
        finding: Option<&FindingRecord>,
        incident: Option<&Incident>,
        done: &[(String, String, String)],
        dashboard_url: &str,
    ) -> AlertView {
        let kind = if action.kind.is_empty() {
            "alert".to_string()
        } else {
            action.kind.clone()
        };
        let rule = action.rule.clone();
        let incident_id = action.incident_id.clone();
        let token_id = action.token_id.clone();
        let summary = action.summary.clone();
        let severity = if rule == "policy" || rule == "delivery" {
            Severity::Critical
        } else {
            incident
                .map(|i| i.severity)
                .or_else(|| finding.and_then(|f| sev_of(&f.severity)))
                .unwrap_or(Severity::Medium)
        };
        let finding_kind = finding.map(|f| f.kind.clone()).filter(|k| !k.is_empty());
        let mut evidence = Vec::new();
        if let Some(f) = finding {
            let asn = (f.asn != 0).then(|| f.asn.to_string());
            for (label, value) in [
                ("client IP", Some(&f.client_ip)),
                ("network", Some(&f.network)),
                ("ASN", asn.as_ref()),
                ("country", f.country.as_ref()),
                ("city", f.city.as_ref()),
                ("route", Some(&f.route)),
                ("user agent", Some(&f.user_agent)),
                ("first evidence", Some(&f.evidence_first)),
                ("last evidence", Some(&f.evidence_last)),
            ] {
                if let Some(t) = value.filter(|t| !t.is_empty() && *t != "0") {
                    evidence.push(format!("{label}: {t}"));
                }
            }
            if let Value::Object(m) = &f.evidence {
                for (k, v) in m {
                    evidence.push(format!("{}: {}", k.replace('_', " "), scalar(v)));
                }
            }
        }
        let mut done_lines: Vec<String> = done
            .iter()
            .map(|(k, st, why)| match ActionStatus::parse(st) {
                Some(ActionStatus::Done) => format!("{k}: done"),
                Some(ActionStatus::Pending | ActionStatus::Dispatched) => {
                    format!("{k}: in progress")
                }
                Some(ActionStatus::Observed) => {
                    format!("{k}: would have been done (observe: {why})")
                }
                Some(ActionStatus::AwaitingApproval) => {
                    format!("{k}: waiting for approval ({why})")
                }
                Some(
                    ActionStatus::Failed
                    | ActionStatus::Rejected
                    | ActionStatus::Skipped
                    | ActionStatus::Digest
                    | ActionStatus::NoEndpoint,
                )
                | None => {
                    if why.is_empty() {
                        format!("{k}: {st}")
                    } else {
                        format!("{k}: {st} ({why})")
                    }
                }
            })
            .collect();
        if done_lines.is_empty() {
            done_lines.push("nothing automatic: alert only".into());
        }
        let what = finding_kind.clone().unwrap_or_else(|| rule.clone());
        let who = match (finding.and_then(|f| f.subject.clone()), &token_id) {
            (Some(sub), t) => format!("subject {sub}, token {t}"),
            (None, t) => format!("token {t}"),
        };
        let system = rule == "policy" || rule == "delivery";
        let title = if kind == "resolve" {
            format!("Resolved: incident {incident_id} ({who})")
        } else if system {
            format!("{}: {}", severity.as_str().to_uppercase(), summary)
        } else {
            format!("{} {what}: {who}", severity.as_str().to_uppercase())
        };
        AlertView {
            action_id: action.id.clone(),
            kind,
            rule,
            link: format!(
                "{}/incidents/{incident_id}",
                dashboard_url.trim_end_matches('/')
            ),
            incident_id,
            subject: finding.and_then(|f| f.subject.clone()),
            client_id: finding.and_then(|f| f.client_id.clone()),
            token_id,
            severity,
            finding_kind,
            title,
            // Alerts about the response itself (fuses, breakers) say their
            // own thing; others tell the finding's story.
            summary: finding
                .map(|f| f.summary.clone())
                .filter(|s| !system && !s.is_empty())
                .unwrap_or(summary),
            evidence,
            done: done_lines,
            event_time: finding
                .map(|f| f.event_time.clone())
                .filter(|t| !t.is_empty()),
        }
    }

    pub fn is_resolve(&self) -> bool {
        self.kind == "resolve"
    }

    pub fn text(&self) -> String {
        let mut t = format!("{}\n\n{}\n\n", self.title, self.summary);
        if let Some(et) = &self.event_time {
            t.push_str(&format!("When (gateway time): {et}\n"));
        }
        t.push_str(&format!(
            "Incident: {}\nToken: {}\n",
            self.incident_id, self.token_id
        ));
        if let Some(c) = &self.client_id {
            t.push_str(&format!("Client: {c}\n"));
        }
        if !self.evidence.is_empty() {
            t.push_str("\nEvidence:\n");
            for e in &self.evidence {
                t.push_str(&format!("  - {e}\n"));
            }
        }
        t.push_str("\nDone automatically:\n");
        for d in &self.done {
            t.push_str(&format!("  - {d}\n"));
        }
        t.push_str(&format!("\nOpen the incident: {}\n", self.link));
        t
    }

    pub fn html(&self) -> String {
        let e = html_escape;
        let li = |xs: &[String]| {
            xs.iter()
                .map(|x| format!("<li>{}</li>", e(x)))
                .collect::<String>()
        };
        format!(
            "<!doctype html><html><body style=\"font-family:sans-serif\"><h2>{}</h2><p>{}</p>\
             <p>Incident <b>{}</b> · token <code>{}</code>{}</p><h3>Evidence</h3><ul>{}</ul>\
             <h3>Done automatically</h3><ul>{}</ul><p><a href=\"{}\">Open the incident in tokenwatch</a></p></body></html>",
            e(&self.title),
            e(&self.summary),
            e(&self.incident_id),
            e(&self.token_id),
            self.event_time
                .as_deref()
                .map(|t| format!(" · {}", e(t)))
                .unwrap_or_default(),
            li(&self.evidence),
            li(&self.done),
            e(&self.link),
        )
    }
}

pub fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The generic webhook body.
pub fn generic_payload(v: &AlertView, now_ms: i64) -> Value {
    json!({
        "type": if v.is_resolve() { "tokenwatch.incident.resolved" } else { "tokenwatch.alert" },
        "timestamp": crate::event::fmt_time(now_ms),
        "data": v,
    })
}

/// Standard Webhooks signature: `v1,` + base64(HMAC-SHA256(key, id.ts.body)),
/// where the key is the base64 after `whsec_`.
pub fn standard_webhooks_signature(
    secret: &str,
    id: &str,
    ts_secs: i64,
    body: &[u8],
) -> Result<String, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.trim().trim_start_matches("whsec_"))
        .map_err(|_| {
            "the webhook secret must be base64 (optionally prefixed whsec_)".to_string()
        })?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", b64.encode(mac.finalize().into_bytes())))
}

/// Slack's control characters in `mrkdwn` text (`<!channel>`, `<url|text>`
/// links): log content (a user agent, a route, a subject) is text, never
/// markup.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn slack_payload(v: &AlertView) -> Value {
    let icon = match v.severity {
        Severity::Critical => ":rotating_light:",
        Severity::High => ":red_circle:",
        Severity::Medium => ":large_orange_circle:",
        Severity::Low => ":large_blue_circle:",
    };
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&v.title, 150)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("{icon} {}", slack_escape(&truncate(&v.summary, 2900)))}}),
    ];
    if !v.evidence.is_empty() {
        blocks.push(json!({"type": "section", "fields": v.evidence.iter().take(10).map(|e| json!({"type": "mrkdwn", "text": slack_escape(&truncate(e, 1900))})).collect::<Vec<_>>()}));
    }
    blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Done automatically*\n{}", v.done.iter().map(|d| format!("• {}", slack_escape(d))).collect::<Vec<_>>().join("\n"))}}));
    blocks.push(json!({"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open incident"}, "url": v.link}]}));
    json!({"text": v.title, "blocks": blocks})
}

/// Plain text in an adaptive card: a `TextRun` inside a `RichTextBlock` is
/// never read as Markdown (a `TextBlock` or a `FactSet` value is), so log
/// content cannot become a link or formatting.
fn teams_text(text: &str, strong: bool) -> Value {
    let mut run = json!({"type": "TextRun", "text": text});
    if strong {
        run["weight"] = json!("Bolder");
        run["size"] = json!("Large");
    }
    json!({"type": "RichTextBlock", "inlines": [run]})
}

pub fn teams_payload(v: &AlertView) -> Value {
    let facts: Vec<Value> = v.evidence.iter().map(|e| teams_text(e, false)).collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "Container",
                     "style": if v.severity >= Severity::High { "attention" } else { "warning" },
                     "items": [teams_text(&v.title, true)]},
                    teams_text(&v.summary, false),
                    {"type": "Container", "items": facts},
                    teams_text(&format!("Done automatically: {}", v.done.join("; ")), false)
                ],
                "actions": [{"type": "Action.OpenUrl", "title": "Open incident", "url": v.link}]
            }
        }]
    })
}

pub fn pagerduty_payload(v: &AlertView, routing_key: &str) -> Value {
    if v.is_resolve() {
        return json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": v.incident_id});
    }
    let severity = match v.severity {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "info",
    };
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": v.incident_id,
        "payload": {
            "summary": truncate(&v.title, 1024),
            "source": "tokenwatch",
            "severity": severity,
            "component": v.token_id,
            "group": v.client_id,
            "class": v.finding_kind.clone().unwrap_or_else(|| v.rule.clone()),
            "custom_details": {"summary": v.summary, "evidence": v.evidence, "done": v.done, "incident": v.incident_id},
        },
        "links": [{"href": v.link, "text": "Open incident in tokenwatch"}],
    })
}

pub fn alertmanager_payload(v: &AlertView, now_ms: i64) -> Value {
    let mut labels = json!({
        "alertname": "TokenAbuse",
        "severity": v.severity.as_str(),
        "incident": v.incident_id,
        "token_id": v.token_id,
        "service": "tokenwatch",
    });
    if let Some(k) = &v.finding_kind {
        labels["kind"] = json!(k);
    }
    if v.rule == "policy" || v.rule == "delivery" {
        labels["alertname"] = json!("TokenwatchSafety");
    }
    let mut a = json!({
        "labels": labels,
        "annotations": {"summary": v.title, "description": v.summary, "done": v.done.join("; ")},
        "generatorURL": v.link,
    });
    if v.is_resolve() {
        a["endsAt"] = json!(crate::event::fmt_time(now_ms));
    } else {
        a["startsAt"] = json!(crate::event::fmt_time(now_ms));
    }
    json!([a])
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Does this channel take this alert (routing by severity and kind)?
pub fn routes_to(c: &ChannelConfig, v: &AlertView) -> bool {
    if v.is_resolve() {
        return matches!(
            c.kind,
            ChannelKind::Pagerduty | ChannelKind::Alertmanager | ChannelKind::Webhook
        );
    }
    if v.severity < c.min_severity {
        return false;
    }
    match &v.finding_kind {
        Some(k) if !c.kinds.is_empty() => c.kinds.iter().any(|x| x.as_str() == k),
        _ => true,
    }
}

/// Deliver one alert to one channel. `key` is the delivery id (idempotency
/// key, webhook-id, Message-ID).
pub async fn send(
    http: &reqwest::Client,
    c: &ChannelConfig,
    v: &AlertView,
    key: &str,
    now_ms: i64,
    timeout: std::time::Duration,
) -> Outcome {
    let secret = |o: &Option<String>, what: &str| -> Result<String, Outcome> {
        match o {
            Some(s) => resolve_secret(s).map_err(|e| Outcome::Failed {
                status: None,
                error: format!("{what}: {e}"),
            }),
            None => Err(Outcome::Failed {
                status: None,
                error: format!("{what} is not configured"),
            }),
        }
    };
    // Slack and Teams URLs are credentials: `env:`/`file:` like any secret.
    let url = match c.url.as_deref().map(resolve_secret).transpose() {
        Ok(u) => u.unwrap_or_default(),
        Err(e) => {
            return Outcome::Failed {
                status: None,
                error: format!("url: {e}"),
            };
        }
    };
    let (url, body, mut headers): (String, Vec<u8>, Vec<(String, String)>) = match c.kind {
        ChannelKind::Email => return send_email(c, v, key, timeout).await,
        ChannelKind::Webhook => {
            let body = generic_payload(v, now_ms).to_string().into_bytes();
            let s = match secret(&c.secret, "secret") {
                Ok(s) => s,
                Err(o) => return o,
            };
            let ts = now_ms / 1000;
            let sig = match standard_webhooks_signature(&s, key, ts, &body) {
                Ok(x) => x,
                Err(e) => {
                    return Outcome::Failed {
                        status: None,
                        error: e,
                    };
                }
            };
            (
                url,
                body,
                vec![
                    ("webhook-id".into(), key.into()),
                    ("webhook-timestamp".into(), ts.to_string()),
                    ("webhook-signature".into(), sig),
                ],
            )
        }
        ChannelKind::Slack => (url, slack_payload(v).to_string().into_bytes(), vec![]),
        ChannelKind::Teams => (url, teams_payload(v).to_string().into_bytes(), vec![]),
        ChannelKind::Pagerduty => {
            let rk = match secret(&c.routing_key, "routing_key") {
                Ok(s) => s,
                Err(o) => return o,
            };
            let url = c
                .url
                .clone()
                .unwrap_or_else(|| "https://events.pagerduty.com/v2/enqueue".into());
            (
                url,
                pagerduty_payload(v, &rk).to_string().into_bytes(),
                vec![],
            )
        }
        ChannelKind::Alertmanager => (
            format!("{}/api/v2/alerts", url.trim_end_matches('/')),
            alertmanager_payload(v, now_ms).to_string().into_bytes(),
            vec![],
        ),
    };
    headers.push(("idempotency-key".into(), key.into()));
    let mut req = http
        .post(&url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .body(body);
    for (k, val) in headers {
        req = req.header(k, val);
    }
    http_outcome(req.send().await, now_ms, |_| String::from("accepted")).await
}

async fn send_email(
    c: &ChannelConfig,
    v: &AlertView,
    key: &str,
    timeout: std::time::Duration,
) -> Outcome {
    use lettre::message::MultiPart;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let fail = |error: String| Outcome::Failed {
        status: None,
        error,
    };
    let url = c.smtp_url.clone().unwrap_or_default();
    let implicit = url.starts_with("smtps://");
    let rest = url
        .trim_start_matches("smtps://")
        .trim_start_matches("smtp://");
    let (host, port) = match rest.trim_end_matches('/').rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(p) => (h.to_string(), p),
            Err(_) => return fail(format!("smtp_url `{url}`: bad port")),
        },
        None => (
            rest.trim_end_matches('/').to_string(),
            if implicit { 465 } else { 587 },
        ),
    };
    let mode = c.tls.clone().unwrap_or_else(|| {
        if implicit {
            "tls".into()
        } else {
            "starttls".into()
        }
    });
    let tls = match mode.as_str() {
        "none" => Tls::None,
        m => match TlsParameters::new(host.clone()) {
            Ok(p) if m == "tls" => Tls::Wrapper(p),
            Ok(p) if m == "opportunistic" => Tls::Opportunistic(p),
            Ok(p) => Tls::Required(p),
            Err(e) => return fail(format!("TLS setup for {host}: {e}")),
        },
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
        .port(port)
        .tls(tls)
        .timeout(Some(timeout));
    if let Some(user) = &c.username {
        let pass = match c.password.as_deref().map(resolve_secret).transpose() {
            Ok(p) => p.unwrap_or_default(),
            Err(e) => return fail(format!("password: {e}")),
        };
        b = b.credentials(lettre::transport::smtp::authentication::Credentials::new(
            user.clone(),
            pass,
        ));
    }
    let transport = b.build();
    let from = match c.from.as_deref().unwrap_or_default().parse() {
        Ok(f) => f,
        Err(e) => return fail(format!("from: {e}")),
    };
    let mut m = Message::builder()
        .from(from)
        .subject(format!("[tokenwatch] {}", v.title))
        .message_id(Some(format!("<{}@tokenwatch>", key.replace('/', "."))));
    for to in &c.to {
        match to.parse() {
            Ok(a) => m = m.to(a),
            Err(e) => return fail(format!("to `{to}`: {e}")),
        }
    }
    let msg = match m.multipart(MultiPart::alternative_plain_html(v.text(), v.html())) {
        Ok(m) => m,
        Err(e) => return fail(format!("building the message: {e}")),
    };
    match transport.send(msg).await {
        Ok(r) => Outcome::Delivered {
            status: Some(r.code().to_string().parse().unwrap_or(250)),
            detail: format!("accepted by {host} for {}", c.to.join(", ")),
        },
        Err(e) if e.is_permanent() => fail(format!("SMTP refused: {e}")),
        Err(e) => Outcome::Retry {
            status: None,
            error: format!("SMTP: {e}"),
            retry_after_ms: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> AlertView {
        let action: ActionRecord = serde_json::from_value(
            json!({"id": "a-1", "kind": "alert", "rule": "notify", "incident_id": "i-1",
            "token_id": "h:abc", "summary": "token_replay on h:abc"}),
        )
        .unwrap();
        let finding: FindingRecord = serde_json::from_value(json!({"kind": "token_replay", "severity": "high", "subject": "u-1",
            "client_id": "web", "summary": "second device <python>", "client_ip": "203.0.113.9",
            "asn": 16509, "event_time": "2026-01-05T10:05:00Z", "evidence": {"distance_km": 812.5, "devices": 2}})).unwrap();
        AlertView::build(
            &action,
            Some(&finding),
            None,
            &[("revoke".into(), "observed".into(), "rule observe".into())],
            "http://dash/",
        )
    }

    #[test]
    fn the_view_says_what_why_and_what_was_done() {
        let v = view();
        assert_eq!(v.title, "HIGH token_replay: subject u-1, token h:abc");
        assert_eq!(v.link, "http://dash/incidents/i-1");
        assert!(
            v.evidence.contains(&"distance km: 812.50".to_string()),
            "{:?}",
            v.evidence
        );
        assert!(v.evidence.contains(&"ASN: 16509".to_string()));
        assert_eq!(
            v.done,
            vec!["revoke: would have been done (observe: rule observe)"]
        );
        let t = v.text();
        assert!(
            t.contains("second device <python>")
                && t.contains("Open the incident: http://dash/incidents/i-1")
        );
        let h = v.html();
        assert!(h.contains("second device &lt;python&gt;") && !h.contains("<python>"));
    }

    #[test]
    fn standard_webhooks_signature_matches_the_spec_example() {
        // The example from the Standard Webhooks specification.
        let sig = standard_webhooks_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    /// Issue 14, point 9: log content is text in Slack and Teams.
    #[test]
    fn log_content_never_becomes_markup_in_chat() {
        let mut v = view();
        v.summary = "ua <!channel> <https://evil.example|click here> [login](https://evil.example) **now** & more".into();
        v.evidence = vec!["route: <https://evil.example|/v1>".into()];
        let s = slack_payload(&v).to_string();
        assert!(
            !s.contains("<!channel>") && !s.contains("<https://evil"),
            "{s}"
        );
        assert!(s.contains("&lt;!channel&gt;") && s.contains("&amp; more"));
        let t = teams_payload(&v);
        fn texts(v: &Value, out: &mut Vec<(String, String)>) {
            match v {
                Value::Object(o) => {
                    if let (Some(k), Some(t)) = (o.get("type"), o.get("text")) {
                        out.push((
                            k.as_str().unwrap_or("").into(),
                            t.as_str().unwrap_or("").into(),
                        ));
                    }
                    o.values().for_each(|x| texts(x, out));
                }
                Value::Array(a) => a.iter().for_each(|x| texts(x, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        texts(&t, &mut all);
        assert!(
            all.iter()
                .any(|(_, t)| t.contains("[login](https://evil.example)"))
        );
        for (kind, text) in &all {
            assert_eq!(kind, "TextRun", "{kind} would render Markdown: {text}");
        }
        assert!(!t.to_string().contains("FactSet"));
    }

    #[test]
    fn channel_payloads_have_their_shapes() {
        let v = view();
        let s = slack_payload(&v);
        assert_eq!(s["blocks"][0]["type"], "header");
        let t = teams_payload(&v);
        assert_eq!(t["attachments"][0]["content"]["type"], "AdaptiveCard");
        let p = pagerduty_payload(&v, "rk");
        assert_eq!(
            (p["event_action"].as_str(), p["dedup_key"].as_str()),
            (Some("trigger"), Some("i-1"))
        );
        assert_eq!(p["payload"]["severity"], "error");
        let a = alertmanager_payload(&v, 0);
        assert_eq!(a[0]["labels"]["incident"], "i-1");
        let mut r = v.clone();
        r.kind = "resolve".into();
        assert_eq!(pagerduty_payload(&r, "rk")["event_action"], "resolve");
        assert!(alertmanager_payload(&r, 0)[0].get("endsAt").is_some());
    }
}
