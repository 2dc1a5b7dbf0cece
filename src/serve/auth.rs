//! Who is asking: per-person tokens (a bearer header, or the page's cookie after
//! `/login`), a trusted header set by an authenticating proxy, and the webhook's
//! own bearer token; the CSRF token of the page's forms; a per-address rate limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;
use sha2::{Digest, Sha256};

/// The name of the page's session cookie (its value is the person's token).
pub const COOKIE: &str = "runbook_token";

/// How a person was recognised. Only a bearer token is not ambient: a browser sends
/// cookies and a proxy's header with a cross-site request too, so those need the
/// CSRF token on anything that changes a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Bearer,
    Cookie,
    Header,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub via: Via,
}

/// The server's authentication settings.
pub struct Auth {
    /// token → person.
    tokens: HashMap<String, String>,
    /// `--trusted-header X-Forwarded-User`: the proxy in front says who it is.
    trusted_header: Option<http::HeaderName>,
    /// Alertmanager's `http_config.authorization` credentials.
    webhook_token: Option<String>,
    /// Random per process: the key of the CSRF tokens.
    secret: [u8; 32],
}

impl Auth {
    pub fn new(
        tokens: HashMap<String, String>,
        trusted_header: Option<http::HeaderName>,
        webhook_token: Option<String>,
    ) -> std::io::Result<Auth> {
        let mut secret = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut secret)?;
        Ok(Auth {
            tokens,
            trusted_header,
            webhook_token,
            secret,
        })
    }

    /// Some way for a person to authenticate is configured.
    pub fn people_configured(&self) -> bool {
        !self.tokens.is_empty() || self.trusted_header.is_some()
    }

    pub fn webhook_configured(&self) -> bool {
        self.webhook_token.is_some()
    }

    /// The person a request comes from, if any: a bearer token, then the cookie, then
    /// the trusted header.
    pub fn person(&self, headers: &HeaderMap) -> Option<Identity> {
        if let Some(token) = bearer(headers) {
            return self.name_of(token).map(|name| Identity {
                name,
                via: Via::Bearer,
            });
        }
        if let Some(token) = cookie(headers, COOKIE)
            && let Some(name) = self.name_of(&token)
        {
            return Some(Identity {
                name,
                via: Via::Cookie,
            });
        }
        let h = self.trusted_header.as_ref()?;
        let name = headers.get(h)?.to_str().ok()?.trim();
        (!name.is_empty()).then(|| Identity {
            name: name.to_owned(),
            via: Via::Header,
        })
    }

    /// The person a token belongs to (compared in constant time).
    pub fn name_of(&self, token: &str) -> Option<String> {
        let mut found = None;
        for (t, name) in &self.tokens {
            if constant_time_eq(t.as_bytes(), token.as_bytes()) {
                found = Some(name.clone());
            }
        }
        found
    }

    /// True when the webhook request carries the configured bearer token, or none is
    /// configured (only allowed on a loopback address: see `serve::check_bind`).
    pub fn webhook_ok(&self, headers: &HeaderMap) -> bool {
        match &self.webhook_token {
            None => true,
            Some(t) => {
                bearer(headers).is_some_and(|b| constant_time_eq(t.as_bytes(), b.as_bytes()))
            }
        }
    }

    /// The CSRF token of a person's forms: a keyed hash of their name, so it cannot
    /// be guessed from another site and needs no server-side session.
    pub fn csrf_for(&self, name: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(b"csrf\0");
        h.update(name.as_bytes());
        hex(&h.finalize()[..16])
    }

    /// True when `given` is this person's CSRF token.
    pub fn csrf_ok(&self, name: &str, given: Option<&str>) -> bool {
        given.is_some_and(|g| constant_time_eq(self.csrf_for(name).as_bytes(), g.as_bytes()))
    }
}

use crate::journal::digest::hex;

/// `Authorization: Bearer TOKEN`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A cookie's value.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read token file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:1: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
}

/// Parse a token file: one `name:token` a line; blank lines and `#` comments are
/// skipped. A token shorter than 16 characters, a repeated token or a line without
/// `:` is an error naming the line.
pub fn parse_tokens(path: &str, text: &str) -> Result<HashMap<String, String>, TokenError> {
    let mut out = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: String| TokenError::Line {
            path: path.to_owned(),
            line: i + 1,
            message,
        };
        let Some((name, token)) = line.split_once(':') else {
            return Err(err(
                "expected `name:token` (a person's name, a colon, their token)".into(),
            ));
        };
        let (name, token) = (name.trim(), token.trim());
        if name.is_empty() {
            return Err(err("the name before `:` is empty".into()));
        }
        if token.len() < 16 {
            return Err(err(format!(
                "the token of {name} is shorter than 16 characters; generate one with `openssl rand -hex 24`"
            )));
        }
        if out.insert(token.to_owned(), name.to_owned()).is_some() {
            return Err(err(format!(
                "the token of {name} is also another person's; every person needs their own"
            )));
        }
    }
    Ok(out)
}

/// Read and parse a token file.
pub fn load_tokens(path: &Path) -> Result<HashMap<String, String>, TokenError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Io {
        path: shown.clone(),
        source,
    })?;
    parse_tokens(&shown, &text)
}

/// At most `per_second` requests a second from one address (a fixed one-second
/// window: simple, and enough to stop a loop or a guessing script).
pub struct RateLimit {
    per_second: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimit {
    pub fn new(per_second: u32) -> RateLimit {
        RateLimit {
            per_second,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Count a request; false when the address is over its limit.
    pub fn allow(&self, ip: IpAddr) -> bool {
        if self.per_second == 0 {
            return true;
        }
        let now = Instant::now();
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if w.len() > 10_000 {
            w.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(1));
        }
        let entry = w.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(1) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= self.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_errors_name_the_line() {
        let e = parse_tokens("t", "# people\nana:0123456789abcdef0\nbob\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t:3:1: expected `name:token` (a person's name, a colon, their token)"
        );
        let e = parse_tokens("t", "ana:short\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("t:1:1: the token of ana is shorter")
        );
        let e = parse_tokens("t", "ana:0123456789abcdef\nbob:0123456789abcdef\n").unwrap_err();
        assert!(e.to_string().contains("t:2:1"), "{e}");
    }

    #[test]
    fn a_person_is_known_by_bearer_cookie_or_trusted_header() {
        let tokens = parse_tokens("t", "ana:0123456789abcdef0\n").unwrap();
        let auth = Auth::new(tokens, Some(http::HeaderName::from_static("x-user")), None).unwrap();
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer 0123456789abcdef0".parse().unwrap());
        assert_eq!(auth.person(&h).unwrap().name, "ana");
        h.insert("authorization", "Bearer wrong-token-00000".parse().unwrap());
        assert_eq!(
            auth.person(&h),
            None,
            "a wrong bearer token is not passed over"
        );
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            "a=b; runbook_token=0123456789abcdef0".parse().unwrap(),
        );
        assert_eq!(auth.person(&h).unwrap().via, Via::Cookie);
        let mut h = HeaderMap::new();
        h.insert("x-user", "carol".parse().unwrap());
        assert_eq!(auth.person(&h).unwrap().name, "carol");
        assert!(auth.csrf_ok("ana", Some(&auth.csrf_for("ana"))));
        assert!(!auth.csrf_ok("ana", Some(&auth.csrf_for("bob"))));
        assert!(!auth.csrf_ok("ana", None));
    }

    #[test]
    fn the_rate_limit_counts_per_address() {
        let rl = RateLimit::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(rl.allow(a) && rl.allow(a));
        assert!(!rl.allow(a));
        assert!(rl.allow(b));
    }
}
