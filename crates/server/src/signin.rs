//! Sign-in under attack: at most a few Argon2 checks at once (each takes ~19 MiB and tens of
//! milliseconds), growing waits after failed sign-ins per account and per client address
//! (kept in memory), and the same Argon2 work for an unknown e-mail address as for a known
//! one, so neither memory nor timing gives anything away.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::auth::{self, AuthError};
use crate::config::Limits;
use crate::metrics::Metrics;

/// The longest wait a run of failures can build up.
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Failures older than this (since the last one) are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Accounts or addresses remembered at most; beyond it new ones are not tracked.
const MAX_TRACKED: usize = 100_000;
/// How long a sign-in waits for a free password check before it is told to come back.
const QUEUE_WAIT: Duration = Duration::from_secs(10);

/// Why a sign-in was not let through to the password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many recent failures for this account or address: try again after this long.
    Throttled(Duration),
    /// Every password check slot stayed busy: try again shortly.
    Busy,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failure counts by key (an e-mail address, or a client address).
struct Backoff<K> {
    free: u32,
    failures: Mutex<HashMap<K, Failures>>,
}

impl<K: std::hash::Hash + Eq + Clone> Backoff<K> {
    fn new(free: u32) -> Self {
        Self {
            free,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<K, Failures>> {
        match self.failures.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// How long `key` must still wait, if at all: after `free` failures each further one
    /// doubles the wait, from one second up to [`MAX_WAIT`].
    fn wait(&self, key: &K, now: Instant) -> Option<Duration> {
        let f = *self.map().get(key)?;
        let beyond = f.count.checked_sub(self.free)?;
        let wait = Duration::from_secs(1u64 << beyond.min(20)).min(MAX_WAIT);
        let until = f.last + wait;
        (until > now).then(|| until - now)
    }

    fn failed(&self, key: &K, now: Instant) {
        let mut map = self.map();
        if map.len() >= MAX_TRACKED && !map.contains_key(key) {
            map.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
            if map.len() >= MAX_TRACKED {
                return;
            }
        }
        let entry = map.entry(key.clone()).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(entry.last) >= FORGET_AFTER {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }

    fn forget(&self, key: &K) {
        self.map().remove(key);
    }
}

/// A password to check against a stored hash, and where the answer goes.
type CheckJob = (String, String, tokio::sync::oneshot::Sender<bool>);

/// The threads that run Argon2: a fixed few, each with its own working memory allocated
/// once (~19 MiB), so what password checks hold is bounded, also after a burst. (Checking
/// in fresh memory each time left it with the allocator: hundreds of MiB after a burst.)
struct Checkers {
    jobs: Mutex<std::sync::mpsc::Sender<CheckJob>>,
}

impl Checkers {
    fn start(threads: usize) -> std::io::Result<Self> {
        let (jobs, queue) = std::sync::mpsc::channel::<CheckJob>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("balie-password-{i}"))
                .spawn(move || {
                    // Argon2's working memory, allocated once per thread and reused.
                    let mut memory = Vec::new();
                    loop {
                        // The lock is held only while taking a job; the sender's drop ends us.
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        let Ok((password, hash, answer)) = job else {
                            return;
                        };
                        // A sign-in whose client went away needs no answer.
                        if !answer.is_closed() {
                            let ok = auth::verify_password_in(&password, &hash, &mut memory);
                            let _ = answer.send(ok);
                        }
                    }
                })?;
        }
        Ok(Self {
            jobs: Mutex::new(jobs),
        })
    }

    async fn verify(&self, password: String, hash: String) -> bool {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let sent = match self.jobs.lock() {
            Ok(jobs) => jobs.send((password, hash, answer)).is_ok(),
            Err(_) => false,
        };
        sent && answered.await.unwrap_or(false)
    }
}

/// Counts one in a gauge for as long as it lives (also when a sign-in is abandoned).
struct Counted<'a>(&'a AtomicU64);

impl<'a> Counted<'a> {
    fn new(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::SeqCst);
        Self(gauge)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The gate every password sign-in passes.
pub struct SignIn {
    checks: Semaphore,
    checkers: Checkers,
    accounts: Backoff<String>,
    addresses: Backoff<IpAddr>,
    /// An Argon2 hash of a random password, checked when the e-mail address is unknown.
    dummy_hash: String,
}

impl SignIn {
    pub fn new(limits: &Limits, metrics: &Metrics) -> Result<Self, AuthError> {
        let bound = limits.password_checks.max(1);
        metrics
            .password_checks_max
            .store(bound as u64, Ordering::Relaxed);
        Ok(Self {
            checks: Semaphore::new(bound),
            checkers: Checkers::start(bound)
                .map_err(|e| AuthError::Hash(format!("starting password threads: {e}")))?,
            accounts: Backoff::new(limits.login_failures_per_account),
            addresses: Backoff::new(limits.login_failures_per_address),
            dummy_hash: auth::hash_password(&auth::random_hex(16)?)?,
        })
    }

    /// The account key: e-mail addresses are matched without regard to case here.
    fn account_key(email: &str) -> String {
        email.trim().to_lowercase()
    }

    /// Whether `email` from `client` must wait before another try.
    pub fn throttled(&self, email: &str, client: IpAddr, now: Instant) -> Option<Duration> {
        let account = self.accounts.wait(&Self::account_key(email), now);
        let address = self.addresses.wait(&client, now);
        account.max(address)
    }

    /// Checks `password` against `stored` (or against a dummy hash when the account is
    /// unknown, to take the same time), with at most the configured number of checks
    /// running at once. The throttle is asked again once a slot is free, as failures may
    /// have been recorded while this sign-in waited.
    pub async fn check(
        &self,
        email: &str,
        client: IpAddr,
        password: &str,
        stored: Option<&str>,
        metrics: &Metrics,
    ) -> Result<bool, Refusal> {
        let permit = tokio::time::timeout(QUEUE_WAIT, self.checks.acquire())
            .await
            .map_err(|_| Refusal::Busy)?
            .map_err(|_| Refusal::Busy)?;
        if let Some(wait) = self.throttled(email, client, Instant::now()) {
            return Err(Refusal::Throttled(wait));
        }
        let counted = Counted::new(&metrics.password_checks_in_flight);
        let known = stored.is_some();
        let hash = stored.unwrap_or(&self.dummy_hash).to_string();
        let ok = self.checkers.verify(password.to_string(), hash).await;
        drop(counted);
        drop(permit);
        Ok(ok && known)
    }

    pub fn failed(&self, email: &str, client: IpAddr) {
        let now = Instant::now();
        self.accounts.failed(&Self::account_key(email), now);
        self.addresses.failed(&client, now);
    }

    /// A correct password clears the account's failures (not the address's: one valid
    /// account must not buy an address fresh guesses at others).
    pub fn succeeded(&self, email: &str) {
        self.accounts.forget(&Self::account_key(email));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_start_after_the_free_failures_and_double() {
        let b = Backoff::<&str>::new(2);
        let t0 = Instant::now();
        assert_eq!(b.wait(&"kim", t0), None);
        b.failed(&"kim", t0);
        b.failed(&"kim", t0);
        assert_eq!(b.wait(&"kim", t0), Some(Duration::from_secs(1)));
        assert_eq!(b.wait(&"kim", t0 + Duration::from_secs(1)), None);
        b.failed(&"kim", t0);
        assert_eq!(b.wait(&"kim", t0), Some(Duration::from_secs(2)));
        for _ in 0..40 {
            b.failed(&"kim", t0);
        }
        assert_eq!(b.wait(&"kim", t0), Some(MAX_WAIT), "the wait is capped");
        assert_eq!(b.wait(&"lea", t0), None, "others are not affected");
        b.forget(&"kim");
        assert_eq!(b.wait(&"kim", t0), None);
    }

    #[tokio::test]
    async fn an_unknown_account_costs_the_same_argon2_work_as_a_known_one() {
        let metrics = Metrics::default();
        let signin = SignIn::new(&Limits::default(), &metrics).expect("sign-in");
        let real = auth::hash_password("correct horse battery").expect("hash");
        // "$argon2id$v=19$m=19456,t=2,p=1$salt$hash": algorithm, version and cost agree.
        let cost = |h: &str| h.split('$').take(4).collect::<Vec<_>>().join("$");
        assert_eq!(cost(&signin.dummy_hash), cost(&real));
        let client = IpAddr::from([127, 0, 0, 1]);
        let unknown = signin.check("nobody@balie.test", client, "x", None, &metrics);
        assert_eq!(unknown.await, Ok(false));
        let wrong = signin.check("kim@balie.test", client, "x", Some(&real), &metrics);
        assert_eq!(wrong.await, Ok(false));
        let known = signin.check(
            "kim@balie.test",
            client,
            "correct horse battery",
            Some(&real),
            &metrics,
        );
        assert_eq!(known.await, Ok(true));
        assert_eq!(metrics.password_checks_in_flight.load(Ordering::SeqCst), 0);
        assert_eq!(metrics.password_checks_max.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn old_failures_are_forgotten() {
        let b = Backoff::<&str>::new(2);
        let t0 = Instant::now();
        for _ in 0..3 {
            b.failed(&"kim", t0);
        }
        assert!(b.wait(&"kim", t0).is_some());
        let later = t0 + FORGET_AFTER;
        b.failed(&"kim", later);
        assert_eq!(
            b.wait(&"kim", later),
            None,
            "a fresh run starts at one failure"
        );
    }
}
