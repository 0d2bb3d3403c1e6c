//! One month of a federation's activity: accounts created and deactivated, the visits of the
//! month's active users, and the Matrix events they send, in time order.

use chrono::NaiveDate;
use rand::Rng;
use rand::distr::weighted::WeightedIndex;
use rand::prelude::Distribution;
use rand_chacha::ChaCha8Rng;

use crate::Simulation;
use crate::calibration::{ScaledTargets, olympic_boost};
use crate::rhythm::{self, DAY_MS};
use crate::rooms::RoomKind;

/// A visit: one row of Synapse's `user_daily_visits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Visit {
    pub account: u32,
    /// Index into the account's devices.
    pub device: u8,
    pub day: NaiveDate,
}

/// What an event says, in the terms the figures care about; `matrix.rs` renders it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventBody {
    Create {
        space: bool,
    },
    Name,
    Member {
        target: u32,
        membership: Membership,
        is_direct: bool,
        /// The `seq` of the membership this one replaces (Synapse's `replaces_state`).
        replaces: Option<u64>,
    },
    JoinRules {
        public: bool,
    },
    AccessRules,
    Encryption,
    Message {
        msgtype: &'static str,
        thread: bool,
    },
    Encrypted {
        thread: bool,
    },
    Edit,
    Reaction,
    Redaction,
    CallInvite,
    CallAnswer,
    CallHangup,
    CallMember {
        join: bool,
    },
    Beacon {
        live: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    Invite,
    Join,
}

/// One Matrix event sent by `sender` in `room`; `seq` makes its event ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimEvent {
    pub ts_ms: i64,
    pub sender: u32,
    pub room: u32,
    pub seq: u64,
    pub body: EventBody,
}

/// Everything that happened in one month (or a slice of a live day).
#[derive(Debug, Default)]
pub struct Activity {
    pub created: Vec<u32>,
    pub deactivated: Vec<u32>,
    pub active: Vec<u32>,
    pub visits: Vec<Visit>,
    pub events: Vec<SimEvent>,
}

/// Mix of room kinds among rooms created (Tchap: direct chats first).
const ROOM_MIX: [(RoomKind, f64); 5] = [
    (RoomKind::Direct, 0.62),
    (RoomKind::Private, 0.26),
    (RoomKind::External, 0.05),
    (RoomKind::Forum, 0.02),
    (RoomKind::Space, 0.05),
];

/// Per counted message: extra events that are not messages.
const REACTIONS_PER_MESSAGE: f64 = 0.3;
const EDITS_PER_MESSAGE: f64 = 0.05;
const REDACTIONS_PER_MESSAGE: f64 = 0.01;
const THREAD_SHARE: f64 = 0.07;
const CALLS_PER_MESSAGE: f64 = 0.004;
const GROUP_CALLS_PER_MESSAGE: f64 = 0.0012;
const LIVE_LOCATIONS_PER_MESSAGE: f64 = 0.0004;

/// Where and when messages are sent: the active users' visit days, weighted.
pub(crate) struct Talkers {
    slots: Vec<(u32, i64)>,
    index: Option<WeightedIndex<f64>>,
}

impl Talkers {
    pub(crate) fn new(slots: Vec<(u32, i64)>, weights: Vec<f64>) -> Self {
        let index = WeightedIndex::new(weights).ok();
        Self { slots, index }
    }

    /// An account and the UTC midnight of a day it is active on.
    pub(crate) fn draw(&self, rng: &mut ChaCha8Rng) -> Option<(u32, i64)> {
        let i = self.index.as_ref()?.sample(rng);
        self.slots.get(i).copied()
    }
}

impl Simulation {
    /// Generates the month starting at `first_day` with exactly `targets`' counts.
    pub(crate) fn generate_month(
        &mut self,
        first_day: NaiveDate,
        targets: ScaledTargets,
        rng: &mut ChaCha8Rng,
    ) -> Activity {
        let mut activity = Activity {
            created: self.population.create_in_month(
                &self.spec.federation,
                first_day,
                targets.accounts_created,
                rng,
            ),
            ..Activity::default()
        };
        activity.deactivated = self.population.deactivate_in_month(
            first_day,
            crate::calibration::MONTHLY_DEACTIVATION_RATE,
            rng,
        );
        activity.active = self
            .population
            .active_in_month(first_day, targets.monthly_active_users);

        let days = rhythm::days_of_month(first_day);
        let talkers = self.visits(&days, &activity.active, rng, &mut activity.visits);

        if self.directory.is_empty() {
            self.create_directory_forums(&activity.active, days[0], rng, &mut activity.events);
        }
        for _ in 0..targets.rooms_created {
            if let Some((creator, day)) = talkers.draw(rng) {
                let kind = pick_kind(rng);
                let at = day + rhythm::office_time_ms(rng);
                self.create_room(
                    creator,
                    kind,
                    at,
                    &activity.active,
                    rng,
                    &mut activity.events,
                );
            }
        }
        self.grow_directory_forums(&activity.active, &days, rng, &mut activity.events);
        self.messages(&talkers, targets.messages, rng, &mut activity.events);
        activity.events.sort_by_key(|e| (e.ts_ms, e.seq));
        activity
    }

    /// Visit days of each active account (weekly rhythm), one row per device used.
    fn visits(
        &self,
        days: &[NaiveDate],
        active: &[u32],
        rng: &mut ChaCha8Rng,
        visits: &mut Vec<Visit>,
    ) -> Talkers {
        let mut slots = Vec::new();
        let mut weights = Vec::new();
        for &account in active {
            let a = &self.population.accounts[account as usize];
            let created_day = a.created_s.div_euclid(86_400);
            let open: Vec<NaiveDate> = days
                .iter()
                .copied()
                .filter(|d| rhythm::day_ms(*d) / DAY_MS >= created_day)
                .collect();
            if open.is_empty() {
                continue;
            }
            let wanted = 1
                + ((open.len() - 1) as f64 * a.engagement.powf(1.3) * rng.random_range(0.3..1.0))
                    as usize;
            let day_weights: Vec<f64> = open.iter().map(|d| rhythm::weekday_weight(*d)).collect();
            let chosen = rand::seq::index::sample_weighted(
                rng,
                open.len(),
                |i| day_weights[i],
                wanted.min(open.len()),
            )
            .map(|c| c.into_vec())
            .unwrap_or_else(|_| vec![0]);
            let mut chosen: Vec<NaiveDate> = chosen.into_iter().map(|i| open[i]).collect();
            chosen.sort_unstable();
            for day in chosen {
                visits.push(Visit {
                    account,
                    device: 0,
                    day,
                });
                if a.devices.len() > 1 && rng.random_bool(0.5) {
                    visits.push(Visit {
                        account,
                        device: 1,
                        day,
                    });
                }
                slots.push((account, rhythm::day_ms(day)));
                weights.push(a.chattiness() * olympic_boost(day) * rhythm::weekday_weight(day));
            }
        }
        Talkers::new(slots, weights)
    }

    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn push(
        &mut self,
        events: &mut Vec<SimEvent>,
        ts_ms: i64,
        sender: u32,
        room: u32,
        body: EventBody,
    ) -> u64 {
        let seq = self.next_seq();
        events.push(SimEvent {
            ts_ms,
            sender,
            room,
            seq,
            body,
        });
        seq
    }

    /// A room's initial state, its invitations and the invitees' joins.
    pub(crate) fn create_room(
        &mut self,
        creator: u32,
        kind: RoomKind,
        at: i64,
        active: &[u32],
        rng: &mut ChaCha8Rng,
        events: &mut Vec<SimEvent>,
    ) -> u32 {
        let server = self.population.accounts[creator as usize].server;
        let room = self.rooms.add(server, kind, None, self.spec.seed);
        self.rooms.join(room, creator);
        let mut t = at;
        self.push(
            events,
            t,
            creator,
            room,
            EventBody::Create {
                space: kind == RoomKind::Space,
            },
        );
        t += 1;
        self.push(
            events,
            t,
            creator,
            room,
            EventBody::Member {
                target: creator,
                membership: Membership::Join,
                is_direct: false,
                replaces: None,
            },
        );
        t += 1;
        self.push(
            events,
            t,
            creator,
            room,
            EventBody::JoinRules {
                public: kind == RoomKind::Forum,
            },
        );
        t += 1;
        self.push(events, t, creator, room, EventBody::AccessRules);
        if kind.encrypted() {
            t += 1;
            self.push(events, t, creator, room, EventBody::Encryption);
        }
        if kind != RoomKind::Direct {
            t += 1;
            self.push(events, t, creator, room, EventBody::Name);
        }
        let invitees = match kind {
            RoomKind::Direct => self.pick_members(server, active, 1, 0.8, rng),
            RoomKind::Private => {
                let n = rng.random_range(2..=8);
                self.pick_members(server, active, n, 0.9, rng)
            }
            RoomKind::External => {
                let n = rng.random_range(1..=3);
                let mut members = self.pick_members(server, active, n, 1.0, rng);
                if let Some(external) = self.spec.federation.external_server() {
                    let m = rng.random_range(1..=2);
                    members.extend(self.pick_members(external as u16, active, m, 1.0, rng));
                }
                members
            }
            RoomKind::Space => {
                let n = rng.random_range(2..=6);
                self.pick_members(server, active, n, 0.9, rng)
            }
            RoomKind::Forum | RoomKind::Older => Vec::new(),
        };
        for invitee in invitees {
            if invitee == creator || self.rooms.is_member(room, invitee) {
                continue;
            }
            t += 1;
            let invite = self.push(
                events,
                t,
                creator,
                room,
                EventBody::Member {
                    target: invitee,
                    membership: Membership::Invite,
                    is_direct: kind == RoomKind::Direct,
                    replaces: None,
                },
            );
            let joined_at = t + rng.random_range(5_000..1_800_000);
            self.push(
                events,
                joined_at,
                invitee,
                room,
                EventBody::Member {
                    target: invitee,
                    membership: Membership::Join,
                    is_direct: false,
                    replaces: Some(invite),
                },
            );
            self.rooms.join(room, invitee);
        }
        if kind == RoomKind::Forum {
            // Heavy-tailed audiences, below the published directory's smallest forum.
            let cap = self.smallest_directory_forum().saturating_sub(1).max(2);
            let audience = ((2.0 / rng.random_range(0.05f64..1.0).powf(0.9)) as usize).min(cap);
            for _ in 0..audience {
                if active.is_empty() {
                    break;
                }
                let member = active[rng.random_range(0..active.len())];
                if self.rooms.is_member(room, member) {
                    continue;
                }
                let joined_at = t + rng.random_range(60_000..5 * DAY_MS);
                self.push(
                    events,
                    joined_at,
                    member,
                    room,
                    EventBody::Member {
                        target: member,
                        membership: Membership::Join,
                        is_direct: false,
                        replaces: None,
                    },
                );
                self.rooms.join(room, member);
            }
        }
        room
    }

    /// `count` active accounts, each on `server` with probability `same_server`.
    fn pick_members(
        &self,
        server: u16,
        active: &[u32],
        count: usize,
        same_server: f64,
        rng: &mut ChaCha8Rng,
    ) -> Vec<u32> {
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            let local = rng.random_bool(same_server);
            // A few tries at finding an account of the wanted kind among the active ones.
            for _ in 0..20 {
                if active.is_empty() {
                    break;
                }
                let candidate = active[rng.random_range(0..active.len())];
                let on_server = self.population.accounts[candidate as usize].server == server;
                if on_server == local && !members.contains(&candidate) {
                    members.push(candidate);
                    break;
                }
            }
        }
        members
    }

    /// Messages (exactly `count` that the figures count), with reactions, edits, redactions,
    /// calls and live locations around them.
    pub(crate) fn messages(
        &mut self,
        talkers: &Talkers,
        count: usize,
        rng: &mut ChaCha8Rng,
        events: &mut Vec<SimEvent>,
    ) {
        let mut rooms = Vec::new();
        for _ in 0..count {
            let Some((sender, day)) = talkers.draw(rng) else {
                return;
            };
            let server = self.population.accounts[sender as usize].server;
            self.rooms.talks_in(sender, server, &mut rooms);
            let room = rooms[rng.random_range(0..rooms.len())];
            let at = day + rhythm::office_time_ms(rng);
            let thread = rng.random_bool(THREAD_SHARE);
            let body = if self.rooms.rooms[room as usize].kind.encrypted() {
                EventBody::Encrypted { thread }
            } else {
                EventBody::Message {
                    msgtype: pick_msgtype(rng),
                    thread,
                }
            };
            self.push(events, at, sender, room, body);
            if rng.random_bool(REACTIONS_PER_MESSAGE) {
                let reactor = self.other_member(room, sender, rng);
                let later = at + rng.random_range(1_000..600_000);
                self.push(events, later, reactor, room, EventBody::Reaction);
            }
            if rng.random_bool(EDITS_PER_MESSAGE) {
                self.push(events, at + 30_000, sender, room, EventBody::Edit);
            }
            if rng.random_bool(REDACTIONS_PER_MESSAGE) {
                self.push(events, at + 60_000, sender, room, EventBody::Redaction);
            }
            if rng.random_bool(CALLS_PER_MESSAGE) {
                self.call(sender, &rooms, at, rng, events);
            }
            if rng.random_bool(GROUP_CALLS_PER_MESSAGE) {
                self.group_call(sender, &rooms, at, rng, events);
            }
            if rng.random_bool(LIVE_LOCATIONS_PER_MESSAGE) {
                self.push(
                    events,
                    at + 1,
                    sender,
                    room,
                    EventBody::Beacon { live: true },
                );
                self.push(
                    events,
                    at + 900_000,
                    sender,
                    room,
                    EventBody::Beacon { live: false },
                );
            }
        }
    }

    fn other_member(&self, room: u32, sender: u32, rng: &mut ChaCha8Rng) -> u32 {
        let members = &self.rooms.rooms[room as usize].members;
        if members.len() < 2 {
            return sender;
        }
        let other = members[rng.random_range(0..members.len())];
        if other == sender { members[0] } else { other }
    }

    /// A 1:1 call in one of the caller's direct chats.
    fn call(
        &mut self,
        caller: u32,
        rooms: &[u32],
        at: i64,
        rng: &mut ChaCha8Rng,
        events: &mut Vec<SimEvent>,
    ) {
        let Some(&room) = rooms.iter().find(|r| {
            let room = &self.rooms.rooms[**r as usize];
            room.kind == RoomKind::Direct && room.members.len() == 2
        }) else {
            return;
        };
        let callee = self.other_member(room, caller, rng);
        let duration = rng.random_range(30_000..1_800_000);
        self.push(events, at + 2, caller, room, EventBody::CallInvite);
        self.push(events, at + 4_000, callee, room, EventBody::CallAnswer);
        self.push(
            events,
            at + 4_000 + duration,
            caller,
            room,
            EventBody::CallHangup,
        );
    }

    /// A MatrixRTC group call: a few members join and leave.
    fn group_call(
        &mut self,
        starter: u32,
        rooms: &[u32],
        at: i64,
        rng: &mut ChaCha8Rng,
        events: &mut Vec<SimEvent>,
    ) {
        let Some(&room) = rooms.iter().find(|r| {
            let room = &self.rooms.rooms[**r as usize];
            matches!(room.kind, RoomKind::Private | RoomKind::External) && room.members.len() >= 2
        }) else {
            return;
        };
        let mut participants = vec![starter];
        let members = self.rooms.rooms[room as usize].members.clone();
        for member in members.into_iter().take(rng.random_range(2..=5)) {
            if !participants.contains(&member) {
                participants.push(member);
            }
        }
        for (i, participant) in participants.into_iter().enumerate() {
            let joined = at + 3 + i as i64 * 20_000;
            self.push(
                events,
                joined,
                participant,
                room,
                EventBody::CallMember { join: true },
            );
            let left = joined + rng.random_range(600_000..2_400_000);
            self.push(
                events,
                left,
                participant,
                room,
                EventBody::CallMember { join: false },
            );
        }
    }
}

fn pick_kind(rng: &mut ChaCha8Rng) -> RoomKind {
    let mut left = rng.random_range(0.0..1.0);
    for (kind, share) in ROOM_MIX {
        if left < share {
            return kind;
        }
        left -= share;
    }
    RoomKind::Direct
}

fn pick_msgtype(rng: &mut ChaCha8Rng) -> &'static str {
    match rng.random_range(0..100) {
        0..85 => "m.text",
        85..93 => "m.image",
        93..98 => "m.file",
        _ => "m.video",
    }
}
