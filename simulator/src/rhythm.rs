//! The calendar: days of a month, the weekly rhythm, office hours.

use chrono::{Datelike, NaiveDate, Weekday};
use rand::Rng;
use rand::distr::weighted::WeightedIndex;
use rand::prelude::Distribution;
use rand_chacha::ChaCha8Rng;

pub const DAY_MS: i64 = 86_400_000;

/// Milliseconds since the epoch of a UTC midnight.
pub fn day_ms(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp_millis())
}

/// The first day of the month after the one holding `day`.
pub fn next_month(day: NaiveDate) -> NaiveDate {
    let (y, m) = if day.month() == 12 {
        (day.year() + 1, 1)
    } else {
        (day.year(), day.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(day)
}

/// Every day of the month starting at `first_day`.
pub fn days_of_month(first_day: NaiveDate) -> Vec<NaiveDate> {
    let end = next_month(first_day);
    first_day.iter_days().take_while(|d| *d < end).collect()
}

/// Working days carry the activity; weekends keep about a quarter of it.
pub fn weekday_weight(day: NaiveDate) -> f64 {
    match day.weekday() {
        Weekday::Sat => 0.3,
        Weekday::Sun => 0.22,
        _ => 1.0,
    }
}

/// A time of day, UTC, in (French) office hours mostly: the same calendar day in Paris.
pub fn office_time_ms(rng: &mut ChaCha8Rng) -> i64 {
    const HOUR_WEIGHTS: [u32; 17] = [1, 3, 6, 9, 10, 9, 6, 7, 9, 9, 8, 6, 4, 3, 2, 2, 1];
    let total: u32 = HOUR_WEIGHTS.iter().sum();
    let mut left = rng.random_range(0..total);
    let mut hour = 0;
    for (h, w) in HOUR_WEIGHTS.iter().enumerate() {
        if left < *w {
            hour = h;
            break;
        }
        left -= w;
    }
    // 05:00–21:59 UTC is 06:00/07:00–22:59/23:59 in Paris: never another calendar day.
    (5 + hour as i64) * 3_600_000 + rng.random_range(0..3_600_000)
}

/// Draws days by weight.
pub struct WeightedDays<'a> {
    days: &'a [NaiveDate],
    index: Option<WeightedIndex<f64>>,
}

impl<'a> WeightedDays<'a> {
    pub fn new(days: &'a [NaiveDate], weights: &[f64]) -> Self {
        Self {
            days,
            index: WeightedIndex::new(weights.iter().copied()).ok(),
        }
    }

    pub fn draw(&self, rng: &mut ChaCha8Rng) -> NaiveDate {
        match &self.index {
            Some(index) => self.days[index.sample(rng)],
            None => self.days[rng.random_range(0..self.days.len())],
        }
    }
}
