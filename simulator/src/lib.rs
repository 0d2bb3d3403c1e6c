//! A deterministic simulator of a federation of Matrix homeservers shaped like the public one
//! (docs/design.md §8), calibrated so that the figures computed from what it produces reproduce
//! the published ones at `--scale 1`, and every ratio at any scale.
//!
//! How the calibration holds: each month's totals (monthly active users, messages, accounts
//! created, rooms created) are drawn exactly, scaled and rounded, from `calibration.rs`; what
//! is random is who, when and where: which accounts are active (engagement plus a monthly
//! draw), on which days (weekly rhythm, the Olympics), in which rooms, with which reactions,
//! edits, calls. So the only gap between a figure at scale s and the published value times
//! s is rounding to whole counts.
//!
//! The flow: `Simulation::new` builds the accounts that exist before the first month;
//! `next_month` yields one month's `Activity`; `matrix.rs` renders its events as Synapse
//! would send them to an appservice; `synapse_sqlite.rs` writes what Synapse's database
//! would hold. Same seed and scale, same bytes.

pub mod activity;
pub mod calibration;
pub mod federation;
pub mod matrix;
pub mod population;
mod rhythm;
pub mod rooms;
pub mod synapse_sqlite;

use chrono::{Datelike, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use activity::{Activity, EventBody, Membership, SimEvent, Visit};
pub use calibration::MonthTargets;
pub use federation::{DIRECTORY_FORUMS, Federation};
pub use population::{Platform, Population};
pub use rhythm::{day_ms, next_month};
pub use rooms::{RoomKind, Rooms};

use crate::activity::Talkers;

#[derive(Debug, thiserror::Error)]
pub enum SimulationError {
    #[error("the scale must be a positive number, not {0}")]
    Scale(f64),
    #[error("the period is empty: {from} is not before {to}")]
    Period { from: NaiveDate, to: NaiveDate },
    #[error("no server to simulate")]
    NoServer,
}

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimulationSpec {
    pub seed: u64,
    /// 1 is the public federation's size; populations and volumes scale linearly.
    pub scale: f64,
    /// First month (its first day).
    pub from: NaiveDate,
    /// First month not generated.
    pub to: NaiveDate,
    pub federation: Federation,
}

/// A forum of the published directory and how many members it should reach at the end.
#[derive(Debug)]
struct DirectoryForum {
    room: u32,
    members: usize,
}

/// The simulation's state between months.
pub struct Simulation {
    pub spec: SimulationSpec,
    pub population: Population,
    pub rooms: Rooms,
    /// The next month to generate.
    month: NaiveDate,
    seq: u64,
    directory: Vec<DirectoryForum>,
    /// Accounts that existed when the first generated month began.
    accounts_before: usize,
    /// The last month's active accounts: who the live trickle draws from.
    last_active: Vec<u32>,
    /// Visits the live trickle already reported (Synapse keeps one row per user, device, day).
    live_visits: std::collections::HashSet<(u32, NaiveDate)>,
}

/// The first month the simulation evolves from (2023, or earlier if asked).
const EPOCH: (i32, u32) = (2023, 1);

impl Simulation {
    pub fn new(spec: SimulationSpec) -> Result<Self, SimulationError> {
        if !(spec.scale.is_finite() && spec.scale > 0.0) {
            return Err(SimulationError::Scale(spec.scale));
        }
        let from = month_start(spec.from);
        let to = month_start(spec.to);
        if from >= to {
            return Err(SimulationError::Period { from, to });
        }
        if spec.federation.servers.is_empty() {
            return Err(SimulationError::NoServer);
        }
        let epoch = NaiveDate::from_ymd_opt(EPOCH.0, EPOCH.1, 1)
            .unwrap_or(from)
            .min(from);
        let initial = (calibration::ACCOUNTS_BEFORE_2023 * spec.scale)
            .round()
            .max(1.0) as usize;
        let mut population = Population::before(&spec.federation, epoch, initial, spec.seed);
        // Months before `from` shape the population but produce nothing.
        let mut month = epoch;
        while month < from {
            let mut rng = month_rng(spec.seed, month);
            let targets = MonthTargets::of(month).scaled(spec.scale);
            population.create_in_month(&spec.federation, month, targets.accounts_created, &mut rng);
            population.deactivate_in_month(month, calibration::MONTHLY_DEACTIVATION_RATE, &mut rng);
            month = next_month(month);
        }
        let mut per_server = vec![0; spec.federation.servers.len()];
        for account in &population.accounts {
            per_server[account.server as usize] += 1;
        }
        let rooms = Rooms::new(spec.federation.servers.len(), &per_server, spec.seed);
        let accounts_before = population.accounts.len();
        Ok(Self {
            spec: SimulationSpec { from, to, ..spec },
            population,
            rooms,
            month: from,
            seq: 0,
            directory: Vec::new(),
            accounts_before,
            last_active: Vec::new(),
            live_visits: std::collections::HashSet::new(),
        })
    }

    /// Accounts created before the first generated month (they exist in the homeservers'
    /// databases but produce no creation record in the period).
    pub fn accounts_before(&self) -> std::ops::Range<u32> {
        0..self.accounts_before as u32
    }

    /// The months left to generate.
    pub fn months_left(&self) -> usize {
        let mut n = 0;
        let mut m = self.month;
        while m < self.spec.to {
            n += 1;
            m = next_month(m);
        }
        n
    }

    /// The next month's first day and activity, until `to`.
    pub fn next_month(&mut self) -> Option<(NaiveDate, Activity)> {
        if self.month >= self.spec.to {
            return None;
        }
        let month = self.month;
        let mut rng = month_rng(self.spec.seed, month);
        let targets = MonthTargets::of(month).scaled(self.spec.scale);
        let activity = self.generate_month(month, targets, &mut rng);
        self.last_active.clone_from(&activity.active);
        self.month = next_month(month);
        Some((month, activity))
    }

    /// Live activity in `[from_ms, to_ms)`: `messages` messages (with their reactions and
    /// the like) from last month's active accounts, a room now and then, and the visits of
    /// whoever spoke. `tick` numbers the slices so each one draws afresh.
    pub fn live_slice(&mut self, from_ms: i64, to_ms: i64, messages: usize, tick: u64) -> Activity {
        let mut rng = ChaCha8Rng::seed_from_u64(self.spec.seed ^ population::mix(tick ^ 0x11FE));
        let mut activity = Activity::default();
        if self.last_active.is_empty() || to_ms <= from_ms {
            return activity;
        }
        let day = from_ms.div_euclid(rhythm::DAY_MS) * rhythm::DAY_MS;
        let speakers: Vec<u32> = (0..messages.max(1))
            .map(|_| self.last_active[rng.random_range(0..self.last_active.len())])
            .collect();
        let weights = vec![1.0; speakers.len()];
        let talkers = Talkers::new(speakers.iter().map(|a| (*a, day)).collect(), weights);
        let active = self.last_active.clone();
        if rng.random_bool(0.2)
            && let Some((creator, _)) = talkers.draw(&mut rng)
        {
            let kind = if rng.random_bool(0.7) {
                RoomKind::Direct
            } else {
                RoomKind::Private
            };
            self.create_room(
                creator,
                kind,
                from_ms,
                &active,
                &mut rng,
                &mut activity.events,
            );
        }
        self.messages(&talkers, messages, &mut rng, &mut activity.events);
        // Live events happen now, not at office hours of the day.
        for event in &mut activity.events {
            event.ts_ms = from_ms + (population::mix(event.seq) % (to_ms - from_ms) as u64) as i64;
        }
        activity.events.sort_by_key(|e| (e.ts_ms, e.seq));
        let today = chrono::DateTime::from_timestamp_millis(from_ms)
            .map_or(self.spec.from, |t| t.date_naive());
        let mut speakers = speakers;
        speakers.sort_unstable();
        speakers.dedup();
        activity.visits = speakers
            .into_iter()
            .filter(|account| self.live_visits.insert((*account, today)))
            .map(|account| Visit {
                account,
                device: 0,
                day: today,
            })
            .collect();
        activity
    }

    fn smallest_directory_forum(&self) -> usize {
        self.directory
            .iter()
            .map(|f| f.members)
            .min()
            .unwrap_or(usize::MAX)
    }

    /// The forums of the published directory, created on the first generated month's first
    /// day by an active account of their server.
    fn create_directory_forums(
        &mut self,
        active: &[u32],
        first_day: NaiveDate,
        rng: &mut ChaCha8Rng,
        events: &mut Vec<SimEvent>,
    ) {
        for (i, (name, server, members)) in DIRECTORY_FORUMS.iter().enumerate() {
            let server = self.spec.federation.find(server).unwrap_or(0) as u16;
            let creator = active
                .iter()
                .copied()
                .find(|a| self.population.accounts[*a as usize].server == server)
                .or_else(|| active.first().copied());
            let Some(creator) = creator else { return };
            let at = day_ms(first_day) + 9 * 3_600_000 + i as i64 * 60_000;
            let room = self.create_room(creator, RoomKind::Forum, at, &[], rng, events);
            self.rooms.rooms[room as usize].name = Some(name);
            let members = ((*members as f64) * self.spec.scale).round().max(3.0) as usize;
            self.directory.push(DirectoryForum { room, members });
        }
    }

    /// Directory forums grow evenly to their published size by the last generated month.
    fn grow_directory_forums(
        &mut self,
        active: &[u32],
        days: &[NaiveDate],
        rng: &mut ChaCha8Rng,
        events: &mut Vec<SimEvent>,
    ) {
        let months_left = self.months_left().max(1);
        for i in 0..self.directory.len() {
            let DirectoryForum { room, members } = self.directory[i];
            let have = self.rooms.rooms[room as usize].members.len();
            let wanted = members.saturating_sub(have).div_ceil(months_left);
            let mut tries = 0;
            let mut joined = 0;
            while joined < wanted && tries < wanted * 20 && !active.is_empty() {
                tries += 1;
                let member = active[rng.random_range(0..active.len())];
                if self.rooms.is_member(room, member) {
                    continue;
                }
                let day = days[rng.random_range(0..days.len())];
                let at = day_ms(day) + rhythm::office_time_ms(rng);
                let seq = self.next_seq();
                events.push(SimEvent {
                    ts_ms: at,
                    sender: member,
                    room,
                    seq,
                    body: EventBody::Member {
                        target: member,
                        membership: Membership::Join,
                        is_direct: false,
                        replaces: None,
                    },
                });
                self.rooms.join(room, member);
                joined += 1;
            }
        }
    }

    /// The user ID of an account.
    pub fn user_id(&self, account: u32) -> String {
        self.population.user_id(&self.spec.federation, account)
    }

    /// `items` split by the server of the account each one belongs to (index = server).
    pub fn by_server<T: Copy>(
        &self,
        items: impl IntoIterator<Item = T>,
        account: impl Fn(&T) -> u32,
    ) -> Vec<Vec<T>> {
        let mut per_server = vec![Vec::new(); self.spec.federation.servers.len()];
        for item in items {
            let server = self.population.accounts[account(&item) as usize].server as usize;
            per_server[server].push(item);
        }
        per_server
    }

    /// A visit as Synapse's `user_daily_visits` holds it: user ID, device ID, the day's UTC
    /// midnight in ms, the device's user agent.
    pub fn visit_row(&self, visit: &Visit) -> (String, String, i64, &'static str) {
        let account = &self.population.accounts[visit.account as usize];
        // Every account has a first device; a visit names one of its devices.
        let device = usize::from(visit.device).min(account.devices.len().saturating_sub(1));
        let moved = population::tchap_x_day(self.spec.seed, visit.account, device)
            .is_some_and(|day| visit.day >= day);
        let user_agent = account
            .devices
            .get(device)
            .map_or(Platform::Web, |p| *p)
            .user_agent(moved);
        (
            self.user_id(visit.account),
            account.device_id(visit.account, device),
            day_ms(visit.day),
            user_agent,
        )
    }

    /// The server name of an account.
    pub fn server_of(&self, account: u32) -> &str {
        let server = self.population.accounts[account as usize].server as usize;
        &self.spec.federation.servers[server].name
    }
}

/// The first day of the month holding `day`.
pub fn month_start(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

/// Each month draws from its own stream, so a month's content depends on the seed and the
/// state, not on how many draws earlier months made.
fn month_rng(seed: u64, month: NaiveDate) -> ChaCha8Rng {
    let key = (month.year() as u64) * 12 + month.month0() as u64;
    ChaCha8Rng::seed_from_u64(population::mix(seed) ^ population::mix(key))
}
