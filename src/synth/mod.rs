//! Synthetic, labeled gateway traffic: a population of users, mobile apps
//! and service tokens behaving normally (including the benign look-alikes:
//! mobile IP hopping, CGNAT, IPv6 privacy addresses, Chrome JA3 churn, UA
//! updates, travel, service tokens from many pods, batch exports, slow
//! ramps), with attacks injected and recorded as ground-truth labels.
//!
//! Everything is driven by one seed: the same scenario and seed give the
//! same bytes. A scenario is a TOML file (see `replay/scenarios/`).

pub mod world;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::decode::token::TokenHasher;
use crate::detect::FindingKind;
use crate::event::NetClass;
use world::World;

/// A scenario: how much traffic, of which kinds, in which formats.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    pub seed: u64,
    /// Start of the traffic (RFC 3339).
    pub start: String,
    pub hours: u32,
    pub users: u32,
    /// Average sessions per user over the whole period.
    pub sessions_per_user: f64,
    /// Mean seconds between a user's requests within a session.
    pub think_secs: f64,
    /// Share of users on mobile networks (IP hopping, CGNAT).
    pub mobile_share: f64,
    /// Share of residential users on IPv6 privacy addresses.
    pub ipv6_share: f64,
    /// Share of users who fly somewhere during the period (on long-lived tokens).
    pub traveler_share: f64,
    /// Service clients (client credentials, many pods, steady volume).
    pub services: u32,
    /// Formats the gateways log in; users are spread over them.
    pub formats: Vec<String>,
    /// Attacks to inject, per kind.
    pub attacks: BTreeMap<FindingKind, u32>,
    /// Mean seconds between a phone app's requests (apps are quiet: 0.5 a
    /// minute is common).
    pub app_think_secs: f64,
    /// Share of app users whose app also sends the platform's default agent
    /// (CFNetwork on iOS, okhttp on Android) beside its own, on one TLS stack.
    pub two_agent_share: f64,
    /// Share of phone users who hand off between home Wi-Fi and the carrier.
    pub handoff_share: f64,
    /// Share of carrier requests from pools geolocated only to the country.
    pub country_geo_share: f64,
    /// Share of Safari users behind relay egress (iCloud Private Relay style).
    pub relay_share: f64,
    /// Share of desktop users who turn a VPN on and off mid-token (ambiguous).
    pub vpn_toggle_share: f64,
    /// Share of travellers whose phone mixes hotel Wi-Fi with home-routed
    /// roaming (ambiguous).
    pub roaming_share: f64,
    /// Share of desktop users behind their office's one proxy address.
    pub office_share: f64,
    /// Spread of use between sessions: each session's think time is the
    /// user's times a log-normal factor with this sigma (people are busier
    /// on some days than others).
    pub session_intensity_sigma: f64,
    /// Most requests a phone app fires within seconds when it opens
    /// (config, feed, profile, badges); each session draws 1 to this many.
    pub app_launch_requests: u32,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            seed: 7,
            start: "2026-01-05T06:00:00Z".into(),
            hours: 8,
            users: 1500,
            sessions_per_user: 3.0,
            think_secs: 25.0,
            mobile_share: 0.3,
            ipv6_share: 0.2,
            traveler_share: 0.03,
            services: 6,
            formats: vec!["envoy".into()],
            attacks: FindingKind::ALL.iter().map(|k| (*k, 8)).collect(),
            app_think_secs: 90.0,
            two_agent_share: 0.5,
            handoff_share: 0.5,
            country_geo_share: 0.15,
            relay_share: 0.2,
            vpn_toggle_share: 0.02,
            roaming_share: 0.5,
            office_share: 0.1,
            session_intensity_sigma: 0.35,
            app_launch_requests: 6,
        }
    }
}

impl Scenario {
    /// A differently-shaped world: every rate, mix and share drawn from a
    /// wide range by `seed` (the accuracy test judges on the worst of
    /// several). Users, hours, formats and attacks are kept from `self`.
    pub fn randomized(&self, seed: u64) -> Scenario {
        let mut r = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0fa3_071d);
        Scenario {
            seed,
            sessions_per_user: r.gen_range(2.0..4.5),
            think_secs: r.gen_range(8.0..60.0),
            mobile_share: r.gen_range(0.2..0.6),
            ipv6_share: r.gen_range(0.0..0.5),
            traveler_share: r.gen_range(0.01..0.06),
            app_think_secs: r.gen_range(40.0..180.0),
            two_agent_share: r.gen_range(0.2..0.9),
            handoff_share: r.gen_range(0.2..0.8),
            country_geo_share: r.gen_range(0.05..0.4),
            relay_share: r.gen_range(0.0..0.5),
            vpn_toggle_share: r.gen_range(0.01..0.05),
            roaming_share: r.gen_range(0.2..0.8),
            office_share: r.gen_range(0.0..0.3),
            session_intensity_sigma: r.gen_range(0.1..0.7),
            app_launch_requests: r.gen_range(2..14),
            ..self.clone()
        }
    }
}

/// Ground truth for one injected attack.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Label {
    pub attack_id: String,
    pub kind: FindingKind,
    pub token_id: String,
    pub subject: Option<String>,
    pub start_ts: i64,
    pub end_ts: i64,
    pub description: String,
    /// The shape of the attack within its kind (`burst`, `slow`,
    /// `same_network`…), scored separately.
    #[serde(default)]
    pub variant: String,
}

/// The label file: attacks plus the benign tokens (for false-positive rates).
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct Labels {
    pub scenario: String,
    pub seed: u64,
    pub attacks: Vec<Label>,
    pub benign_tokens: Vec<String>,
    /// Benign but ambiguous tokens (a VPN toggled mid-token, home-routed
    /// roaming): not false positives when flagged low, never to be flagged
    /// higher or revoked.
    #[serde(default)]
    pub ambiguous_tokens: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Agent {
    ChromeWin,
    ChromeMac,
    FirefoxWin,
    SafariMac,
    IphoneSafari,
    AndroidChrome,
    AndroidApp,
    IosApp,
    /// The app's own agent (Alamofire style) beside CFNetwork's default.
    IosAppOwn,
    /// The app's own agent beside okhttp's default.
    AndroidAppOwn,
    PythonRequests,
    Curl,
    GoHttp,
}

impl Agent {
    fn ua(self, major: u16, patch: u16) -> String {
        match self {
            Agent::ChromeWin => format!(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.6778.{patch} Safari/537.36"
            ),
            Agent::ChromeMac => format!(
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.6778.{patch} Safari/537.36"
            ),
            Agent::FirefoxWin => {
                format!("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{major}.0) Gecko/20100101 Firefox/{major}.0")
            }
            Agent::SafariMac => "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15".into(),
            Agent::IphoneSafari => "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1".into(),
            Agent::AndroidChrome => format!(
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.6778.{patch} Mobile Safari/537.36"
            ),
            Agent::AndroidApp => "okhttp/4.12.0".into(),
            Agent::IosApp => "Ledger/5.2 CFNetwork/1496.0.7 Darwin/23.5.0".into(),
            Agent::IosAppOwn => {
                "Ledger/5.2.0 (com.example.ledger; build:520; iOS 17.5.1) Alamofire/5.8.0".into()
            }
            Agent::AndroidAppOwn => "Ledger/3.1.0 (Android 14; Pixel 8)".into(),
            Agent::PythonRequests => "python-requests/2.32.3".into(),
            Agent::Curl => "curl/8.5.0".into(),
            Agent::GoHttp => "Go-http-client/2.0".into(),
        }
    }
    fn ja4(self) -> &'static str {
        match self {
            Agent::ChromeWin | Agent::ChromeMac | Agent::AndroidChrome => {
                "t13d1516h2_8daaf6152771_b186095e22b6"
            }
            Agent::FirefoxWin => "t13d1715h2_5b57614c22b0_3d5424432f57",
            Agent::SafariMac | Agent::IphoneSafari | Agent::IosApp | Agent::IosAppOwn => {
                "t13d2014h2_a09f3c656075_14788d8d241b"
            }
            Agent::AndroidApp | Agent::AndroidAppOwn => "t13d1312h2_f57a46bbacb6_e7c285222651",
            Agent::PythonRequests => "t13d1812h1_85036bcba153_375ca2c5e164",
            Agent::Curl => "t13d3113h1_e8f1e7e78f70_ce5650b735ce",
            Agent::GoHttp => "t13d0911h2_f91f431d341e_1f4d3fd01a4d",
        }
    }
    fn chromium(self) -> bool {
        matches!(
            self,
            Agent::ChromeWin | Agent::ChromeMac | Agent::AndroidChrome
        )
    }
    fn app(self) -> bool {
        matches!(
            self,
            Agent::AndroidApp | Agent::IosApp | Agent::IosAppOwn | Agent::AndroidAppOwn
        )
    }
    /// The platform's default agent an app's plain requests carry.
    fn platform_default(self) -> Agent {
        match self {
            Agent::IosAppOwn => Agent::IosApp,
            Agent::AndroidAppOwn => Agent::AndroidApp,
            a => a,
        }
    }
    fn token_lifetime_ms(self) -> i64 {
        if self.app() {
            24 * 3_600_000
        } else {
            3_600_000
        }
    }
    fn client_id(self) -> &'static str {
        match self {
            Agent::AndroidApp | Agent::AndroidAppOwn => "android-app",
            Agent::IosApp | Agent::IosAppOwn => "ios-app",
            Agent::AndroidChrome | Agent::IphoneSafari => "mobile-web",
            _ => "web-app",
        }
    }
}

/// One request, before it is written in a gateway's format.
#[derive(Clone, Debug)]
struct Req {
    ts: i64,
    token: usize,
    ip: IpAddr,
    agent: Agent,
    major: u16,
    patch: u16,
    lang: &'static str,
    method: &'static str,
    path: String,
    route: &'static str,
    status: u16,
    bytes: u64,
}

struct Token {
    jti: String,
    secret: String,
    credential: String,
    subject: Option<String>,
    client_id: String,
    format: usize,
    issued: i64,
    exp: i64,
}

struct User {
    subject: String,
    home_city: usize,
    isp: usize,
    mobile: bool,
    ipv6: bool,
    agent: Agent,
    lang: &'static str,
    format: usize,
    own_ids: [u32; 3],
    addr_seed: u32,
    /// The app also sends its platform's default agent.
    two_agents: bool,
    /// The phone hands off between home Wi-Fi and the carrier.
    handoff: bool,
    /// Behind relay egress (rotating addresses, country-level geolocation).
    relay: bool,
    /// Turns a VPN on and off mid-token.
    vpn_toggle: bool,
}

/// A generated dataset.
pub struct Dataset {
    /// Per format: JSON lines, in event-time order.
    pub files: BTreeMap<String, Vec<u8>>,
    pub labels: Labels,
    pub events: usize,
}

struct Gen<'w> {
    rng: ChaCha8Rng,
    world: &'w World,
    sc: &'w Scenario,
    t0: i64,
    t_end: i64,
    tokens: Vec<Token>,
    reqs: Vec<Req>,
    /// Tokens whose benign use is ambiguous (VPN toggles, home-routed roaming).
    ambiguous: std::collections::BTreeSet<usize>,
}

fn hex_id(rng: &mut ChaCha8Rng) -> String {
    let a: u128 = rng.r#gen();
    let s = format!("{a:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &s[..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

impl Gen<'_> {
    fn new_token(
        &mut self,
        subject: Option<&str>,
        client: &str,
        format: usize,
        issued: i64,
        life: i64,
    ) -> usize {
        let jti = hex_id(&mut self.rng);
        let secret = format!(
            "at_{:x}{:x}",
            self.rng.r#gen::<u64>(),
            self.rng.r#gen::<u64>()
        );
        let credential = hex_id(&mut self.rng);
        self.tokens.push(Token {
            jti,
            secret,
            credential,
            subject: subject.map(str::to_string),
            client_id: client.to_string(),
            format,
            issued,
            exp: issued + life,
        });
        self.tokens.len() - 1
    }

    /// A log-normal factor with mean 1 and the given sigma.
    fn lognormal(&mut self, sigma: f64) -> f64 {
        let u1: f64 = self.rng.gen_range(1e-9..1.0);
        let u2: f64 = self.rng.gen_range(0.0..1.0);
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (sigma * z - sigma * sigma / 2.0).exp()
    }

    fn exp_gap(&mut self, mean_s: f64) -> i64 {
        let u: f64 = self.rng.gen_range(1e-6..1.0);
        ((-u.ln() * mean_s * 1000.0) as i64).max(200)
    }

    /// A normal user request on the usual routes.
    fn user_request(
        &mut self,
        u: &User,
        token: usize,
        ts: i64,
        ip: IpAddr,
        major: u16,
        patch: u16,
    ) -> Req {
        let r: f64 = self.rng.r#gen();
        let (method, path, route, status, bytes) = if r < 0.45 {
            let page = self.rng.gen_range(1..5u32);
            (
                "GET",
                format!("/v1/records?page={page}"),
                "records",
                200,
                self.rng.gen_range(20_000..200_000),
            )
        } else if r < 0.75 {
            let id = u.own_ids[self.rng.gen_range(0..3)];
            (
                "GET",
                format!("/v1/accounts/{id}"),
                "accounts",
                200,
                self.rng.gen_range(800..4000),
            )
        } else if r < 0.9 {
            ("GET", "/v1/profile".to_string(), "profile", 200, 1200)
        } else {
            let st = if self.rng.gen_bool(0.03) { 404 } else { 201 };
            ("POST", "/v1/orders".to_string(), "orders", st, 600)
        };
        Req {
            ts,
            token,
            ip,
            agent: u.agent,
            major,
            patch,
            lang: u.lang,
            method,
            path,
            route,
            status,
            bytes,
        }
    }

    fn user_ip(&mut self, u: &User, city: usize) -> IpAddr {
        let world = self.world;
        let isp = &world.isps[u.isp];
        if u.mobile {
            // Carriers hop addresses (and cities nearby) and share them (CGNAT).
            let blocks = world.blocks_of(u.isp);
            let near: Vec<usize> = blocks
                .into_iter()
                .filter(|b| {
                    let c = world::city(world.blocks[*b].city);
                    let h = world::city(city);
                    crate::detect::detectors::haversine_km(c.lat, c.lon, h.lat, h.lon) < 600.0
                })
                .collect();
            let b = *near
                .choose(&mut self.rng)
                .expect("carrier covers home city");
            return world.addr(b, self.rng.gen_range(0..40));
        }
        let b = world.block(isp.asn, city).expect("isp covers city");
        if u.ipv6 {
            // Privacy addresses: a new interface id all the time.
            return world.addr_v6(b, self.rng.r#gen()).expect("residential v6");
        }
        world.addr(b, u.addr_seed)
    }

    fn users(&mut self) -> Vec<User> {
        let n_countries_isps: Vec<usize> = (0..self.world.isps.len())
            .filter(|i| {
                matches!(
                    self.world.isps[*i].class,
                    crate::event::NetClass::Residential
                )
            })
            .collect();
        let mut users = Vec::new();
        for i in 0..self.sc.users {
            let home_isp = n_countries_isps[self.rng.gen_range(0..n_countries_isps.len())];
            let cities = self.world.isps[home_isp].cities.clone();
            let home_city = cities[self.rng.gen_range(0..cities.len())].0;
            let mobile = self.rng.gen_bool(self.sc.mobile_share);
            let two_agents = self.rng.gen_bool(self.sc.two_agent_share);
            let agent = if mobile {
                *[
                    Agent::IphoneSafari,
                    Agent::AndroidChrome,
                    if two_agents {
                        Agent::AndroidAppOwn
                    } else {
                        Agent::AndroidApp
                    },
                    if two_agents {
                        Agent::IosAppOwn
                    } else {
                        Agent::IosApp
                    },
                ]
                .choose(&mut self.rng)
                .expect("non-empty")
            } else {
                *[
                    Agent::ChromeWin,
                    Agent::ChromeWin,
                    Agent::ChromeMac,
                    Agent::FirefoxWin,
                    Agent::SafariMac,
                ]
                .choose(&mut self.rng)
                .expect("non-empty")
            };
            let safari = matches!(agent, Agent::SafariMac | Agent::IphoneSafari);
            let handoff = mobile && self.rng.gen_bool(self.sc.handoff_share);
            let relay = safari && self.rng.gen_bool(self.sc.relay_share);
            let vpn_toggle = !mobile && !relay && self.rng.gen_bool(self.sc.vpn_toggle_share);
            let office = !mobile && self.rng.gen_bool(self.sc.office_share);
            users.push(User {
                subject: format!("u-{:05}", 10000 + i),
                home_city,
                isp: if mobile { home_isp + 1 } else { home_isp },
                mobile,
                ipv6: !mobile && !office && self.rng.gen_bool(self.sc.ipv6_share),
                agent,
                lang: world::language(home_city),
                format: i as usize % self.sc.formats.len(),
                two_agents,
                handoff,
                relay,
                vpn_toggle,
                own_ids: [
                    self.rng.gen_range(10_000..99_999),
                    self.rng.gen_range(10_000..99_999),
                    self.rng.gen_range(10_000..99_999),
                ],
                // An office's colleagues share its one proxy address.
                addr_seed: if office {
                    997
                } else {
                    self.rng.gen_range(0..990)
                },
            });
        }
        users
    }

    /// A user's sessions; returns (token, first use, last use) per token used.
    fn user_traffic(&mut self, u: &User) -> Vec<(usize, i64, i64)> {
        let span = self.t_end - self.t0;
        let n = {
            let base = self.sc.sessions_per_user;
            let n = base.floor() as u32 + u32::from(self.rng.gen_bool(base.fract()));
            n.max(1)
        };
        let mut starts: Vec<i64> = (0..n)
            .map(|_| self.t0 + self.rng.gen_range(0..span.max(1)))
            .collect();
        starts.sort_unstable();
        let traveler = self.rng.gen_bool(self.sc.traveler_share);
        // Travelers use a long-lived app token and fly 9+ hours to another continent.
        let agent = if traveler { Agent::IosApp } else { u.agent };
        let roaming = traveler && self.rng.gen_bool(self.sc.roaming_share);
        let think = if agent.app() {
            self.sc.app_think_secs
        } else {
            self.sc.think_secs
        };
        let (mut wifi, mut vpn_on) = (false, false);
        let mut city = u.home_city;
        let mut major = if agent.chromium() { 131 } else { 133 };
        let mut patch = self.rng.gen_range(80..110u16);
        let mut token: Option<usize> = None;
        let mut used: Vec<(usize, i64, i64)> = Vec::new();
        let mut last_end = self.t0;
        for (si, start) in starts.into_iter().enumerate() {
            let mut ts = start.max(last_end + 60_000);
            if traveler && si > 0 && ts - last_end < 10 * 3_600_000 {
                ts = last_end + 10 * 3_600_000 + self.rng.gen_range(0..3_600_000);
            }
            if traveler && si > 0 {
                city = (u.home_city + 10) % world::CITIES.len();
            }
            let uu = User {
                subject: u.subject.clone(),
                agent,
                isp: if traveler && city != u.home_city {
                    self.world_isp_for(city, u.isp)
                } else {
                    u.isp
                },
                ..*u
            };
            let dur = self.rng.gen_range(10 * 60_000..50 * 60_000i64);
            let end = ts + dur;
            let session_think = think * self.lognormal(self.sc.session_intensity_sigma);
            let mut launch = if agent.app() {
                self.rng.gen_range(1..=self.sc.app_launch_requests.max(1)) - 1
            } else {
                0
            };
            let (mut launch_ip, mut in_launch) = (None, false);
            while ts < end && ts < self.t_end {
                let valid = token.filter(|t| self.tokens[*t].exp > ts + 60_000);
                let t = match valid {
                    Some(t) => t,
                    None => {
                        let t = self.new_token(
                            Some(&u.subject),
                            agent.client_id(),
                            u.format,
                            ts,
                            agent.token_lifetime_ms(),
                        );
                        token = Some(t);
                        used.push((t, ts, ts));
                        t
                    }
                };
                // Browser updates: patch bumps often, a major bump sometimes.
                if self.rng.gen_bool(0.002) {
                    patch += 1;
                }
                if agent.chromium() && self.rng.gen_bool(0.0005) {
                    major += 1;
                }
                let ip_city = if traveler { city } else { u.home_city };
                if self.rng.gen_bool(0.12) {
                    wifi = !wifi;
                }
                if u.vpn_toggle && self.rng.gen_bool(0.08) {
                    vpn_on = !vpn_on;
                }
                let abroad = traveler && city != u.home_city;
                let ip = if u.relay {
                    self.country_block_ip(u.home_city, NetClass::Vpn)
                } else if vpn_on {
                    self.ambiguous.insert(t);
                    self.vpn_ip(u.home_city)
                } else if abroad && roaming && self.rng.gen_bool(0.4) {
                    // Home-routed roaming: the phone's carrier traffic leaves
                    // from its home country while the hotel's Wi-Fi is here.
                    self.ambiguous.insert(t);
                    let carrier = self.world.isps[u.isp | 1].asn;
                    let b = self
                        .world
                        .block(carrier, u.home_city)
                        .expect("home carrier");
                    self.world.addr(b, self.rng.gen_range(0..40))
                } else if u.mobile && u.handoff && wifi && !abroad {
                    let home = self.world.isps[u.isp & !1].asn;
                    let b = self.world.block(home, u.home_city).expect("home isp");
                    self.world.addr(b, u.addr_seed)
                } else if u.mobile && !abroad && self.rng.gen_bool(self.sc.country_geo_share) {
                    self.country_block_ip(u.home_city, NetClass::Mobile)
                } else {
                    self.user_ip(&uu, ip_city)
                };
                // An app's launch calls leave within a second over one
                // connection pool: one address (a carrier hops only later).
                let ip = match launch_ip {
                    Some(first) if in_launch => first,
                    _ => ip,
                };
                launch_ip = Some(ip);
                let req = self.user_request(&uu, t, ts, ip, major, patch);
                // The app's plain URLSession / okhttp calls: the platform's
                // default agent, same TLS stack, same address, same second.
                if u.two_agents && agent.app() && self.rng.gen_bool(0.35) {
                    let mut extra = req.clone();
                    extra.agent = agent.platform_default();
                    extra.ts += self.rng.gen_range(50..900);
                    self.reqs.push(extra);
                }
                self.reqs.push(req);
                if let Some(last) = used.iter_mut().rev().find(|x| x.0 == t) {
                    last.2 = ts;
                }
                in_launch = launch > 0;
                ts += if launch > 0 {
                    launch -= 1;
                    self.rng.gen_range(100..1_500)
                } else {
                    self.exp_gap(session_think)
                };
            }
            last_end = ts;
        }
        used
    }

    /// An address of a network geolocated only to `city`'s country: a
    /// carrier's pool (`Mobile`) or relay egress (`Vpn`), a new one each time.
    fn country_block_ip(&mut self, city: usize, class: NetClass) -> IpAddr {
        let world = self.world;
        let country = world::city(city).country;
        let b = world
            .blocks
            .iter()
            .position(|b| {
                b.country_only
                    && world.isps[b.isp].class == class
                    && world::city(b.city).country == country
            })
            .expect("every country has country-level blocks");
        world.addr(b, self.rng.gen_range(0..1000))
    }

    /// A commercial VPN exit the user's laptop uses (the same one each time).
    fn vpn_ip(&mut self, home: usize) -> IpAddr {
        let world = self.world;
        let m247 = world.isps.iter().position(|i| i.asn == 9009).expect("vpn");
        let blocks = world.blocks_of(m247);
        let b = blocks[home % blocks.len()];
        world.addr(b, 300 + (home as u32 % 50))
    }

    /// The residential (or mobile) ISP of the same class in another city's country.
    fn world_isp_for(&self, city: usize, like: usize) -> usize {
        let class = self.world.isps[like].class;
        (0..self.world.isps.len())
            .find(|i| {
                self.world.isps[*i].class == class
                    && self.world.isps[*i].cities.iter().any(|(c, _)| *c == city)
            })
            .unwrap_or(like)
    }

    fn services(&mut self) -> Vec<usize> {
        let world = self.world;
        let aws = world.isps.iter().position(|i| i.asn == 16509).expect("aws");
        let blocks = world.blocks_of(aws);
        let mut toks = Vec::new();
        for s in 0..self.sc.services {
            let client = match s % 3 {
                0 => format!("svc-billing-{s}"),
                1 => format!("nightly-export-{s}"),
                _ => format!("svc-ramp-{s}"),
            };
            let format = s as usize % self.sc.formats.len();
            let block = blocks[s as usize % blocks.len()];
            let mut ts = self.t0 + self.rng.gen_range(0..600_000);
            let mut token = self.new_token(None, &client, format, ts, 3_600_000);
            let mut page = 1u32;
            toks.push(token);
            while ts < self.t_end {
                if self.tokens[token].exp < ts + 60_000 {
                    token = self.new_token(None, &client, format, ts, 3_600_000);
                    toks.push(token);
                }
                let progress = (ts - self.t0) as f64 / (self.t_end - self.t0) as f64;
                let per_min = match s % 3 {
                    0 => 60.0,
                    1 => 150.0,
                    _ => 5.0 + 150.0 * progress,
                };
                let (path, route, bytes) = if s % 3 == 1 {
                    page += 1;
                    (
                        format!("/v1/records?page={page}"),
                        "records",
                        self.rng.gen_range(100_000..250_000),
                    )
                } else {
                    (
                        format!("/v1/invoices/{}", self.rng.gen_range(100_000..999_999)),
                        "invoices",
                        3000,
                    )
                };
                // Many pods: one address per pod, same ASN, same client software.
                let ip = world.addr(block, self.rng.gen_range(0..24));
                self.reqs.push(Req {
                    ts,
                    token,
                    ip,
                    agent: Agent::GoHttp,
                    major: 2,
                    patch: 0,
                    lang: "",
                    method: "GET",
                    path,
                    route,
                    status: 200,
                    bytes,
                });
                ts += self.exp_gap(60.0 / per_min);
            }
        }
        toks
    }

    fn attacker_ip(&mut self, asn: u32, city: usize) -> IpAddr {
        let b = self.world.block(asn, city).expect("attacker block");
        self.world.addr(b, self.rng.gen_range(500..900))
    }

    /// Requests per minute in use of `tok`'s subject (or token) before
    /// `before`: idle gaps under 5 minutes count as use, as the detector
    /// counts them. `None` without a few minutes of history.
    fn usual_rate(&self, tok: usize, before: i64) -> Option<f64> {
        let subject = self.tokens[tok].subject.as_deref();
        let mut ts: Vec<i64> = self
            .reqs
            .iter()
            .filter(|r| r.ts < before)
            .filter(|r| {
                r.token == tok
                    || (subject.is_some() && self.tokens[r.token].subject.as_deref() == subject)
            })
            .map(|r| r.ts)
            .collect();
        ts.sort_unstable();
        let busy_ms: i64 = ts
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|gap| *gap < 5 * 60_000)
            .sum();
        let minutes = busy_ms as f64 / 60_000.0 + 1.0;
        (minutes >= 5.0).then(|| ts.len() as f64 / minutes)
    }

    /// Inject one attack on a victim token; returns its label.
    fn attack(
        &mut self,
        kind: FindingKind,
        n: usize,
        u: &User,
        tok: usize,
        first: i64,
        last: i64,
    ) -> Label {
        let exp = self.tokens[tok].exp - 30_000;
        // Leave the attack at least 16 minutes before the token expires (the
        // gateway would refuse it after), so every label is a real attack.
        let latest = (exp - 16 * 60_000)
            .min(self.t_end - 20 * 60_000)
            .min(last)
            .max(first + 120_000);
        // A phone app's token is attacked after an hour and 30 requests of
        // its own history (a quiet app has a baseline to be judged by).
        let earliest = if u.agent.app() {
            let mut own: Vec<i64> = self
                .reqs
                .iter()
                .filter(|r| r.token == tok)
                .map(|r| r.ts)
                .collect();
            own.sort_unstable();
            own.get(30).map(|t| t - first).unwrap_or(0).max(60 * 60_000)
        } else {
            60_000
        };
        let start = first
            + self
                .rng
                .gen_range(earliest.min(latest - first - 1)..(latest - first));
        let world = self.world;
        let far_city = (u.home_city + 7 + n % 5) % world::CITIES.len();
        let far_city = if world::city(far_city).country == world::city(u.home_city).country {
            (far_city + 3) % world::CITIES.len()
        } else {
            far_city
        };
        let mut reqs = Vec::new();
        let mut ts = start;
        let description;
        let mut variant = "";
        match kind {
            FindingKind::TokenReplay if n % 3 == 2 => {
                // A second device in the victim's household: the same
                // address, another browser (another TLS stack, another agent).
                variant = "same_network";
                let ip = self.user_ip(u, u.home_city);
                let agent = match u.agent {
                    Agent::FirefoxWin | Agent::SafariMac => Agent::ChromeWin,
                    _ => Agent::SafariMac,
                };
                description = format!(
                    "a second device on the victim's own address ({})",
                    agent.ua(133, 0)
                );
                for _ in 0..self.rng.gen_range(15..40) {
                    let mut r = self.user_request(u, tok, ts, ip, 133, 0);
                    r.agent = agent;
                    reqs.push(r);
                    ts += self.exp_gap(20.0);
                }
            }
            FindingKind::TokenReplay => {
                // Same country, another device, residential network.
                variant = "other_device";
                let isp = world
                    .isps
                    .iter()
                    .position(|i| i.asn == world.isps[u.isp & !1].asn)
                    .expect("isp");
                let city = world.isps[isp].cities[0].0;
                let ip = self.attacker_ip(world.isps[isp].asn, city);
                let agent = if n.is_multiple_of(2) {
                    Agent::PythonRequests
                } else if u.agent == Agent::FirefoxWin {
                    Agent::ChromeWin
                } else {
                    Agent::FirefoxWin
                };
                description = format!(
                    "replayed from another device ({}) in {}",
                    agent.ua(133, 0),
                    world::city(city).name
                );
                for _ in 0..self.rng.gen_range(15..40) {
                    let mut r = self.user_request(u, tok, ts, ip, 133, 0);
                    r.agent = agent;
                    reqs.push(r);
                    ts += self.exp_gap(20.0);
                }
            }
            FindingKind::ImpossibleTravel => {
                // Same user agent copied; far away, while the victim is active.
                let isp = world
                    .isps
                    .iter()
                    .position(|i| {
                        i.cities.iter().any(|c| c.0 == far_city)
                            && i.class == crate::event::NetClass::Residential
                    })
                    .expect("isp");
                let ip = self.attacker_ip(world.isps[isp].asn, far_city);
                description = format!("same user agent, used from {}", world::city(far_city).name);
                for _ in 0..self.rng.gen_range(10..30) {
                    reqs.push(self.user_request(u, tok, ts, ip, 131, 90));
                    ts += self.exp_gap(30.0);
                }
            }
            FindingKind::SuspiciousNetwork => {
                let (asn, agent) = if n.is_multiple_of(2) {
                    (14061, Agent::Curl)
                } else {
                    (9009, Agent::PythonRequests)
                };
                let isp = world.isps.iter().position(|i| i.asn == asn).expect("dc");
                // The data-centre location nearest to the victim: no travel signal.
                let home = world::city(u.home_city);
                let city = world.isps[isp]
                    .cities
                    .iter()
                    .map(|(c, _)| *c)
                    .min_by_key(|c| {
                        let cc = world::city(*c);
                        crate::detect::detectors::haversine_km(cc.lat, cc.lon, home.lat, home.lon)
                            as i64
                    })
                    .expect("cities");
                let ip = self.attacker_ip(asn, city);
                description = format!("scripted use from AS{asn} in {}", world::city(city).name);
                for _ in 0..self.rng.gen_range(10..30) {
                    let mut r = self.user_request(u, tok, ts, ip, 8, 0);
                    r.agent = agent;
                    reqs.push(r);
                    ts += self.exp_gap(15.0);
                }
            }
            FindingKind::BulkSiphon => {
                // From the victim's own device and place: only volume gives
                // it away. A burst (20-80x the victim's usual rate for 4-12
                // minutes) or a slow pull (4-8x for 30-45 minutes); for a
                // quiet phone app both are low in absolute terms.
                let ip = self.user_ip(u, u.home_city);
                let think = if u.agent.app() {
                    self.sc.app_think_secs
                } else {
                    self.sc.think_secs
                };
                // "Usual" is the victim's own: requests per minute in use
                // (idle gaps under 5 minutes count) over its subject's
                // history, which varies from session to session.
                let usual = self.usual_rate(tok, ts).unwrap_or(60.0 / think);
                let slow = n % 2 == 1;
                let (factor, minutes) = if slow {
                    (self.rng.gen_range(4.0..8.0), self.rng.gen_range(30..45))
                } else {
                    (self.rng.gen_range(20.0..80.0), self.rng.gen_range(4..12))
                };
                variant = if slow { "slow" } else { "burst" };
                let rate = usual * factor;
                description = format!(
                    "{variant} paginated export at ~{rate:.1} requests/min ({factor:.0}x the usual {usual:.1}) for {minutes} min"
                );
                let mut page = 1;
                let until = ts + i64::from(minutes) * 60_000;
                while ts < until {
                    let mut r = self.user_request(u, tok, ts, ip, 131, 90);
                    r.method = "GET";
                    r.path = format!("/v1/records?page={page}");
                    r.route = "records";
                    r.status = 200;
                    r.bytes = self.rng.gen_range(150_000..400_000);
                    page += 1;
                    reqs.push(r);
                    ts += self.exp_gap(60.0 / rate);
                }
            }
            FindingKind::Enumeration => {
                // Fast (a request every ~0.7 s) or low and slow (0.1-0.3/s
                // for 9-24 minutes); sequential or random ids.
                let ip = self.user_ip(u, u.home_city);
                let slow = n % 2 == 1;
                let random = n % 4 >= 2;
                variant = if slow { "slow" } else { "fast" };
                let first_id: u32 = self.rng.gen_range(10_000..20_000);
                let (gap, until) = if slow {
                    (
                        1.0 / self.rng.gen_range(0.1..0.3),
                        ts + self.rng.gen_range(9 * 60_000..24 * 60_000),
                    )
                } else {
                    (0.7, ts + self.rng.gen_range(120..250) * 700)
                };
                description = format!(
                    "{variant} enumeration of {} account ids, one every {gap:.1} s, mostly 404/403",
                    if random { "random" } else { "sequential" }
                );
                let mut id = first_id;
                while ts < until {
                    id = if random {
                        self.rng.gen_range(10_000..99_999)
                    } else {
                        id + 1
                    };
                    let mut r = self.user_request(u, tok, ts, ip, 131, 90);
                    r.method = "GET";
                    r.path = format!("/v1/accounts/{id}");
                    r.route = "accounts";
                    r.status = if self.rng.gen_bool(0.85) {
                        if id.is_multiple_of(2) { 404 } else { 403 }
                    } else {
                        200
                    };
                    r.bytes = if r.status == 200 { 2500 } else { 90 };
                    reqs.push(r);
                    ts += self.exp_gap(gap);
                }
            }
        }
        reqs.retain(|r| r.ts < exp.min(self.t_end));
        // Attackers keep the victim's exact agent version for copied UAs.
        for r in &mut reqs {
            if r.agent == u.agent {
                r.major = if u.agent.chromium() { 131 } else { 133 };
            }
        }
        let end = reqs.last().map(|r| r.ts).unwrap_or(start);
        self.reqs.extend(reqs);
        Label {
            attack_id: format!("a-{}-{n}", kind.as_str()),
            kind,
            token_id: String::new(),
            subject: Some(u.subject.clone()),
            start_ts: start,
            end_ts: end,
            description,
            variant: variant.to_string(),
        }
    }
}

/// The token id tokenwatch derives for a synthetic token in its format.
fn token_id(t: &Token, format: &str, hasher: &TokenHasher) -> String {
    match format {
        "kong" => format!("c:{}", t.credential),
        "tyk" => hasher.id(&t.secret),
        _ => t.jti.clone(),
    }
}

fn jwt(t: &Token) -> String {
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = e.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let mut claims = json!({
        "iss": "https://idp.example.com/",
        "client_id": t.client_id,
        "jti": t.jti,
        "iat": t.issued / 1000,
        "exp": t.exp / 1000,
        "scope": "records:read accounts:read",
    });
    if let Some(s) = &t.subject {
        claims["sub"] = json!(s);
        // RFC 9068 tokens issued to an OIDC client carry `azp` as well
        // (Keycloak, Auth0 and others add it): both must be read.
        claims["azp"] = json!(t.client_id);
        claims["aud"] = json!(["https://api.example.com", "account"]);
    }
    let payload = e.encode(claims.to_string());
    format!("Bearer {header}.{payload}.c2lnbmF0dXJl")
}

fn rfc3339(ts: i64) -> String {
    crate::event::fmt_time(ts)
}

/// Write one request as a record of `format`.
fn encode(r: &Req, t: &Token, format: &str, rng: &mut ChaCha8Rng) -> serde_json::Value {
    let ua = r.agent.ua(r.major, r.patch);
    let ip = r.ip.to_string();
    let lang = if r.lang.is_empty() {
        "-".to_string()
    } else {
        r.lang.to_string()
    };
    match format {
        "envoy" => {
            // Chromium randomises extension order: its JA3 churns, JA4 does not.
            let ja3 = if r.agent.chromium() {
                format!("{:032x}", rng.r#gen::<u128>())
            } else {
                format!(
                    "{:032x}",
                    crate::event::stable_hash(r.agent.ja4().as_bytes()) as u128 * 7
                )
            };
            json!({
                "start_time": rfc3339(r.ts), "method": r.method, "path": r.path, "protocol": "HTTP/2",
                "response_code": r.status, "response_flags": "-", "bytes_received": 0, "bytes_sent": r.bytes,
                "duration": 40, "upstream_service_time": "38", "x_forwarded_for": ip,
                "downstream_remote_address": format!("{}:{}", if r.ip.is_ipv6() { format!("[{ip}]") } else { ip.clone() }, 40000 + (r.ts % 20000)),
                "user_agent": ua, "request_id": format!("{:x}", rng.r#gen::<u64>()), "authority": "api.example.com",
                "route_name": r.route, "upstream_host": "10.0.3.14:8080", "authorization": jwt(t),
                "accept_language": lang, "ja3": ja3, "ja4": r.agent.ja4(),
            })
        }
        "kong" => json!({
            // Kong behind a load balancer with `trusted_ips` and
            // `real_ip_header = X-Forwarded-For`: `client_ip` is the real
            // client, the logged header is the one the balancer sent.
            "started_at": r.ts, "client_ip": ip, "upstream_uri": r.path, "source": "upstream",
            "request": {"method": r.method, "uri": r.path, "url": format!("https://api.example.com{}", r.path), "size": 380,
                "headers": {"host": "api.example.com", "user-agent": ua, "accept-language": lang, "authorization": "REDACTED",
                    "x-forwarded-for": ip}},
            "response": {"status": r.status, "size": r.bytes},
            "latencies": {"kong": 1, "proxy": 38, "request": 40},
            "route": {"name": r.route}, "service": {"name": format!("{}-api", r.route)},
            "consumer": {"id": "8f2c1d3e", "username": t.subject.clone().unwrap_or_else(|| t.client_id.clone()), "custom_id": t.subject},
            "authenticated_entity": {"id": t.credential}, "upstream_status": r.status.to_string(),
        }),
        "apisix" => json!({
            "start_time": r.ts, "client_ip": ip, "route_id": r.route, "service_id": format!("{}-api", r.route),
            "consumer": {"username": t.subject.clone().unwrap_or_else(|| t.client_id.clone())},
            "request": {"method": r.method, "uri": r.path, "size": 380,
                "headers": {"host": "api.example.com", "authorization": jwt(t), "user-agent": ua, "accept-language": lang}},
            "response": {"status": r.status, "size": r.bytes}, "upstream": "10.0.3.14:8080",
            "latency": 40.5, "upstream_latency": 38, "apisix_latency": 2.5,
        }),
        "nginx" => json!({
            "time": rfc3339(r.ts), "msec": format!("{:.3}", r.ts as f64 / 1000.0), "remote_addr": ip,
            "realip_remote_addr": "10.0.0.5", "http_x_forwarded_for": format!("{ip}, 10.0.0.5"),
            "request_method": r.method, "request_uri": r.path, "server_protocol": "HTTP/2.0", "status": r.status,
            "body_bytes_sent": r.bytes, "request_time": 0.04, "http_user_agent": ua, "http_authorization": jwt(t),
            "http_accept_language": lang,
        }),
        "traefik" => json!({
            "StartUTC": rfc3339(r.ts), "ClientAddr": format!("{ip}:51544"), "ClientHost": ip, "RequestMethod": r.method,
            "RequestPath": r.path, "RequestProtocol": "HTTP/2.0", "RouterName": format!("{}@file", r.route),
            "DownstreamStatus": r.status, "DownstreamContentSize": r.bytes, "Duration": 40_000_000,
            "request_User-Agent": ua, "request_Authorization": jwt(t), "request_Accept-Language": lang,
        }),
        "aws_apigw" => json!({
            "requestId": format!("{:x}", rng.r#gen::<u64>()), "requestTimeEpoch": r.ts.to_string(), "ip": ip,
            "httpMethod": r.method, "routeKey": format!("{} /v1/{}", r.method, r.route), "path": r.path,
            "status": r.status.to_string(), "responseLength": r.bytes.to_string(), "userAgent": ua,
            "sub": t.subject.clone().unwrap_or_else(|| "-".into()), "jti": t.jti, "client_id": t.client_id,
            "apiKeyId": "-", "principalId": "-",
        }),
        _ => json!({
            "method": r.method, "host": "api.example.com", "path": r.path.split('?').next().unwrap_or(""), "raw_path": r.path,
            "response_code": r.status, "user_agent": ua, "api_key": t.secret, "timestamp": rfc3339(r.ts),
            "api_name": r.route, "api_id": format!("{}-api", r.route), "oauth_id": t.client_id,
            "ip_address": ip, "alias": t.subject.clone().unwrap_or_default(), "request_time_ms": 40,
        }),
    }
}

/// Generate a dataset. `hash_key` must be the key tokenwatch will use for
/// opaque tokens (labels carry the token ids it will derive).
pub fn generate(sc: &Scenario, name: &str, hash_key: &[u8]) -> Result<Dataset, String> {
    for f in &sc.formats {
        if crate::format::Preset::parse(f).is_none() {
            return Err(format!(
                "scenario format `{f}` is not a preset ({})",
                crate::format::Preset::NAMES.join(", ")
            ));
        }
    }
    if sc.formats.is_empty() || sc.users == 0 || sc.hours == 0 {
        return Err("a scenario needs formats, users > 0 and hours > 0".into());
    }
    let t0 = crate::decode::parse_rfc3339(&sc.start)
        .ok_or_else(|| format!("start: `{}` is not RFC 3339", sc.start))?;
    let world = World::new();
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(sc.seed),
        world: &world,
        sc,
        t0,
        t_end: t0 + i64::from(sc.hours) * 3_600_000,
        tokens: Vec::new(),
        reqs: Vec::new(),
        ambiguous: Default::default(),
    };
    let users = g.users();
    let mut usage: Vec<Vec<(usize, i64, i64)>> = Vec::with_capacity(users.len());
    for u in &users {
        let used = g.user_traffic(u);
        usage.push(used);
    }
    g.services();

    // Victims: users with a web token used ≥ 15 min, not their first token
    // (so that the subject has history), each attacked once; and, for
    // siphoning, quiet phone apps whose token has an hour of history.
    let mut candidates: Vec<(usize, usize, i64, i64)> = Vec::new();
    let mut app_candidates: Vec<(usize, usize, i64, i64)> = Vec::new();
    for (ui, used) in usage.iter().enumerate() {
        for (k, (t, first, last)) in used.iter().enumerate() {
            if g.ambiguous.contains(t) {
                continue;
            }
            if k >= 1 && last - first >= 15 * 60_000 && !users[ui].mobile {
                candidates.push((ui, *t, *first, *last));
                break;
            }
            if users[ui].agent.app() && last - first >= 100 * 60_000 {
                app_candidates.push((ui, *t, *first, *last));
                break;
            }
        }
    }
    candidates.shuffle(&mut g.rng);
    app_candidates.shuffle(&mut g.rng);
    let hasher = TokenHasher::new(hash_key);
    let mut labels = Labels {
        scenario: name.to_string(),
        seed: sc.seed,
        ..Default::default()
    };
    let mut attacked = std::collections::BTreeSet::new();
    let mut next = candidates.into_iter();
    let mut next_app = app_candidates.into_iter();
    for (kind, count) in &sc.attacks {
        for n in 0..*count as usize {
            let app = *kind == FindingKind::BulkSiphon && n % 4 >= 2;
            let pick = if app { next_app.next() } else { None };
            let Some((ui, t, first, last)) = pick.or_else(|| next.next()) else {
                return Err(
                    "not enough victim candidates: raise users or sessions_per_user".into(),
                );
            };
            let mut label = g.attack(*kind, n, &users[ui], t, first, last);
            if users[ui].agent.app() {
                label.variant = format!("{}_app", label.variant);
            }
            let tok = &g.tokens[t];
            label.token_id = token_id(tok, &sc.formats[tok.format], &hasher);
            attacked.insert(t);
            labels.attacks.push(label);
        }
    }
    let used_tokens: std::collections::BTreeSet<usize> = g.reqs.iter().map(|r| r.token).collect();
    for t in &used_tokens {
        if attacked.contains(t) {
            continue;
        }
        let tok = &g.tokens[*t];
        let id = token_id(tok, &sc.formats[tok.format], &hasher);
        if g.ambiguous.contains(t) {
            labels.ambiguous_tokens.push(id);
        } else {
            labels.benign_tokens.push(id);
        }
    }
    let mut reqs = std::mem::take(&mut g.reqs);
    reqs.sort_by_key(|r| r.ts);
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for r in &reqs {
        let t = &g.tokens[r.token];
        let format = &sc.formats[t.format];
        let rec = encode(r, t, format, &mut g.rng);
        let buf = files.entry(format.clone()).or_default();
        serde_json::to_writer(&mut *buf, &rec).map_err(|e| e.to_string())?;
        buf.push(b'\n');
    }
    Ok(Dataset {
        files,
        labels,
        events: reqs.len(),
    })
}

/// Write a dataset as `<dir>/<format>.jsonl[.gz]` plus `labels.json`, and the
/// GeoIP databases as `<dir>/geo/{city,asn}.mmdb`.
pub fn write(ds: &Dataset, dir: &Path, gzip: bool) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir.join("geo"))?;
    let mut written = Vec::new();
    for (format, data) in &ds.files {
        let path = if gzip {
            dir.join(format!("{format}.jsonl.gz"))
        } else {
            dir.join(format!("{format}.jsonl"))
        };
        let file = std::fs::File::create(&path)?;
        if gzip {
            let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::new(6));
            enc.write_all(data)?;
            enc.finish()?;
        } else {
            std::io::BufWriter::new(file).write_all(data)?;
        }
        written.push(path.display().to_string());
    }
    let labels = dir.join("labels.json");
    std::fs::write(
        &labels,
        serde_json::to_vec_pretty(&ds.labels).map_err(std::io::Error::other)?,
    )?;
    written.push(labels.display().to_string());
    write_geo(&dir.join("geo"))?;
    written.push(dir.join("geo/city.mmdb").display().to_string());
    written.push(dir.join("geo/asn.mmdb").display().to_string());
    Ok(written)
}

/// Write the synthetic world's GeoIP databases into `dir`.
pub fn write_geo(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let (city, asn) = World::new().mmdb().map_err(std::io::Error::other)?;
    std::fs::write(dir.join("city.mmdb"), city)?;
    std::fs::write(dir.join("asn.mmdb"), asn)
}

/// Load a scenario file.
pub fn load_scenario(path: &Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}
