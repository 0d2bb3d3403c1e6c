//! The accounts of the federation and who is active in a month.
//!
//! Every draw that concerns one account in one month is a hash of (seed, account, month),
//! not a draw from a shared stream, so an account's fate does not depend on the order the
//! others were generated in.

use chrono::{Datelike, NaiveDate};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::federation::{FIRST_NAMES, Federation, LAST_NAMES};
use crate::rhythm::{self, DAY_MS};

/// The platform of a device, as its user agent will tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    Web,
    Android,
    Ios,
}

/// The day the Tchap X mobile apps are published in the simulated history (an assumption of
/// the simulation, not a published figure: docs/design.md §8).
pub const TCHAP_X_LAUNCH: (i32, u32, u32) = (2024, 6, 1);

/// Half of the mobile devices that move to Tchap X have moved this many days after launch.
const TCHAP_X_MEDIAN_DAYS: f64 = 120.0;

/// The share of mobile devices that never move within the history.
const TCHAP_X_NEVER: f64 = 0.1;

/// The day a mobile device of `account` moves from the classic Tchap app to Tchap X, if it
/// does: drawn once per device, exponential after the launch.
pub fn tchap_x_day(seed: u64, account: u32, device: usize) -> Option<NaiveDate> {
    let launch = NaiveDate::from_ymd_opt(TCHAP_X_LAUNCH.0, TCHAP_X_LAUNCH.1, TCHAP_X_LAUNCH.2)?;
    let draw = unit(
        seed,
        u64::from(account) ^ ((device as u64) << 40),
        0x7c4a_9058,
    );
    if draw >= 1.0 - TCHAP_X_NEVER {
        return None;
    }
    let p = draw / (1.0 - TCHAP_X_NEVER);
    let days = -(1.0 - p).ln() * TCHAP_X_MEDIAN_DAYS / std::f64::consts::LN_2;
    launch.checked_add_days(chrono::Days::new(days as u64))
}

impl Platform {
    /// A user agent of the Tchap client on this platform, as Synapse records it: the classic
    /// mobile apps, or Tchap X (Element X's format under Tchap's name).
    pub fn user_agent(self, tchap_x: bool) -> &'static str {
        match (self, tchap_x) {
            (Platform::Web, _) => {
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
            }
            (Platform::Android, false) => {
                "Tchap/4.3.2 (Android 14; SM-S911B; Samsung; Build/UP1A; Flavour GooglePlay; MatrixAndroidSdk2 1.6.10)"
            }
            (Platform::Android, true) => {
                "Tchap X/25.04.2 (Samsung SM-S911B; Android 14; UP1A.231005.007; Sdk 25.04.1)"
            }
            (Platform::Ios, false) => "Tchap/2.8.1 (iPhone; iOS 17.5; Scale/3.00)",
            (Platform::Ios, true) => "Tchap X/25.04.2 (iPhone 13; iOS 17.5; Scale/3.00)",
        }
    }

    fn draw(unit: f64) -> Self {
        // The mix of Tchap's clients: web first, then Android, then iOS.
        if unit < 0.45 {
            Platform::Web
        } else if unit < 0.75 {
            Platform::Android
        } else {
            Platform::Ios
        }
    }
}

/// One account and the devices it uses.
#[derive(Clone, Debug)]
pub struct Account {
    pub server: u16,
    /// `first.last-domain`, with a collision suffix after the domain when needed, as Tchap does.
    pub localpart: String,
    pub created_s: i64,
    /// When the account was deactivated, if it was.
    pub deactivated_s: Option<i64>,
    /// In [0, 1): how much the person uses the messenger.
    pub engagement: f64,
    pub devices: Vec<Platform>,
}

impl Account {
    /// Relative number of messages the account sends on a day it is active.
    pub fn chattiness(&self) -> f64 {
        (0.15 + self.engagement).powi(3)
    }

    /// The device id of the account's `index`th device.
    pub fn device_id(&self, account: u32, index: usize) -> String {
        let hash = mix(account as u64 ^ ((index as u64) << 40));
        let mut id = String::with_capacity(10);
        for shift in 0..10 {
            id.push((b'A' + ((hash >> (shift * 5)) % 26) as u8) as char);
        }
        id
    }
}

/// Every account of the federation, in creation order.
#[derive(Debug)]
pub struct Population {
    pub accounts: Vec<Account>,
    seed: u64,
}

impl Population {
    /// The accounts that exist before `epoch`, created between 2019 and the epoch.
    pub fn before(federation: &Federation, epoch: NaiveDate, count: usize, seed: u64) -> Self {
        let mut population = Self {
            accounts: Vec::with_capacity(count * 2),
            seed,
        };
        let opened = rhythm::day_ms(NaiveDate::from_ymd_opt(2019, 1, 1).unwrap_or(epoch)) / 1000;
        let span = (rhythm::day_ms(epoch) / 1000 - opened).max(1);
        for _ in 0..count {
            let index = population.accounts.len() as u64;
            let created_s = opened + (unit(seed, index, 0xC0) * span as f64) as i64;
            population.push(federation, created_s);
        }
        population
    }

    fn push(&mut self, federation: &Federation, created_s: i64) -> u32 {
        let index = self.accounts.len() as u32;
        let key = index as u64;
        let server = pick_server(federation, unit(self.seed, key, 0x5E));
        let spec = &federation.servers[server];
        let domain = &spec.domains[(unit(self.seed, key, 0xD0).powi(2) * spec.domains.len() as f64)
            as usize
            % spec.domains.len()];
        let first = FIRST_NAMES[index as usize % FIRST_NAMES.len()];
        let last = LAST_NAMES[(index as usize / FIRST_NAMES.len()) % LAST_NAMES.len()];
        let collision = index as usize / (FIRST_NAMES.len() * LAST_NAMES.len());
        let localpart = if collision == 0 {
            format!("{first}.{last}-{domain}")
        } else {
            format!("{first}.{last}-{domain}{collision}")
        };
        let primary = Platform::draw(unit(self.seed, key, 0xA1));
        let mut devices = vec![primary];
        if unit(self.seed, key, 0xA2) < 0.4 {
            let second = Platform::draw(unit(self.seed, key, 0xA3));
            devices.push(if second == primary {
                Platform::Web
            } else {
                second
            });
        }
        self.accounts.push(Account {
            server: server as u16,
            localpart,
            created_s,
            deactivated_s: None,
            engagement: unit(self.seed, key, 0xE6),
            devices,
        });
        index
    }

    /// Creates `count` accounts in the month starting at `first_day`, on working days mostly.
    pub fn create_in_month(
        &mut self,
        federation: &Federation,
        first_day: NaiveDate,
        count: usize,
        rng: &mut ChaCha8Rng,
    ) -> Vec<u32> {
        let days = rhythm::days_of_month(first_day);
        let weights: Vec<f64> = days.iter().map(|d| rhythm::weekday_weight(*d)).collect();
        let pick = rhythm::WeightedDays::new(&days, &weights);
        (0..count)
            .map(|_| {
                let day = pick.draw(rng);
                let created_s = (rhythm::day_ms(day) + rhythm::office_time_ms(rng)) / 1000;
                self.push(federation, created_s)
            })
            .collect()
    }

    /// Deactivates a share of the accounts that existed before the month.
    pub fn deactivate_in_month(
        &mut self,
        first_day: NaiveDate,
        rate: f64,
        rng: &mut ChaCha8Rng,
    ) -> Vec<u32> {
        let start_s = rhythm::day_ms(first_day) / 1000;
        let open: Vec<u32> = (0..self.accounts.len() as u32)
            .filter(|&i| {
                let a = &self.accounts[i as usize];
                a.created_s < start_s && a.deactivated_s.is_none()
            })
            .collect();
        let count = (open.len() as f64 * rate).round() as usize;
        let days = rhythm::days_of_month(first_day);
        let mut chosen = rand::seq::index::sample(rng, open.len(), count.min(open.len()))
            .into_iter()
            .map(|i| open[i])
            .collect::<Vec<_>>();
        chosen.sort_unstable();
        for &i in &chosen {
            let day = days[rng.random_range(0..days.len())];
            self.accounts[i as usize].deactivated_s =
                Some((rhythm::day_ms(day) + rhythm::office_time_ms(rng)) / 1000);
        }
        chosen
    }

    /// Exactly `count` accounts active in the month starting at `first_day` (fewer only if
    /// fewer exist): those with the highest engagement plus a monthly draw, new accounts first.
    pub fn active_in_month(&self, first_day: NaiveDate, count: usize) -> Vec<u32> {
        let start_s = rhythm::day_ms(first_day) / 1000;
        let end_s = start_s + rhythm::days_of_month(first_day).len() as i64 * DAY_MS / 1000;
        let month_key = (first_day.year() as u64) * 12 + first_day.month0() as u64;
        let mut scored: Vec<(f64, u32)> = self
            .accounts
            .iter()
            .enumerate()
            .filter(|(_, a)| a.created_s < end_s && a.deactivated_s.is_none_or(|d| d >= end_s))
            .map(|(i, a)| {
                let new = if a.created_s >= start_s { 2.0 } else { 0.0 };
                let score =
                    a.engagement + 0.5 * unit(self.seed, i as u64, 0x1000 + month_key) + new;
                (score, i as u32)
            })
            .collect();
        let count = count.min(scored.len());
        if count < scored.len() {
            scored.select_nth_unstable_by(count, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            scored.truncate(count);
        }
        let mut active: Vec<u32> = scored.into_iter().map(|(_, i)| i).collect();
        active.sort_unstable();
        active
    }

    /// `@localpart:server`.
    pub fn user_id(&self, federation: &Federation, account: u32) -> String {
        let a = &self.accounts[account as usize];
        format!(
            "@{}:{}",
            a.localpart, federation.servers[a.server as usize].name
        )
    }
}

fn pick_server(federation: &Federation, unit: f64) -> usize {
    let total: f64 = federation.servers.iter().map(|s| s.weight).sum();
    let mut left = unit * total;
    for (i, server) in federation.servers.iter().enumerate() {
        left -= server.weight;
        if left < 0.0 {
            return i;
        }
    }
    federation.servers.len() - 1
}

/// splitmix64's finalizer: a well-mixed 64-bit hash.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A number in [0, 1) fixed by (seed, key, salt).
pub(crate) fn unit(seed: u64, key: u64, salt: u64) -> f64 {
    let hash = mix(seed ^ mix(key ^ mix(salt)));
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tchap_x_rolls_out_after_its_launch_and_not_everywhere() {
        let launch =
            NaiveDate::from_ymd_opt(TCHAP_X_LAUNCH.0, TCHAP_X_LAUNCH.1, TCHAP_X_LAUNCH.2).unwrap();
        let days: Vec<Option<NaiveDate>> = (0..10_000u32)
            .map(|account| tchap_x_day(7, account, 0))
            .collect();
        assert!(days.iter().flatten().all(|day| *day >= launch));
        let by = |months: u32| {
            let end = launch
                .checked_add_months(chrono::Months::new(months))
                .unwrap();
            days.iter().flatten().filter(|d| **d < end).count() as f64 / days.len() as f64
        };
        // Half of the 90% who move within four months, two thirds of all by the end of 2024.
        assert!((0.40..0.50).contains(&by(4)), "{}", by(4));
        assert!((0.58..0.70).contains(&by(7)), "{}", by(7));
        let never = days.iter().filter(|d| d.is_none()).count() as f64 / days.len() as f64;
        assert!((0.08..0.12).contains(&never), "{never}");
        // A device's day is its own: the same again, another for its second device.
        assert_eq!(tchap_x_day(7, 3, 0), days[3]);
        assert_ne!(tchap_x_day(7, 3, 1), days[3]);
    }
}
