//! Instants on the wire: milliseconds since the Unix epoch, UTC, as Matrix's
//! `origin_server_ts`. Kept as an integer newtype so no time zone can sneak in before the
//! query service applies the reporting one.

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const MILLIS_PER_DAY: i64 = 86_400_000;

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// The UTC calendar day of the instant, as the lake partitions by.
    pub fn utc_day(self) -> i32 {
        // div_euclid so that instants before 1970 still land on the day they belong to.
        self.0.div_euclid(MILLIS_PER_DAY) as i32
    }

    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.0)
    }

    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        Self(at.timestamp_millis())
    }

    /// Arrow/Delta timestamps are microseconds (Delta's `timestamp` type).
    pub fn to_micros(self) -> i64 {
        self.0.saturating_mul(1000)
    }

    pub fn from_micros(micros: i64) -> Self {
        Self(micros.div_euclid(1000))
    }
}

/// Days since 1970-01-01 (Arrow `Date32`) of a calendar date.
pub fn date_to_days(date: NaiveDate) -> i32 {
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days() as i32
}

/// The calendar date of an Arrow `Date32` value.
pub fn days_to_date(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)?
        .checked_add_signed(chrono::TimeDelta::try_days(days.into())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_day_of_instants_around_midnight_and_before_1970() {
        assert_eq!(UnixMillis(0).utc_day(), 0);
        assert_eq!(UnixMillis(MILLIS_PER_DAY - 1).utc_day(), 0);
        assert_eq!(UnixMillis(MILLIS_PER_DAY).utc_day(), 1);
        assert_eq!(UnixMillis(-1).utc_day(), -1);
    }

    #[test]
    fn dates_round_trip_through_days() {
        let olympics = NaiveDate::from_ymd_opt(2024, 7, 26).unwrap();
        assert_eq!(days_to_date(date_to_days(olympics)), Some(olympics));
        assert_eq!(date_to_days(olympics), 19_930);
    }
}
