//! The simulator's own guarantees, before any pipeline: determinism, and the monthly counts
//! the figures will be computed from.

use std::collections::{HashMap, HashSet};

use chrono::{Datelike, NaiveDate};
use mxpulse_simulator::{
    EventBody, Federation, MonthTargets, RoomKind, Simulation, SimulationSpec, matrix,
};

fn spec(seed: u64, scale: f64, from: (i32, u32), to: (i32, u32)) -> SimulationSpec {
    SimulationSpec {
        seed,
        scale,
        from: NaiveDate::from_ymd_opt(from.0, from.1, 1).expect("date"),
        to: NaiveDate::from_ymd_opt(to.0, to.1, 1).expect("date"),
        federation: Federation::tchap(),
    }
}

/// What the figures count in a month, straight from the generated activity.
#[derive(Debug, Default)]
struct Counted {
    mau: usize,
    messages: usize,
    accounts: usize,
    rooms: usize,
    rooms_by_kind: HashMap<&'static str, usize>,
}

fn count(sim: &Simulation, activity: &mxpulse_simulator::Activity) -> Counted {
    let mut counted = Counted {
        mau: activity
            .visits
            .iter()
            .map(|v| v.account)
            .collect::<HashSet<_>>()
            .len(),
        accounts: activity.created.len(),
        ..Counted::default()
    };
    for event in &activity.events {
        match event.body {
            EventBody::Message { .. } | EventBody::Encrypted { .. } => counted.messages += 1,
            EventBody::Create { .. } => {
                counted.rooms += 1;
                let kind = match sim.rooms.rooms[event.room as usize].kind {
                    RoomKind::Direct => "direct",
                    RoomKind::Private => "private",
                    RoomKind::External => "external",
                    RoomKind::Forum => "forum",
                    RoomKind::Space => "space",
                    RoomKind::Older => "older",
                };
                *counted.rooms_by_kind.entry(kind).or_default() += 1;
            }
            _ => {}
        }
    }
    counted
}

#[test]
fn each_month_holds_exactly_its_scaled_targets() {
    let scale = 0.002;
    let mut sim = Simulation::new(spec(7, scale, (2024, 5), (2024, 8))).expect("valid spec");
    let mut months = Vec::new();
    while let Some((month, activity)) = sim.next_month() {
        let targets = MonthTargets::of(month).scaled(scale);
        let counted = count(&sim, &activity);
        assert_eq!(counted.mau, targets.monthly_active_users, "{month}");
        assert_eq!(counted.messages, targets.messages, "{month}");
        assert_eq!(counted.accounts, targets.accounts_created, "{month}");
        // The directory's 9 forums are created in the first month on top of the target.
        let directory = if month.month() == 5 { 9 } else { 0 };
        assert_eq!(counted.rooms, targets.rooms_created + directory, "{month}");
        assert!(counted.rooms_by_kind["direct"] > counted.rooms_by_kind["private"]);
        // Every event lies in its month, events are in time order.
        let (start, end) = (
            mxpulse_simulator::day_ms(month),
            mxpulse_simulator::day_ms(mxpulse_simulator::next_month(month)),
        );
        assert!(activity.events.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
        let inside = activity
            .events
            .iter()
            .filter(|e| e.ts_ms >= start && e.ts_ms < end)
            .count();
        // Joins of invitations sent late on the last day may spill a few minutes over.
        assert!(
            inside * 1000 >= activity.events.len() * 999,
            "{month}: {inside}/{}",
            activity.events.len()
        );
        months.push(counted);
    }
    let (may, july) = (&months[0], &months[2]);
    // The published ratios, up to rounding to whole counts at this scale.
    let ratio = |a: usize, b: usize| a as f64 / b as f64;
    assert!((ratio(july.messages, may.messages) - 1.27).abs() < 0.01);
    assert!((ratio(july.accounts, may.accounts) - 2.0).abs() < 0.2);
    assert!((ratio(july.rooms, may.rooms - 9) - 1.44).abs() < 0.05);
}

#[test]
fn the_same_seed_gives_the_same_events_and_another_seed_does_not() {
    let render = |seed: u64| {
        let mut sim =
            Simulation::new(spec(seed, 0.0005, (2024, 6), (2024, 7))).expect("valid spec");
        let (_, activity) = sim.next_month().expect("one month");
        activity
            .events
            .iter()
            .map(|e| sim.render(e).to_string())
            .collect::<Vec<_>>()
    };
    let first = render(42);
    assert!(!first.is_empty());
    assert_eq!(first, render(42));
    assert_ne!(first, render(43));
}

#[test]
fn rendered_events_are_what_synapse_sends_and_batches_hold_at_most_100() {
    let mut sim = Simulation::new(spec(1, 0.001, (2024, 7), (2024, 8))).expect("valid spec");
    let (_, activity) = sim.next_month().expect("one month");
    for event in activity.events.iter().take(2_000) {
        let json = sim.render(event);
        let sender = json["sender"].as_str().expect("sender");
        let server = sim.server_of(event.sender);
        assert!(sender.ends_with(&format!(":{server}")), "{sender}");
        // Tchap's localpart: the address with `-` for `@`.
        let localpart = sender
            .trim_start_matches('@')
            .split(':')
            .next()
            .expect("localpart");
        assert!(
            localpart.contains('-') && localpart.contains('.'),
            "{localpart}"
        );
        assert!(json["event_id"].as_str().expect("id").starts_with('$'));
        assert!(json["room_id"].as_str().expect("room").starts_with('!'));
    }
    let batches = matrix::per_server_batches(&sim, &activity.events);
    let total: usize = batches.iter().flatten().map(Vec::len).sum();
    assert_eq!(total, activity.events.len());
    assert!(
        batches
            .iter()
            .flatten()
            .all(|b| !b.is_empty() && b.len() <= 100)
    );
    for (server, server_batches) in batches.iter().enumerate() {
        for event in server_batches.iter().flatten() {
            assert_eq!(sim.origin_server(event), server);
        }
    }
}

#[test]
fn invalid_specs_are_refused() {
    assert!(Simulation::new(spec(1, 0.0, (2024, 1), (2024, 2))).is_err());
    assert!(Simulation::new(spec(1, f64::NAN, (2024, 1), (2024, 2))).is_err());
    assert!(Simulation::new(spec(1, 0.01, (2024, 2), (2024, 2))).is_err());
}
