//! Failed sign-ins, counted per account and per client address: at most 100 failures an
//! hour for either, and an account locked for a while after a run of failures. Counted in
//! this replica's memory (several replicas each count their own share).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use portal_types::Error;

const HOUR: Duration = Duration::from_secs(3600);
/// Keys kept at most; past it, keys with no failure in the last hour are forgotten.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    /// Failures an hour, per account and per client address.
    pub per_hour: usize,
    /// This many failures within `lockout` lock the account for `lockout`.
    pub lockout_after: usize,
    pub lockout: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig { per_hour: 100, lockout_after: 10, lockout: Duration::from_secs(300) }
    }
}

#[derive(Debug, Default)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        LoginThrottle { config, failures: Mutex::default() }
    }

    fn keys(username: &str, client: Option<IpAddr>) -> Vec<String> {
        let mut keys = vec![format!("user:{}", username.to_lowercase())];
        keys.extend(client.map(|ip| format!("ip:{ip}")));
        keys
    }

    /// Refuses the attempt when the account or the address is over a limit.
    pub fn check(&self, username: &str, client: Option<IpAddr>, now: Instant) -> Result<(), Error> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = Duration::ZERO;
        for key in Self::keys(username, client) {
            let Some(times) = map.get(&key) else { continue };
            let in_hour: Vec<&Instant> = times.iter().filter(|t| now - **t < HOUR).collect();
            if in_hour.len() >= self.config.per_hour
                && let Some(oldest) = in_hour.first()
            {
                wait = wait.max(HOUR - (now - **oldest));
            }
            if key.starts_with("user:") {
                let recent: Vec<&Instant> =
                    times.iter().filter(|t| now - **t < self.config.lockout).collect();
                if recent.len() >= self.config.lockout_after
                    && let Some(last) = recent.last()
                {
                    wait = wait.max(self.config.lockout - (now - **last));
                }
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(Error::Throttled { retry_after_secs: wait.as_secs().max(1) })
        }
    }

    pub fn record_failure(&self, username: &str, client: Option<IpAddr>, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, times| times.back().is_some_and(|t| now - *t < HOUR));
        }
        for key in Self::keys(username, client) {
            let times = map.entry(key).or_default();
            times.push_back(now);
            while times.len() > self.config.per_hour.max(self.config.lockout_after) {
                times.pop_front();
            }
        }
    }

    /// A successful sign-in clears the account's run of failures (not the address's).
    pub fn record_success(&self, username: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&format!("user:{}", username.to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[test]
    fn an_account_locks_after_a_run_of_failures_and_unlocks_later() {
        let t = LoginThrottle::new(ThrottleConfig::default());
        let start = Instant::now();
        for i in 0..10 {
            assert!(t.check("alice", IP, start).is_ok(), "attempt {i}");
            t.record_failure("alice", IP, start);
        }
        let err = t.check("alice", None, start).unwrap_err();
        assert_eq!(err, Error::Throttled { retry_after_secs: 300 });
        assert!(t.check("bob", None, start).is_ok(), "other accounts are not locked");
        assert!(t.check("alice", None, start + Duration::from_secs(301)).is_ok());
    }

    #[test]
    fn an_address_is_limited_to_100_failures_an_hour_across_accounts() {
        let t = LoginThrottle::new(ThrottleConfig::default());
        let start = Instant::now();
        for i in 0..100 {
            t.record_failure(&format!("user{i}"), IP, start);
        }
        assert!(matches!(t.check("someone", IP, start), Err(Error::Throttled { .. })));
        assert!(t.check("someone", None, start).is_ok(), "other addresses are not limited");
        assert!(t.check("someone", IP, start + HOUR).is_ok());
    }

    #[test]
    fn success_clears_the_account_run() {
        let t = LoginThrottle::new(ThrottleConfig::default());
        let now = Instant::now();
        for _ in 0..9 {
            t.record_failure("carol", None, now);
        }
        t.record_success("carol");
        t.record_failure("carol", None, now);
        assert!(t.check("carol", None, now).is_ok());
    }
}
