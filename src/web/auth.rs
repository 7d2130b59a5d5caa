//! Who is asking: local users (Argon2id), sessions in cookies, API keys,
//! CSRF tokens and login rate limits.
//!
//! Sessions live in memory (a restart logs everyone out). The cookie holds
//! 32 random bytes; the server keeps only their SHA-256, the user, the role,
//! the session's CSRF token and its times. A login always starts a new
//! session (the old one is dropped), so a planted cookie is worthless.

use std::collections::HashMap;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use dashmap::DashMap;
use sha2::{Digest, Sha256};

use crate::config::{DashboardConfig, Role};

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    /// The session's CSRF token (pages put it in forms); `None` for API keys.
    pub csrf: Option<String>,
}

impl Caller {
    pub fn can(&self, role: Role) -> bool {
        self.role >= role
    }
}

#[derive(Debug)]
struct Session {
    name: String,
    role: Role,
    csrf: String,
    created_ms: i64,
    last_ms: i64,
}

/// A user whose password works once, before a deadline (the demo's admin,
/// and `run`'s when no user is configured).
pub struct OneTimeUser {
    pub name: String,
    pub role: Role,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Refused from this wall-clock time (ms) on, used or not.
    pub expires_ms: i64,
}

pub struct Auth {
    users: HashMap<String, (Role, String)>,
    /// One-time users by name; an entry is removed by its first successful
    /// login, so the password is spent.
    one_time: std::sync::Mutex<HashMap<String, (Role, String, i64)>>,
    /// (name, role, SHA-256 of the key).
    keys: Vec<(String, Role, [u8; 32])>,
    sessions: DashMap<[u8; 32], Session>,
    idle_ms: i64,
    absolute_ms: i64,
    pub secure: bool,
    /// Failed logins per client network and per (user, network).
    pub limiter: super::limit::LoginLimiter,
    /// Password verifications running at once (Argon2id is slow by
    /// design): a flood of logins waits here instead of taking every core.
    pub verify_slots: tokio::sync::Semaphore,
    /// Reverse proxies whose X-Forwarded-For names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Verified against when the user is unknown, so timing does not tell.
    decoy: String,
}

pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes), as a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing the password: {e}"))
}

fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Constant-time comparison of two byte strings.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// `one_time` users are added to the configured ones (the demo's admin):
    /// each password logs in once, before its deadline.
    pub fn new(
        cfg: &DashboardConfig,
        one_time: Vec<OneTimeUser>,
        secure: bool,
    ) -> Result<Auth, String> {
        let mut users = HashMap::new();
        for u in &cfg.users {
            users.insert(u.name.clone(), (u.role, u.password_hash.clone()));
        }
        let one_time = one_time
            .into_iter()
            .filter(|u| !users.contains_key(&u.name))
            .map(|u| (u.name, (u.role, u.password_hash, u.expires_ms)))
            .collect();
        let mut keys = Vec::new();
        for (i, k) in cfg.api_keys.iter().enumerate() {
            let key = crate::config::resolve_secret(&k.key)
                .map_err(|e| format!("dashboard.api_keys[{i}].key: {e}"))?;
            if key.len() < 32 {
                return Err(format!(
                    "dashboard.api_keys[{i}].key: at least 32 characters (e.g. `openssl rand -hex 32`)"
                ));
            }
            keys.push((k.name.clone(), k.role, digest(&key)));
        }
        Ok(Auth {
            users,
            one_time: std::sync::Mutex::new(one_time),
            keys,
            sessions: DashMap::new(),
            idle_ms: (cfg.idle_timeout_secs * 1000) as i64,
            absolute_ms: (cfg.absolute_timeout_secs * 1000) as i64,
            secure,
            limiter: super::limit::LoginLimiter::new(cfg.login_attempts_per_minute, 10_000),
            verify_slots: tokio::sync::Semaphore::new(2),
            trusted_proxies: cfg.trusted_proxies.clone(),
            decoy: hash_password("decoy-password-for-timing")?,
        })
    }

    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-tw_session"
        } else {
            "tw_session"
        }
    }

    /// The `Set-Cookie` value for a session id (`None`: expire it).
    pub fn cookie(&self, value: Option<&str>) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        match value {
            Some(v) => format!(
                "{}={v}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                self.cookie_name(),
                self.absolute_ms / 1000
            ),
            None => format!(
                "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
                self.cookie_name()
            ),
        }
    }

    /// Check a password (slow: call off the async threads). A one-time
    /// user's password is refused after its deadline and spent by its first
    /// success.
    pub fn check_password(&self, name: &str, password: &str, now_ms: i64) -> Option<Role> {
        if let Some((role, phc)) = self.users.get(name) {
            return verify(password, phc).then_some(*role);
        }
        let one_time = self
            .one_time
            .lock()
            .ok()
            .and_then(|m| m.get(name).cloned())
            .filter(|(_, _, until)| now_ms < *until);
        let Some((role, phc, _)) = one_time else {
            verify(password, &self.decoy);
            return None;
        };
        if !verify(password, &phc) {
            return None;
        }
        // Spent: of two logins racing with the right password, the one that
        // removes the entry wins.
        let spent = self.one_time.lock().ok()?.remove(name).is_some();
        spent.then_some(role)
    }

    /// Start a session; `old` (the cookie sent with the login) is dropped.
    /// Returns the new cookie value.
    pub fn login(&self, name: &str, role: Role, old: Option<&str>, now_ms: i64) -> String {
        if let Some(o) = old {
            self.sessions.remove(&digest(o));
        }
        // Expired sessions go away as people log in.
        self.sessions.retain(|_, s| {
            now_ms - s.last_ms < self.idle_ms && now_ms - s.created_ms < self.absolute_ms
        });
        let id = random_token();
        self.sessions.insert(
            digest(&id),
            Session {
                name: name.to_string(),
                role,
                csrf: random_token(),
                created_ms: now_ms,
                last_ms: now_ms,
            },
        );
        id
    }

    pub fn logout(&self, cookie: &str) {
        self.sessions.remove(&digest(cookie));
    }

    /// The session behind a cookie, if it is still alive (touches it).
    pub fn session(&self, cookie: &str, now_ms: i64) -> Option<Caller> {
        let key = digest(cookie);
        let mut s = self.sessions.get_mut(&key)?;
        if now_ms - s.last_ms >= self.idle_ms || now_ms - s.created_ms >= self.absolute_ms {
            drop(s);
            self.sessions.remove(&key);
            return None;
        }
        s.last_ms = now_ms;
        Some(Caller {
            name: s.name.clone(),
            role: s.role,
            csrf: Some(s.csrf.clone()),
        })
    }

    /// The API key behind a bearer token.
    pub fn api_key(&self, bearer: &str) -> Option<Caller> {
        let d = digest(bearer);
        self.keys
            .iter()
            .find(|(_, _, k)| same(k, &d))
            .map(|(name, role, _)| Caller {
                name: format!("key:{name}"),
                role: *role,
                csrf: None,
            })
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(idle: u64, absolute: u64) -> Auth {
        let cfg = DashboardConfig {
            idle_timeout_secs: idle,
            absolute_timeout_secs: absolute,
            login_attempts_per_minute: 3,
            ..Default::default()
        };
        let cfg = DashboardConfig {
            users: vec![crate::config::UserConfig {
                name: "ana".into(),
                role: Role::Responder,
                password_hash: hash_password("correct horse").unwrap(),
            }],
            ..cfg
        };
        Auth::new(&cfg, Vec::new(), false).unwrap()
    }

    #[test]
    fn passwords_are_argon2id_and_checked() {
        let a = auth(60, 600);
        assert!(hash_password("x").unwrap().starts_with("$argon2id$"));
        assert_eq!(
            a.check_password("ana", "correct horse", 0),
            Some(Role::Responder)
        );
        assert_eq!(a.check_password("ana", "wrong", 0), None);
        assert_eq!(a.check_password("nobody", "correct horse", 0), None);
    }

    /// Issue 14, point 15: the demo's admin password logs in once, and not
    /// after its deadline.
    #[test]
    fn one_time_passwords_are_spent_by_their_first_login_and_expire() {
        let user = |name: &str| OneTimeUser {
            name: name.into(),
            role: Role::Admin,
            password_hash: hash_password("one-time-pw").unwrap(),
            expires_ms: 10_000,
        };
        let a = Auth::new(
            &DashboardConfig::default(),
            vec![user("admin"), user("late")],
            false,
        )
        .unwrap();
        assert_eq!(a.check_password("admin", "wrong", 0), None);
        assert_eq!(
            a.check_password("admin", "one-time-pw", 0),
            Some(Role::Admin)
        );
        assert_eq!(a.check_password("admin", "one-time-pw", 1), None, "spent");
        assert_eq!(
            a.check_password("late", "one-time-pw", 10_000),
            None,
            "expired"
        );
    }

    #[test]
    fn sessions_rotate_and_expire_idle_and_absolute() {
        let a = auth(60, 300);
        let first = a.login("ana", Role::Responder, None, 0);
        assert!(a.session(&first, 1_000).is_some());
        let second = a.login("ana", Role::Responder, Some(&first), 2_000);
        assert_ne!(first, second);
        assert!(a.session(&first, 3_000).is_none(), "rotated at login");
        // Idle: 60 s without a request.
        assert!(a.session(&second, 2_000 + 59_000).is_some());
        assert!(a.session(&second, 2_000 + 59_000 + 60_000).is_none());
        // Absolute: kept busy, still ends after 300 s.
        let third = a.login("ana", Role::Responder, None, 0);
        for t in (30_000..300_000).step_by(30_000) {
            assert!(a.session(&third, t).is_some());
        }
        assert!(a.session(&third, 300_000).is_none());
    }

    #[test]
    fn cookies_are_httponly_strict_and_secure_when_asked() {
        let a = auth(60, 600);
        let c = a.cookie(Some("v"));
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"));
        let cfg = DashboardConfig::default();
        let s = Auth::new(&cfg, Vec::new(), true).unwrap();
        let c = s.cookie(Some("v"));
        assert!(c.starts_with("__Host-") && c.contains("; Secure"));
    }
}
