//! Failed sign-ins, counted per account and per client address: at most 100 failures an
//! hour for either, and an account locked for a while after a run of failures. The failures
//! are rows in the database, so every replica counts them all.

use std::net::IpAddr;
use std::time::Duration;

use portal_types::Error;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use crate::db::entity::login_failure;

const HOUR_MS: i64 = 3600 * 1000;

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
}

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

    /// How long a key must wait given its failures of the last hour (`times`, oldest first,
    /// ms), at `now`; zero when it may try.
    fn wait(&self, is_account: bool, times: &[i64], now: i64) -> i64 {
        let mut wait = 0;
        if times.len() >= self.config.per_hour {
            wait = HOUR_MS - (now - times[0]);
        }
        let lockout = self.config.lockout.as_millis() as i64;
        let recent: Vec<i64> = times.iter().copied().filter(|t| now - t < lockout).collect();
        if is_account
            && recent.len() >= self.config.lockout_after
            && let Some(last) = recent.last()
        {
            wait = wait.max(lockout - (now - last));
        }
        wait.max(0)
    }

    /// Refuses the attempt when the account or the address is over a limit.
    pub async fn check(
        &self,
        db: &impl ConnectionTrait,
        username: &str,
        client: Option<IpAddr>,
        now: i64,
    ) -> Result<(), Error> {
        let keys = keys(username, client);
        let rows: Vec<(String, i64)> = login_failure::Entity::find()
            .select_only()
            .column(login_failure::Column::Key)
            .column(login_failure::Column::At)
            .filter(login_failure::Column::Key.is_in(keys.clone()))
            .filter(login_failure::Column::At.gt(now - HOUR_MS))
            .order_by_asc(login_failure::Column::At)
            .into_tuple()
            .all(db)
            .await
            .map_err(Error::internal)?;
        let mut wait = 0;
        for key in &keys {
            let times: Vec<i64> =
                rows.iter().filter(|(k, _)| k == key).map(|(_, at)| *at).collect();
            wait = wait.max(self.wait(key.starts_with("user:"), &times, now));
        }
        if wait == 0 {
            Ok(())
        } else {
            Err(Error::Throttled { retry_after_secs: (wait as u64).div_ceil(1000).max(1) })
        }
    }

    /// Counts a failure against the account and the address; failures older than an hour
    /// are forgotten at the same time.
    pub async fn record_failure(
        &self,
        db: &impl ConnectionTrait,
        username: &str,
        client: Option<IpAddr>,
        now: i64,
    ) -> Result<(), Error> {
        login_failure::Entity::delete_many()
            .filter(login_failure::Column::At.lte(now - HOUR_MS))
            .exec(db)
            .await
            .map_err(Error::internal)?;
        let rows = keys(username, client).into_iter().map(|key| login_failure::ActiveModel {
            id: Set(Uuid::new_v4()),
            key: Set(key),
            at: Set(now),
        });
        login_failure::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await
            .map_err(Error::internal)?;
        Ok(())
    }

    /// A successful sign-in clears the account's run of failures (not the address's).
    pub async fn record_success(
        &self,
        db: &impl ConnectionTrait,
        username: &str,
    ) -> Result<(), Error> {
        login_failure::Entity::delete_many()
            .filter(login_failure::Column::Key.eq(user_key(username)))
            .exec(db)
            .await
            .map_err(Error::internal)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i64 = 1_800_000_000_000;

    #[test]
    fn an_account_locks_after_a_run_of_failures_and_unlocks_later() {
        let t = LoginThrottle::new(ThrottleConfig::default());
        assert_eq!(t.wait(true, &[START; 9], START), 0, "nine failures: not yet");
        assert_eq!(t.wait(true, &[START; 10], START), 300_000);
        assert_eq!(t.wait(false, &[START; 10], START), 0, "addresses are not locked out");
        assert_eq!(t.wait(true, &[START; 10], START + 301_000), 0);
    }

    #[test]
    fn a_key_is_limited_to_100_failures_an_hour() {
        let t = LoginThrottle::new(ThrottleConfig::default());
        // One every 30 s: 100 in 50 minutes; the oldest leaves the hour 10 minutes from now.
        let times: Vec<i64> = (0..100).map(|i| START + i * 30_000).collect();
        let now = START + 50 * 60_000;
        assert_eq!(t.wait(false, &times, now), 10 * 60_000);
        assert_eq!(t.wait(false, &times[1..], now), 0);
    }
}
