//! Failed sign-ins, counted per account and per client address. An account's failures make
//! it wait longer and longer before the next attempt (1 s, 2 s, 4 s … up to a minute) rather
//! than locking it: someone guessing from many addresses slows the account down but cannot
//! keep its owner out. An address is limited to 100 failures an hour. Each attempt reserves
//! its failure before the password is hashed, so a thousand concurrent guesses are counted
//! as a thousand; the reservation is given back when the attempt did not fail on the
//! password. The failures are rows in the database, so every replica counts them all.

use std::net::IpAddr;
use std::time::Duration;

use portal_types::Error;
use uuid::Uuid;

use crate::datastore::DataStore;

const HOUR_MS: i64 = 3600 * 1000;

#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    /// Failures an hour per client address.
    pub per_hour: usize,
    /// Failures of an account within `window` that cost nothing; each one after doubles
    /// the wait before the next attempt, from one second up to `max_delay`.
    pub free_failures: usize,
    pub window: Duration,
    pub max_delay: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            per_hour: 100,
            free_failures: 5,
            window: Duration::from_secs(900),
            max_delay: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Default)]
pub struct LoginThrottle {
    config: ThrottleConfig,
}

/// The failure rows an attempt reserved before checking the password.
#[must_use = "an attempt ends with `failed`, `succeeded` or `release`"]
pub struct Reservation(Vec<Uuid>);

fn user_key(username: &str) -> String {
    format!("user:{}", username.to_lowercase())
}

fn keys(username: &str, client: Option<IpAddr>) -> Vec<String> {
    let mut keys = vec![user_key(username)];
    keys.extend(client.map(|ip| format!("ip:{ip}")));
    keys
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        LoginThrottle { config }
    }

    /// How long a key must wait given its other failures of the last hour (`times`, oldest
    /// first, ms), at `now`; zero when it may try.
    fn wait(&self, is_account: bool, times: &[i64], now: i64) -> i64 {
        if !is_account {
            return if times.len() >= self.config.per_hour {
                (HOUR_MS - (now - times[times.len() - self.config.per_hour])).max(0)
            } else {
                0
            };
        }
        let window = self.config.window.as_millis() as i64;
        let recent: Vec<i64> = times.iter().copied().filter(|t| now - t < window).collect();
        let Some(excess) = recent.len().checked_sub(self.config.free_failures) else {
            return 0;
        };
        let delay = (1000i64 << excess.min(20)).min(self.config.max_delay.as_millis() as i64);
        let last = recent.last().copied().unwrap_or(now);
        (delay - (now - last)).max(0)
    }

    /// Reserves this attempt's failure against the account and the address, then refuses
    /// it (giving the reservation back) when either must still wait. Concurrent attempts
    /// see each other's reservations.
    pub async fn reserve(
        &self,
        db: &DataStore,
        username: &str,
        client: Option<IpAddr>,
        now: i64,
    ) -> Result<Reservation, Error> {
        let keys = keys(username, client);
        let reservation = Reservation(keys.iter().map(|_| Uuid::new_v4()).collect());
        let rows: Vec<(Uuid, String)> = reservation.0.iter().copied().zip(keys.clone()).collect();
        db.login_failures_insert(&rows, now).await?;
        let rows = db.login_failures_since(&keys, now - HOUR_MS, &reservation.0).await?;
        let mut wait = 0;
        for key in &keys {
            let times: Vec<i64> =
                rows.iter().filter(|(k, _)| k == key).map(|(_, at)| *at).collect();
            wait = wait.max(self.wait(key.starts_with("user:"), &times, now));
        }
        if wait == 0 {
            Ok(reservation)
        } else {
            // A refused attempt is not a failure: it must not lengthen the wait.
            self.release(db, reservation).await?;
            Err(Error::Throttled { retry_after_secs: (wait as u64).div_ceil(1000).max(1) })
        }
    }

    /// The attempt did not fail on the password (or never got to it): not a failure.
    pub async fn release(&self, db: &DataStore, reservation: Reservation) -> Result<(), Error> {
        Ok(db.login_failures_delete(&reservation.0).await?)
    }

    /// The password was wrong: the reservation stays as the failure; failures older than an
    /// hour are forgotten at the same time.
    pub async fn failed(
        &self,
        db: &DataStore,
        _reservation: Reservation,
        now: i64,
    ) -> Result<(), Error> {
        Ok(db.login_failures_expire(now - HOUR_MS).await?)
    }

    /// A successful sign-in gives the reservation back and clears the account's run of
    /// failures (not the address's).
    pub async fn succeeded(
        &self,
        db: &DataStore,
        username: &str,
        reservation: Reservation,
    ) -> Result<(), Error> {
        self.release(db, reservation).await?;
        Ok(db.login_failures_clear(&user_key(username)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i64 = 1_800_000_000_000;

    #[test]
    fn an_account_waits_longer_after_each_failure_but_is_never_locked_out() {
        let t = LoginThrottle::new(ThrottleConfig::default());
        assert_eq!(t.wait(true, &[START; 4], START), 0, "four failures: free");
        assert_eq!(t.wait(true, &[START; 5], START), 1_000);
        assert_eq!(t.wait(true, &[START; 6], START), 2_000);
        assert_eq!(t.wait(true, &[START; 8], START), 8_000);
        assert_eq!(t.wait(true, &[START; 99], START), 60_000, "capped at a minute");
        assert_eq!(t.wait(true, &[START; 99], START + 60_000), 0, "then it may try again");
        assert_eq!(t.wait(false, &[START; 99], START), 0, "addresses have an hourly limit only");
        assert_eq!(t.wait(true, &[START; 50], START + 901_000), 0, "old failures are forgotten");
    }

    #[test]
    fn an_address_is_limited_to_100_failures_an_hour() {
        let t = LoginThrottle::new(ThrottleConfig::default());
        // One every 30 s: 100 in 50 minutes; the oldest leaves the hour 10 minutes from now.
        let times: Vec<i64> = (0..100).map(|i| START + i * 30_000).collect();
        let now = START + 50 * 60_000;
        assert_eq!(t.wait(false, &times, now), 10 * 60_000);
        assert_eq!(t.wait(false, &times[1..], now), 0);
    }
}
