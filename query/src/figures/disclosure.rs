//! What a published count may say (docs/design.md §4): the cell key method of the
//! statistical offices' flexible table builders.
//!
//! Every user has a fixed record key, the low bits of their pseudonym (an HMAC output, so
//! uniform). A cell's key is the sum of the record keys of the distinct people behind it
//! (for the running total of accounts, the keys of the accounts open at the month's end).
//! The published value is the exact value moved by a deterministic draw from the cell key and
//! the exact value:
//!
//! - the same people with the same count get the same value in every request, export,
//!   dashboard and report, so asking again, or another way, teaches nothing new;
//! - two cells whose people differ have independent draws, so a difference of two published
//!   values is a difference of two noisy values, never one person's exact count;
//! - a cell of fewer than k people (zero included) is withheld, so no published value is 1
//!   or 2, and nothing tells "nobody" from "one or two people".
//!
//! The draw is uniform over `-spread..=spread` steps. A step is one for counts of people, and
//! the mean count per person of the cell for counts of events (one person's messages move a
//! cell by about that much). A published count of k or more is never moved below k.

use super::grouping::Tally;

/// The bits of a pseudonym that make a user's record key.
pub const RECORD_KEY_MASK: i64 = 0x7FFF_FFFF;

/// The SQL of a cell's key over the distinct values of `user` (an Int64 pseudonym column).
pub fn cell_key_sql(user: &str, filter: &str) -> String {
    format!("SUM(DISTINCT ({user} & {RECORD_KEY_MASK})) FILTER (WHERE {filter})")
}

/// The record key of one user, as `cell_key_sql` sums it.
pub fn record_key(pseudonym: i64) -> i64 {
    pseudonym & RECORD_KEY_MASK
}

/// How counts are published: fewer than `min_users` people withheld, the others moved by at
/// most `spread` steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellKeyRule {
    pub min_users: i64,
    pub spread: i64,
}

impl CellKeyRule {
    pub fn new(min_users: u32, spread: u32) -> CellKeyRule {
        CellKeyRule {
            min_users: i64::from(min_users),
            spread: i64::from(spread),
        }
    }

    /// The published value of a cell, `None` when withheld. A cell nobody is behind has no
    /// tally: it is withheld alike (`published(None)`).
    pub fn publish(&self, tally: &Tally) -> Option<f64> {
        if tally.users < self.min_users.max(1) {
            return None;
        }
        let step = self.step(tally);
        let moved = tally.value + (self.draw(tally) * step) as f64;
        Some(moved.max(self.min_users as f64))
    }

    /// The published value of a cell that may have no tally (nobody did it): withheld.
    pub fn published(&self, tally: Option<&Tally>) -> Option<f64> {
        tally.and_then(|t| self.publish(t))
    }

    /// The largest distance between a published value and the exact one, for `tally`.
    pub fn bound(&self, tally: &Tally) -> f64 {
        (self.spread * self.step(tally)) as f64
    }

    /// One step of the draw: 1 for people, the mean per person for events.
    fn step(&self, tally: &Tally) -> i64 {
        if tally.users <= 0 {
            return 1;
        }
        ((tally.value / tally.users as f64).round() as i64).max(1)
    }

    /// The draw in `-spread..=spread`, a function of the cell key and the exact value only.
    fn draw(&self, tally: &Tally) -> i64 {
        if self.spread == 0 {
            return 0;
        }
        let width = (2 * self.spread + 1) as u64;
        let mixed = mix(mix(tally.key as u64) ^ tally.value.to_bits());
        (mixed % width) as i64 - self.spread
    }
}

/// The name of `publish_udf` in SQL.
pub const PUBLISH_FUNCTION: &str = "mx_publish";

/// `mx_publish(value DOUBLE, users BIGINT, cell_key BIGINT) -> DOUBLE`: `rule.publish` in
/// SQL, so that the publication views hold the API's values (NULL when withheld).
pub fn publish_udf(rule: CellKeyRule) -> datafusion::logical_expr::ScalarUDF {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, AsArray, Float64Array};
    use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};

    create_udf(
        PUBLISH_FUNCTION,
        vec![DataType::Float64, DataType::Int64, DataType::Int64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let [value, users, key] = arrays.as_slice() else {
                return Err(datafusion::error::DataFusionError::Plan(format!(
                    "{PUBLISH_FUNCTION} takes (value, users, cell_key)"
                )));
            };
            let (value, users, key) = (
                value.as_primitive::<Float64Type>(),
                users.as_primitive::<Int64Type>(),
                key.as_primitive::<Int64Type>(),
            );
            let published: Float64Array = (0..value.len())
                .map(|row| {
                    if value.is_null(row) || users.is_null(row) {
                        return None;
                    }
                    rule.publish(&Tally {
                        value: value.value(row),
                        users: users.value(row),
                        key: if key.is_null(row) { 0 } else { key.value(row) },
                    })
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(published)))
        }),
    )
}

/// SplitMix64's finalizer: every bit of the input moves every bit of the output.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(value: f64, users: i64, key: i64) -> Tally {
        Tally { value, users, key }
    }

    #[test]
    fn small_cells_are_withheld_and_never_published_below_k() {
        let rule = CellKeyRule::new(3, 2);
        for users in 0..3 {
            assert_eq!(rule.publish(&tally(users as f64, users, 77)), None);
        }
        assert_eq!(rule.published(None), None);
        for key in 0..2000 {
            let published = rule.publish(&tally(3.0, 3, key)).unwrap();
            assert!((3.0..=5.0).contains(&published), "{published}");
        }
    }

    #[test]
    fn the_draw_depends_on_the_people_and_the_count_only() {
        let rule = CellKeyRule::new(3, 2);
        let a = rule.publish(&tally(100.0, 100, 12345));
        assert_eq!(a, rule.publish(&tally(100.0, 100, 12345)));
        // Across many keys the draws take every value of the range, about equally often.
        let mut seen = [0usize; 5];
        for key in 0..5000 {
            let moved = rule.publish(&tally(100.0, 100, key)).unwrap() - 100.0;
            assert!(moved.abs() <= 2.0);
            seen[(moved + 2.0) as usize] += 1;
        }
        assert!(seen.iter().all(|n| *n > 800), "{seen:?}");
        // One more message by the same people is a new draw, not the old value plus one.
        let moves: usize = (0..500)
            .filter(|key| {
                let before = rule.publish(&tally(1000.0, 100, *key)).unwrap();
                let after = rule.publish(&tally(1001.0, 100, *key)).unwrap();
                after - before != 1.0
            })
            .count();
        assert!(moves > 300, "{moves}");
    }

    #[test]
    fn event_counts_move_by_the_mean_per_person() {
        let rule = CellKeyRule::new(3, 2);
        let cell = tally(5000.0, 100, 99);
        assert_eq!(rule.bound(&cell), 100.0);
        let moved = rule.publish(&cell).unwrap() - 5000.0;
        assert!(moved.abs() <= 100.0 && moved % 50.0 == 0.0, "{moved}");
        assert_eq!(CellKeyRule::new(3, 0).publish(&cell), Some(5000.0));
    }
}
