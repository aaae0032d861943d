//! Who is asking, and what they may see: the one answer every route asks for.
//!
//! Three ways in, judged in this order:
//! 1. a signed link ([`crate::signing`]): a request whose query carries `sig=` is judged as a
//!    link and only as one, so a tampered or expired link is refused (403), never "retried"
//!    as something else;
//! 2. `--auth USER:PASS` / `--token` ([`crate::auth`]): one user who sees everything, as
//!    before there were users;
//! 3. the `[[user]]`s of `--config` ([`crate::users`]), by HTTP Basic.
//!
//! A policy is immutable: `SIGHUP` builds a new one and the HTTP side swaps it in, so a
//! request is judged wholly by the old or wholly by the new. Logins it has checked are
//! remembered ([`LoginCache`]) because a bcrypt check costs tens of milliseconds and a browser
//! sends its login with every request; a new policy starts with an empty cache, so a changed
//! password or a removed user takes effect at once.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use crate::auth::{Auth, Verdict};
use crate::signing::{Grant, Keys};
use crate::users::User;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything that decides access; see the module docs.
#[derive(Debug, Default)]
pub struct Policy {
    legacy: Auth,
    users: Vec<Arc<User>>,
    keys: Keys,
    cache: LoginCache,
    /// Held while a password is checked: one at a time (see [`CHECK_WAIT`]).
    checking: Mutex<()>,
}

/// The policy in force: `SIGHUP` swaps in a new one; each request reads it once.
#[derive(Debug, Default)]
pub struct Current {
    now: parking_lot::RwLock<Arc<Policy>>,
}

impl Current {
    pub fn new(policy: Policy) -> Arc<Current> {
        Arc::new(Current {
            now: parking_lot::RwLock::new(Arc::new(policy)),
        })
    }

    pub fn get(&self) -> Arc<Policy> {
        self.now.read().clone()
    }

    pub fn set(&self, policy: Policy) {
        *self.now.write() = Arc::new(policy);
    }
}

/// Who a request is, once admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No access control is configured: everything is open.
    Everyone,
    /// `--auth`/`--token`, or a user with `admin = true`: every stream, every page.
    Admin { name: Option<String> },
    /// A user who sees the streams their patterns match.
    User(Arc<User>),
    /// A signed link: its one path, nothing else.
    Link { path: String, grant: Grant },
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No credentials: 401 with a challenge.
    Missing,
    /// Wrong credentials: 401, and a failure counted against the address.
    Wrong,
    /// A signed link that is not valid (tampered, truncated, expired, no keys): 403, counted.
    BadLink(crate::signing::Refusal),
    /// A password was to be checked but the one check at a time ([`CHECK_WAIT`]) stayed busy
    /// for [`CHECK_WAIT`]: 503, not counted (the login may be right).
    Busy,
}

/// How long a login waits for its turn to be checked before it is answered 503. Password
/// checks run one at a time (`Policy::checking`; one policy is in force): a bcrypt check at
/// cost 10 is 60 ms of a core here (several times that on a Raspberry Pi), and guesses from
/// many addresses (each allowed 5 a minute by [`crate::login_limit`]) could otherwise take
/// every core from the cameras' viewers. Remembered logins do not wait.
pub const CHECK_WAIT: Duration = Duration::from_secs(5);

impl Identity {
    /// Whether this identity may open the stream `name` at `path` (the request's path: a
    /// signed link is good for the path it was signed for only).
    pub fn may_open(&self, name: &str, path: &str) -> bool {
        match self {
            Identity::Everyone | Identity::Admin { .. } => true,
            Identity::User(u) => u.may_see(name),
            Identity::Link { path: p, .. } => p == path,
        }
    }

    /// Whether this identity may see the stream `name` in lists (`/`, `/status`, `/metrics`,
    /// `/mux?streams=*`). A link lists nothing.
    pub fn may_list(&self, name: &str) -> bool {
        match self {
            Identity::Everyone | Identity::Admin { .. } => true,
            Identity::User(u) => u.may_see(name),
            Identity::Link { .. } => false,
        }
    }

    /// Everything, unfiltered: `/status` and `/metrics` whole.
    pub fn sees_all(&self) -> bool {
        matches!(self, Identity::Everyone | Identity::Admin { .. })
    }

    /// Logged in (not open, not a link): `/status` may show details.
    pub fn logged_in(&self) -> bool {
        matches!(self, Identity::Admin { .. } | Identity::User(_))
    }

    /// The key viewers are counted under for `max_viewers`, with its bound, if it has one.
    pub fn viewer_bound(&self) -> Option<(String, usize)> {
        match self {
            Identity::User(u) => u.max_viewers.map(|m| (format!("user {}", u.name), m)),
            Identity::Link { grant, .. } => grant
                .max_viewers
                .map(|m| (format!("link {}…", grant.id), m)),
            _ => None,
        }
    }

    /// For log lines: never a secret.
    pub fn describe(&self) -> String {
        match self {
            Identity::Everyone => "anyone".into(),
            Identity::Admin { name: Some(n) } => format!("admin {n}"),
            Identity::Admin { name: None } => "the --auth/--token login".into(),
            Identity::User(u) => format!("user {}", u.name),
            Identity::Link { grant, .. } => format!("signed link {}…", grant.id),
        }
    }
}

impl Policy {
    pub fn new(legacy: Auth, users: Vec<User>, keys: Keys) -> Policy {
        Policy {
            legacy,
            users: users.into_iter().map(Arc::new).collect(),
            keys,
            cache: LoginCache::default(),
            checking: Mutex::new(()),
        }
    }

    /// No login of any kind is configured.
    pub fn is_open(&self) -> bool {
        self.legacy.is_open() && self.users.is_empty()
    }

    /// Whether a 401 should offer Basic (users or `--auth`) or only Bearer (`--token`).
    pub fn offers_basic(&self) -> bool {
        self.legacy.has_basic() || !self.users.is_empty()
    }

    pub fn users(&self) -> &[Arc<User>] {
        &self.users
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Who the request is. `authorization`: its `Authorization` header; `token`: its
    /// `?token=`; `now_unix`: seconds since 1970, for links' expiry.
    pub fn identify(
        &self,
        authorization: Option<&str>,
        token: Option<&str>,
        path: &str,
        query: &str,
        now_unix: u64,
    ) -> Result<Identity, Refused> {
        if !self.keys.is_empty() && crate::signing::has_signature(query) {
            return self
                .keys
                .verify(path, query, now_unix)
                .map(|grant| Identity::Link {
                    path: path.to_string(),
                    grant,
                })
                .map_err(Refused::BadLink);
        }
        if self.is_open() {
            return Ok(Identity::Everyone);
        }
        let legacy = if self.legacy.is_open() {
            Verdict::Missing
        } else {
            self.legacy.check(authorization, token)
        };
        if legacy == Verdict::Allowed {
            return Ok(Identity::Admin { name: None });
        }
        let basic = authorization.and_then(|h| {
            let (scheme, value) = h.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("basic")
                .then(|| value.trim().to_string())
        });
        if let (Some(value), false) = (&basic, self.users.is_empty()) {
            return match self.user_for(value)? {
                Some(u) if u.admin => Ok(Identity::Admin {
                    name: Some(u.name.clone()),
                }),
                Some(u) => Ok(Identity::User(u)),
                None => Err(Refused::Wrong),
            };
        }
        match legacy {
            Verdict::Wrong => Err(Refused::Wrong),
            _ if authorization.is_some() || token.is_some() => Err(Refused::Wrong),
            _ => Err(Refused::Missing),
        }
    }

    /// The user whose name and password a Basic value (`base64(user:pass)`) carries.
    /// `Ok(None)`: not a user's name and password.
    fn user_for(&self, basic_value: &str) -> Result<Option<Arc<User>>, Refused> {
        let digest = LoginCache::digest(basic_value);
        if let Some(i) = self.cache.get(&digest) {
            return Ok(self.users.get(i).cloned());
        }
        use base64::Engine as _;
        let Some((name, password)) = base64::engine::general_purpose::STANDARD
            .decode(basic_value)
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .and_then(|d| {
                d.split_once(':')
                    .map(|(n, p)| (n.to_string(), p.to_string()))
            })
        else {
            return Ok(None);
        };
        let found = self.users.iter().position(|u| u.name == name);
        // An unknown name costs a check too (against the first user's hash), so the time
        // taken does not tell which names exist.
        let Some(against) = self.users.get(found.unwrap_or(0)) else {
            return Ok(None);
        };
        let ok = {
            let _turn = self
                .checking
                .try_lock_for(CHECK_WAIT)
                .ok_or(Refused::Busy)?;
            against.password.verify(&password)
        } && found.is_some();
        let Some(i) = found.filter(|_| ok) else {
            return Ok(None);
        };
        self.cache.put(digest, i);
        Ok(self.users.get(i).cloned())
    }
}

/// Logins checked by this policy: the SHA-256 of the `Authorization` value (never the value)
/// to the user's index. At most [`LoginCache::MAX`] entries, each good for
/// [`LoginCache::TTL`]; full, it starts over. Only successes are kept.
#[derive(Debug, Default)]
pub struct LoginCache {
    map: Mutex<HashMap<[u8; 32], (usize, Instant)>>,
}

impl LoginCache {
    pub const MAX: usize = 1024;
    pub const TTL: Duration = Duration::from_secs(600);

    fn digest(value: &str) -> [u8; 32] {
        let d = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
        let mut out = [0; 32];
        out.copy_from_slice(d.as_ref());
        out
    }

    fn get(&self, digest: &[u8; 32]) -> Option<usize> {
        let map = self.map.lock();
        map.get(digest)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(i, _)| *i)
    }

    fn put(&self, digest: [u8; 32], user: usize) {
        let mut map = self.map.lock();
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert(digest, (user, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::Password;

    fn basic(up: &str) -> String {
        format!("Basic {}", crate::auth::base64(up.as_bytes()))
    }

    fn user(name: &str, streams: &[&str], admin: bool) -> User {
        User {
            name: name.into(),
            password: Password::parse(&format!("plain:{name}-pw")).unwrap(),
            streams: streams.iter().map(|s| s.to_string()).collect(),
            admin,
            max_viewers: None,
        }
    }

    #[test]
    fn users_see_their_streams_admins_all() {
        let p = Policy::new(
            Auth::default(),
            vec![
                user("alice", &["door"], false),
                user("bob", &["garden-*"], false),
                user("root", &[], true),
            ],
            Keys::default(),
        );
        let id = |h: Option<&str>| p.identify(h, None, "/door/stream", "", 0);
        let alice = id(Some(&basic("alice:alice-pw"))).unwrap();
        assert!(alice.may_open("door", "/door/stream") && !alice.may_open("garden-a", "/"));
        let bob = id(Some(&basic("bob:bob-pw"))).unwrap();
        assert!(bob.may_open("garden-a", "/") && !bob.may_open("door", "/"));
        let root = id(Some(&basic("root:root-pw"))).unwrap();
        assert!(root.sees_all());
        assert_eq!(id(None), Err(Refused::Missing));
        assert_eq!(id(Some(&basic("alice:bob-pw"))), Err(Refused::Wrong));
        assert_eq!(id(Some(&basic("nobody:x"))), Err(Refused::Wrong));
        assert_eq!(id(Some("Basic !!!")), Err(Refused::Wrong));
        assert_eq!(id(Some("Bearer x")), Err(Refused::Wrong));
        // Cached: the second time is the same answer.
        assert_eq!(id(Some(&basic("alice:alice-pw"))).unwrap(), alice);
    }

    #[test]
    fn the_old_flags_are_one_user_who_sees_all_beside_the_users() {
        let p = Policy::new(
            Auth::new(Some("op:oppw"), Some("token-123")),
            vec![user("alice", &["door"], false)],
            Keys::default(),
        );
        let id = |h: Option<&str>, t: Option<&str>| p.identify(h, t, "/", "", 0);
        assert!(id(Some(&basic("op:oppw")), None).unwrap().sees_all());
        assert!(id(None, Some("token-123")).unwrap().sees_all());
        assert!(!id(Some(&basic("alice:alice-pw")), None).unwrap().sees_all());
        assert_eq!(id(None, Some("token-124")), Err(Refused::Wrong));
        assert!(!p.is_open() && p.offers_basic());
        assert!(Policy::default().is_open());
    }

    #[test]
    fn hostile_headers_and_queries_get_an_answer_not_a_panic() {
        let keys = Keys::new(&[b"0123456789abcdef0123456789abcdef".to_vec()]);
        let p = Policy::new(
            Auth::new(Some("op:pw"), Some("token-123")),
            vec![user("a", &["*"], false)],
            keys,
        );
        let pieces = [
            "",
            " ",
            "Basic",
            "Basic ",
            "basic  ",
            "Bearer ",
            "sig=",
            "&sig=",
            "&",
            "=",
            "%",
            "%zz",
            "é",
            "\u{1F600}",
            "Og==",
            "YTph",
            "YTphLXB3",
            ":",
            "expires=",
            "99999999999999999999",
            "\0",
            "max_viewers=",
            "-1",
            "/",
            "?",
        ];
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut pick = |n: usize| -> String {
                (0..n)
                    .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                    .collect()
            };
            let (h, t, path, q) = (pick(3), pick(2), pick(2), pick(5));
            let _ = p.identify(Some(&h), Some(&t), &path, &q, next());
        }
        // A valid login among them is still recognised.
        assert!(p.identify(Some(&basic("a:a-pw")), None, "/", "", 0).is_ok());
    }

    #[test]
    fn password_checks_wait_their_turn_and_remembered_logins_do_not() {
        let p = Policy::new(
            Auth::default(),
            vec![user("a", &["*"], false), user("b", &["*"], false)],
            Keys::default(),
        );
        // Remembered before the checks are held up.
        assert!(p.identify(Some(&basic("a:a-pw")), None, "/", "", 0).is_ok());
        let held = p.checking.lock();
        let t0 = std::time::Instant::now();
        // The control: a remembered login goes through at once while the check is busy ...
        assert!(p.identify(Some(&basic("a:a-pw")), None, "/", "", 0).is_ok());
        assert!(t0.elapsed() < Duration::from_secs(1));
        // ... a login to be checked waits CHECK_WAIT, then is told to come back (not "wrong").
        assert_eq!(
            p.identify(Some(&basic("b:b-pw")), None, "/", "", 0),
            Err(Refused::Busy)
        );
        assert!(t0.elapsed() >= CHECK_WAIT);
        drop(held);
        assert!(p.identify(Some(&basic("b:b-pw")), None, "/", "", 0).is_ok());
    }

    #[test]
    fn a_link_is_judged_as_a_link_only() {
        let keys = Keys::new(&[b"0123456789abcdef0123456789abcdef".to_vec()]);
        let link = keys.sign("/door/stream", &[], 100).unwrap();
        let (path, query) = link.split_once('?').unwrap();
        let p = Policy::new(Auth::default(), vec![user("a", &["x"], false)], keys);
        let got = p.identify(None, None, path, query, 50).unwrap();
        assert!(got.may_open("door", "/door/stream"));
        assert!(!got.may_open("door", "/door/snapshot") && !got.may_list("door"));
        assert!(matches!(
            p.identify(None, None, path, query, 100),
            Err(Refused::BadLink(crate::signing::Refusal::Expired))
        ));
        // An admin's login does not rescue a bad link: the link is what was asked for.
        assert!(p
            .identify(Some(&basic("a:a-pw")), None, "/garden/stream", query, 50)
            .is_err());
    }
}
