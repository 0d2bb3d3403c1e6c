//! The monthly targets the simulator is calibrated to, at scale 1 (docs/design.md §8).
//!
//! The published values are Tchap's 2024 monthly active users (May to November), about 6.5M
//! messages in an ordinary 2024 month and 7.0M in July 2024 (+27% over May), accounts created
//! in July 2024 twice those of May, rooms created in July +44% over May, and monthly active
//! users +50% over the same months of 2023. Months without a published value are filled in
//! with the same shape (a winter plateau, a summer dip, the September return); 2023 is 2024
//! divided by the published year-over-year growth. Months outside 2023–2024 repeat the nearest
//! year's month, so a live trickle in a later year has a plausible volume.

use chrono::{Datelike, NaiveDate};

/// Monthly active users, 2024; May–November are the published figures.
const MAU_2024: [f64; 12] = [
    215_000.0, 221_000.0, 228_000.0, 219_000.0, 226_855.0, 241_295.0, 230_561.0, 212_832.0,
    264_509.0, 270_223.0, 263_631.0, 241_000.0,
];

/// Messages sent, 2024: ~6.5M in an ordinary month, 7.0M in July, May = July / 1.27.
const MESSAGES_2024: [f64; 12] = [
    6_300_000.0,
    6_400_000.0,
    6_700_000.0,
    6_200_000.0,
    7_000_000.0 / 1.27,
    6_600_000.0,
    7_000_000.0,
    5_700_000.0,
    6_800_000.0,
    6_950_000.0,
    6_700_000.0,
    5_900_000.0,
];

/// Regular accounts created, 2024: July twice May (the Olympics' staff and volunteers).
const ACCOUNTS_2024: [f64; 12] = [
    9_500.0, 9_000.0, 9_200.0, 8_600.0, 8_000.0, 11_000.0, 16_000.0, 10_500.0, 14_000.0, 11_500.0,
    10_000.0, 8_200.0,
];

/// Rooms created (all kinds), 2024: July +44% over May.
const ROOMS_2024: [f64; 12] = [
    41_000.0,
    40_500.0,
    42_000.0,
    39_000.0,
    36_000.0,
    43_000.0,
    36_000.0 * 1.44,
    38_000.0,
    47_000.0,
    46_000.0,
    44_000.0,
    37_000.0,
];

/// Monthly active users 2024 over 2023, published.
pub const MAU_GROWTH_2024: f64 = 1.5;
/// Not published; chosen so activity per user grows a little less than the user base.
const MESSAGES_GROWTH_2024: f64 = 1.45;
const ACCOUNTS_GROWTH_2024: f64 = 1.3;
const ROOMS_GROWTH_2024: f64 = 1.4;

/// Accounts that exist before the simulation's first month (Tchap opened in 2019).
pub const ACCOUNTS_BEFORE_2023: f64 = 250_000.0;
/// Share of the accounts that are deactivated each month (people leaving the State).
pub const MONTHLY_DEACTIVATION_RATE: f64 = 0.0025;

/// What one calendar month should hold at scale 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MonthTargets {
    pub monthly_active_users: f64,
    pub messages: f64,
    pub accounts_created: f64,
    pub rooms_created: f64,
}

impl MonthTargets {
    /// The targets of the month holding `day`.
    pub fn of(day: NaiveDate) -> Self {
        let index = day.month0() as usize;
        let year_2024 = Self {
            monthly_active_users: MAU_2024[index],
            messages: MESSAGES_2024[index],
            accounts_created: ACCOUNTS_2024[index],
            rooms_created: ROOMS_2024[index],
        };
        if day.year() >= 2024 {
            year_2024
        } else {
            Self {
                monthly_active_users: year_2024.monthly_active_users / MAU_GROWTH_2024,
                messages: year_2024.messages / MESSAGES_GROWTH_2024,
                accounts_created: year_2024.accounts_created / ACCOUNTS_GROWTH_2024,
                rooms_created: year_2024.rooms_created / ROOMS_GROWTH_2024,
            }
        }
    }

    /// The targets at `scale`, as whole counts.
    pub fn scaled(&self, scale: f64) -> ScaledTargets {
        let count = |value: f64| (value * scale).round().max(0.0) as usize;
        ScaledTargets {
            monthly_active_users: count(self.monthly_active_users),
            messages: count(self.messages),
            accounts_created: count(self.accounts_created),
            rooms_created: count(self.rooms_created),
        }
    }
}

/// Whole counts the generator produces exactly for one month.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaledTargets {
    pub monthly_active_users: usize,
    pub messages: usize,
    pub accounts_created: usize,
    pub rooms_created: usize,
}

/// The Paris Olympics and Paralympics' busiest weeks: more messages a day than usual.
pub fn olympic_boost(day: NaiveDate) -> f64 {
    let from = NaiveDate::from_ymd_opt(2024, 7, 18);
    let to = NaiveDate::from_ymd_opt(2024, 8, 11);
    match (from, to) {
        (Some(from), Some(to)) if day >= from && day <= to => 1.8,
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn month(y: i32, m: u32) -> MonthTargets {
        MonthTargets::of(NaiveDate::from_ymd_opt(y, m, 1).expect("valid date"))
    }

    #[test]
    fn the_published_ratios_hold_in_the_table() {
        let (may, july) = (month(2024, 5), month(2024, 7));
        assert!((july.messages / may.messages - 1.27).abs() < 1e-9);
        assert!((july.accounts_created / may.accounts_created - 2.0).abs() < 1e-9);
        assert!((july.rooms_created / may.rooms_created - 1.44).abs() < 1e-9);
        assert_eq!(july.messages, 7_000_000.0);
        for m in 1..=12 {
            let ratio = month(2024, m).monthly_active_users / month(2023, m).monthly_active_users;
            assert!((ratio - 1.5).abs() < 1e-9, "month {m}: {ratio}");
        }
        assert_eq!(month(2024, 9).monthly_active_users, 264_509.0);
        // Later years repeat 2024, earlier ones 2023.
        assert_eq!(month(2026, 11), month(2024, 11));
        assert_eq!(month(2022, 3), month(2023, 3));
    }
}
