//! Authentication: Basic (username:password) and Bearer (API token) on every `/api/` route.
//!
//! Passwords are argon2id-hashed, on the [`PasswordPool`]'s threads (fixed memory). A busy client sending Basic credentials on every request
//! must not pay a full argon2 verification each time: after one successful verification we
//! cache a keyed SHA-256 digest of the credentials (keyed with a per-process random secret,
//! so the cache holds nothing an attacker could reuse), bound to the user's
//! `credentials_version` so that a password change invalidates it at once. Failed attempts are
//! never cached and always cost a full verification (also for unknown users, so timing does
//! not reveal which usernames exist). API tokens are random 256-bit secrets stored only as
//! SHA-256 hashes, so a token check is one hash and one lookup.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::http::header::HeaderValue;
use actix_web::HttpRequest;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::login_limits::{client_key, LoginLimiter, LoginLimits};
use crate::passwords::PasswordPool;
use crate::repo::{SharedRepo, UserRecord};
use crate::secrets::{random_bytes, sha256};

/// Entries kept in the Basic-auth cache before it is cleared (bounded memory).
const CACHE_CAPACITY: usize = 10_000;

struct CachedLogin {
    user_id: imageapi_core::domain::UserId,
    credentials_version: u64,
    digest: [u8; 32],
}

pub struct Authenticator {
    repo: SharedRepo,
    passwords: Arc<PasswordPool>,
    limiter: LoginLimiter,
    /// Key for the cache digests; new each process start.
    secret: [u8; 32],
    cache: Mutex<HashMap<String, CachedLogin>>,
    /// Verified against when the username is unknown, to keep timing uniform.
    dummy_hash: String,
    /// Verifications running now, by credentials digest, for the requests that share them.
    in_flight: Mutex<HashMap<[u8; 32], Arc<tokio::sync::OnceCell<bool>>>>,
}

impl Authenticator {
    pub async fn new(repo: SharedRepo, passwords: Arc<PasswordPool>, limits: LoginLimits) -> anyhow::Result<Self> {
        let dummy_hash = passwords.hash("not-a-real-password".to_owned()).await?;
        Ok(Self {
            repo,
            passwords,
            limiter: LoginLimiter::new(limits),
            secret: random_bytes(),
            cache: Mutex::new(HashMap::new()),
            dummy_hash,
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    fn digest(&self, username: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update((username.len() as u64).to_be_bytes());
        h.update(username.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    fn cached(&self, username: &str, digest: &[u8; 32], user: &UserRecord) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(username).is_some_and(|c| {
            c.user_id == user.id
                && c.credentials_version == user.credentials_version
                && bool::from(c.digest.ct_eq(digest))
        })
    }

    fn remember(&self, username: &str, digest: [u8; 32], user: &UserRecord) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(
            username.to_owned(),
            CachedLogin { user_id: user.id, credentials_version: user.credentials_version, digest },
        );
    }

    /// Resolves an `Authorization` header sent from `client` to an active user, or
    /// `Unauthorized` (or `TooManyRequests` when the client or username has failed too often).
    pub async fn authenticate(
        self: Arc<Self>,
        header: Option<HeaderValue>,
        client: IpAddr,
    ) -> Result<UserRecord, ApiError> {
        let header = header.ok_or(ApiError::Unauthorized)?;
        let value = header.to_str().map_err(|_| ApiError::Unauthorized)?;
        let (scheme, rest) = value.split_once(' ').ok_or(ApiError::Unauthorized)?;
        let user = if scheme.eq_ignore_ascii_case("bearer") {
            self.bearer(rest.trim()).await?
        } else if scheme.eq_ignore_ascii_case("basic") {
            self.basic(rest.trim(), client).await?
        } else {
            return Err(ApiError::Unauthorized);
        };
        if !user.is_active {
            return Err(ApiError::Unauthorized);
        }
        Ok(user)
    }

    async fn bearer(&self, token: &str) -> Result<UserRecord, ApiError> {
        self.repo.user_by_token(&sha256(token.as_bytes())).await?.ok_or(ApiError::Unauthorized)
    }

    async fn basic(&self, encoded: &str, client: IpAddr) -> Result<UserRecord, ApiError> {
        let decoded = STANDARD.decode(encoded).map_err(|_| ApiError::Unauthorized)?;
        let decoded = String::from_utf8(decoded).map_err(|_| ApiError::Unauthorized)?;
        let (username, password) = decoded.split_once(':').ok_or(ApiError::Unauthorized)?;
        let (username, password) = (username.to_owned(), password.to_owned());

        let user = self.repo.user_by_name(&username).await?;
        let digest = self.digest(&username, &password);
        if let Some(user) = &user {
            if self.cached(&username, &digest, user) {
                return Ok(user.clone());
            }
        }
        let phc = user.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| self.dummy_hash.clone());
        // The same credentials arriving on several connections at once (a client starting up,
        // all clients after a restart) are verified once; the others wait for that answer.
        let flight = {
            let mut flights = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            flights.entry(digest).or_default().clone()
        };
        let outcome = flight
            .get_or_try_init(|| async {
                // Only attempts that need argon2 meet the limits: cached logins never do.
                let _admission = self.limiter.admit(client, &username, Instant::now()).map_err(|refused| {
                    ApiError::TooManyRequests {
                        detail: refused.reason.to_owned(),
                        retry_after_secs: refused.retry_after.as_secs(),
                    }
                })?;
                let verified = self.passwords.verify(Some(client_key(client)), phc, password).await?;
                if verified && user.is_some() {
                    self.limiter.succeeded(&username);
                } else {
                    self.limiter.failed(client, &username, Instant::now());
                }
                Ok::<bool, ApiError>(verified)
            })
            .await
            .copied();
        {
            let mut flights = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if flights.get(&digest).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                flights.remove(&digest);
            }
        }
        let verified = outcome?;
        match user {
            Some(user) if verified => {
                self.remember(&username, digest, &user);
                Ok(user)
            }
            _ => Err(ApiError::Unauthorized),
        }
    }
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the last address
/// in `X-Forwarded-For` that is not one (the proxies' own additions are to the right).
pub fn client_address(req: &HttpRequest, trusted_proxies: &[IpAddr]) -> IpAddr {
    let peer = req.peer_addr().map(|a| a.ip()).unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    if !trusted_proxies.contains(&peer) {
        return peer;
    }
    let forwarded = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
    forwarded
        .iter()
        .rev()
        .flat_map(|v| v.rsplit(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .find(|a| !trusted_proxies.contains(a))
        .unwrap_or(peer)
}
