//! Complementary suppression (docs/design.md §4): a small cell hidden on its own can be
//! recovered by subtraction whenever it belongs to cells that add up to a shown total (the
//! servers of a month and the month's total, the days of a month and the month, the kinds
//! of rooms and all rooms). For each such group, the hidden members must be at least two and
//! cover at least k users together; while they are not, the smallest shown member is hidden
//! too, and so on across groups until nothing changes. What stays recoverable is then the
//! sum of two or more hidden cells of k users or more, never one small cell.
//!
//! The groups are built from the same complete data whatever part of it a request shows
//! (`FigureRequest::counted` widens a daily request to whole months and a room-kind figure
//! to its family), so that two requests never hide differently and give each other away.

use std::collections::{BTreeMap, BTreeSet};

use super::grouping::Tally;
use super::tally::Cells;

/// A cell among every figure's: (figure, period, breakdown, key).
pub type CellId = (&'static str, String, &'static str, Option<String>);

/// Cells (indices) that add up to `sum` (or, with `sum` `None`, to a total shown elsewhere,
/// such as the month of a daily request's days; or absent from these cells).
#[derive(Debug)]
struct Group {
    sum: Option<usize>,
    members: Vec<usize>,
}

/// Whether a figure's days add up to its month: counts of rows do, distinct users do not.
pub fn adds_up_over_days(figure: &str) -> bool {
    super::FIGURES
        .iter()
        .any(|f| f.name == figure && f.value.is_none())
}

/// The figures whose cells add up to another's: every kind of room created adds up to all
/// rooms created.
pub const ROOM_KINDS: (&str, [&str; 5]) = (
    "rooms_created",
    [
        "rooms_created_direct",
        "rooms_created_private",
        "rooms_created_external",
        "rooms_created_forum",
        "rooms_created_space",
    ],
);

/// The figures counted with `name` so that its cells are protected alike in every request.
pub fn family(name: &str) -> Option<Vec<&'static str>> {
    let (all, kinds) = ROOM_KINDS;
    (name == all || kinds.contains(&name)).then(|| std::iter::once(all).chain(kinds).collect())
}

/// The cells hidden among `figures` (each figure's cells, periods being months or days as
/// `daily` says): those of fewer than `k` users, and their complements.
pub fn hidden(figures: &[(&'static str, &Cells)], daily: bool, k: i64) -> BTreeSet<CellId> {
    hidden_from(figures, daily, k, BTreeSet::new())
}

/// `hidden`, with `already` hidden besides the small cells.
pub fn hidden_from(
    figures: &[(&'static str, &Cells)],
    daily: bool,
    k: i64,
    already: BTreeSet<CellId>,
) -> BTreeSet<CellId> {
    // Cells by index, in `CellId` order (the tie-break below): a request's report holds tens
    // of thousands of cells, looked up many times each pass.
    let mut cells: Vec<(CellRef<'_>, Tally)> = figures
        .iter()
        .flat_map(|(figure, cells)| {
            cells.iter().map(move |((period, breakdown, key), tally)| {
                (
                    (*figure, period.as_str(), *breakdown, key.as_deref()),
                    *tally,
                )
            })
        })
        .collect();
    cells.sort_by(|a, b| a.0.cmp(&b.0));
    cells.dedup_by(|a, b| a.0 == b.0);
    let index: BTreeMap<CellRef<'_>, usize> = cells
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i))
        .collect();
    let groups = groups(&cells, &index, daily);
    // The sole member of a group is its sum: hiding it hides nothing, so it is never the
    // complement chosen for another group.
    let mut pinned = vec![false; cells.len()];
    for group in groups.iter().filter(|g| g.members.len() == 1) {
        pinned[group.members[0]] = true;
    }
    let mut hidden: Vec<bool> = cells.iter().map(|(_, t)| t.users < k).collect();
    for id in &already {
        if let Some(&i) = index.get(&(id.0, id.1.as_str(), id.2, id.3.as_deref())) {
            hidden[i] = true;
        }
    }
    // Each pass hides at least one more cell, or ends: at most as many passes as cells.
    loop {
        let mut changed = false;
        for group in &groups {
            if group.sum.is_some_and(|s| hidden[s]) {
                continue;
            }
            let (users, count) = group
                .members
                .iter()
                .filter(|&&m| hidden[m])
                .fold((0, 0), |(u, n), &m| (u + cells[m].1.users, n + 1));
            if count == 0 || (count >= 2 && users >= k) {
                continue;
            }
            let smallest = group
                .members
                .iter()
                .copied()
                .filter(|&m| !hidden[m] && !pinned[m])
                .min_by(|&a, &b| {
                    let (ta, tb) = (cells[a].1, cells[b].1);
                    (ta.users, ta.value)
                        .partial_cmp(&(tb.users, tb.value))
                        .unwrap_or(std::cmp::Ordering::Equal)
                        .then_with(|| a.cmp(&b))
                });
            if let Some(smallest) = smallest {
                hidden[smallest] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut out = already;
    out.extend(
        cells
            .iter()
            .zip(&hidden)
            .filter(|(_, h)| **h)
            .map(|((id, _), _)| (id.0, id.1.to_owned(), id.2, id.3.map(str::to_owned))),
    );
    out
}

/// A cell's coordinates, borrowed.
type CellRef<'a> = (&'static str, &'a str, &'static str, Option<&'a str>);

/// The groups among `cells` (by index): a period's keys of a breakdown under its total; a
/// month's days under the month (daily, counts of rows); a room-kind family's kinds under all
/// rooms.
fn groups(
    cells: &[(CellRef<'_>, Tally)],
    index: &BTreeMap<CellRef<'_>, usize>,
    daily: bool,
) -> Vec<Group> {
    let mut by_breakdown: BTreeMap<(&'static str, &str, &'static str), Vec<usize>> =
        BTreeMap::new();
    let mut by_month: BTreeMap<(&'static str, &str, &'static str, Option<&str>), Vec<usize>> =
        BTreeMap::new();
    let mut by_kind: BTreeMap<(&str, &'static str, Option<&str>), Vec<usize>> = BTreeMap::new();
    for (i, &((figure, period, breakdown, key), _)) in cells.iter().enumerate() {
        if breakdown != "total" {
            by_breakdown
                .entry((figure, period, breakdown))
                .or_default()
                .push(i);
        }
        // Days add up to their month for counts of rows, not for distinct users.
        if daily
            && adds_up_over_days(figure)
            && let Some(month) = period.get(..7)
        {
            by_month
                .entry((figure, month, breakdown, key))
                .or_default()
                .push(i);
        }
        if ROOM_KINDS.1.contains(&figure) {
            by_kind.entry((period, breakdown, key)).or_default().push(i);
        }
    }
    let mut groups = Vec::new();
    for ((figure, period, _), members) in by_breakdown {
        groups.push(Group {
            sum: index.get(&(figure, period, "total", None)).copied(),
            members,
        });
    }
    for (_, members) in by_month {
        groups.push(Group { sum: None, members });
    }
    for ((period, breakdown, key), members) in by_kind {
        groups.push(Group {
            sum: index.get(&(ROOM_KINDS.0, period, breakdown, key)).copied(),
            members,
        });
    }
    groups
}

/// The months of a running total (`total_active_accounts`) shown: a month's value is hidden
/// when under `k`, and also when the accounts that changed since the last shown month are
/// fewer than `k` people (the difference of two shown months would tell their number). Walks
/// from the first month of `changes` (month -> (net change, users who changed)), so that
/// every request decides alike whatever months it shows.
pub fn running_total_shown(
    at_end: &BTreeMap<String, f64>,
    changes: &BTreeMap<String, (f64, i64)>,
    k: i64,
) -> BTreeSet<String> {
    let mut shown = BTreeSet::new();
    let mut changed_since: i64 = 0;
    let mut any_shown = false;
    for (month, value) in at_end {
        changed_since += changes.get(month).map(|(_, users)| *users).unwrap_or(0);
        let large = (*value as i64) >= k;
        // The first shown month differs from nothing; a month with no change from the last
        // shown one tells nothing new.
        if large && (!any_shown || changed_since == 0 || changed_since >= k) {
            shown.insert(month.clone());
            any_shown = true;
            changed_since = 0;
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(entries: &[(&str, &'static str, Option<&str>, f64, i64)]) -> Cells {
        entries
            .iter()
            .map(|(p, b, k, value, users)| {
                (
                    (p.to_string(), *b, k.map(str::to_owned)),
                    Tally {
                        value: *value,
                        users: *users,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn one_small_server_takes_the_next_smallest_with_it() {
        // Total 9 users; A 5, B 3, C 1: C alone hidden would be 9 - 5 - 3.
        let c = cells(&[
            ("2024-05", "total", None, 9.0, 9),
            ("2024-05", "server", Some("a"), 5.0, 5),
            ("2024-05", "server", Some("b"), 3.0, 3),
            ("2024-05", "server", Some("c"), 1.0, 1),
        ]);
        let hidden = hidden(&[("active_users", &c)], false, 3);
        let keys: Vec<_> = hidden.iter().map(|h| h.3.clone()).collect();
        assert_eq!(keys, [Some("b".into()), Some("c".into())]);
    }

    #[test]
    fn hidden_cells_cover_k_users_together() {
        // Two hidden of 1 user each: their sum would be two people's; a third is hidden.
        let c = cells(&[
            ("2024-05", "total", None, 12.0, 12),
            ("2024-05", "domain", Some("a"), 6.0, 6),
            ("2024-05", "domain", Some("b"), 4.0, 4),
            ("2024-05", "domain", Some("c"), 1.0, 1),
            ("2024-05", "domain", Some("d"), 1.0, 1),
        ]);
        let hidden = hidden(&[("active_users", &c)], false, 3);
        assert_eq!(hidden.len(), 3, "{hidden:?}");
    }

    #[test]
    fn a_small_day_hides_another_day_of_its_month() {
        let c = cells(&[
            ("2024-05-01", "total", None, 40.0, 10),
            ("2024-05-02", "total", None, 30.0, 8),
            ("2024-05-03", "total", None, 2.0, 1),
            ("2024-06-01", "total", None, 2.0, 5),
        ]);
        let hidden = hidden(&[("messages", &c)], true, 3);
        let days: Vec<_> = hidden.iter().map(|h| h.1.as_str()).collect();
        assert_eq!(days, ["2024-05-02", "2024-05-03"]);
    }

    #[test]
    fn a_small_kind_of_room_hides_another_kind() {
        let all = cells(&[("2024-05", "total", None, 10.0, 6)]);
        let direct = cells(&[("2024-05", "total", None, 7.0, 4)]);
        let forum = cells(&[("2024-05", "total", None, 2.0, 2)]);
        let space = cells(&[("2024-05", "total", None, 1.0, 1)]);
        let hidden = hidden(
            &[
                ("rooms_created", &all),
                ("rooms_created_direct", &direct),
                ("rooms_created_forum", &forum),
                ("rooms_created_space", &space),
            ],
            false,
            3,
        );
        let figures: Vec<_> = hidden.iter().map(|h| h.0).collect();
        // Forum and space hidden (primary), together 3 users: enough.
        assert_eq!(figures, ["rooms_created_forum", "rooms_created_space"]);
    }

    #[test]
    fn a_running_total_hides_months_whose_change_is_few_people() {
        let at_end: BTreeMap<String, f64> = [
            ("2024-01", 10.0),
            ("2024-02", 11.0),
            ("2024-03", 13.0),
            ("2024-04", 13.0),
        ]
        .into_iter()
        .map(|(m, v)| (m.to_owned(), v))
        .collect();
        let changes: BTreeMap<String, (f64, i64)> = [
            ("2024-01", (10.0, 10)),
            ("2024-02", (1.0, 1)),
            ("2024-03", (2.0, 2)),
        ]
        .into_iter()
        .map(|(m, c)| (m.to_owned(), c))
        .collect();
        let shown = running_total_shown(&at_end, &changes, 3);
        // February differs from January by one person: hidden; March by three since January.
        let shown: Vec<_> = shown.iter().map(String::as_str).collect();
        assert_eq!(shown, ["2024-01", "2024-03", "2024-04"]);
    }
}
