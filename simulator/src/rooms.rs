//! Rooms and who is in them.

use crate::population::mix;

/// What a room is, as its initial state will say (docs/design.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomKind {
    Direct,
    Private,
    External,
    Forum,
    Space,
    /// Created before the simulation's first month: it has members and traffic but no
    /// creation event in the window.
    Older,
}

impl RoomKind {
    pub fn encrypted(self) -> bool {
        matches!(
            self,
            RoomKind::Direct | RoomKind::Private | RoomKind::External | RoomKind::Older
        )
    }

    /// The Tchap access rule of the kind (`im.vector.room.access_rules`).
    pub fn access_rule(self) -> &'static str {
        match self {
            RoomKind::Direct => "direct",
            RoomKind::External => "unrestricted",
            _ => "restricted",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Room {
    pub server: u16,
    pub kind: RoomKind,
    /// Part of the room ID.
    pub hash: u64,
    pub members: Vec<u32>,
    /// Set for the forums of the published directory.
    pub name: Option<&'static str>,
}

/// Every room, and the rooms each account joined (most recent last).
#[derive(Debug, Default)]
pub struct Rooms {
    pub rooms: Vec<Room>,
    joined: Vec<Vec<u32>>,
    /// Older rooms of each server, shared by its accounts.
    older: Vec<Vec<u32>>,
}

/// How many of an account's latest rooms it talks in.
const RECENT_ROOMS: usize = 12;

impl Rooms {
    pub fn new(servers: usize, accounts_per_server: &[usize], seed: u64) -> Self {
        let mut rooms = Self::default();
        for server in 0..servers {
            let count = (accounts_per_server.get(server).copied().unwrap_or(0) / 15).max(2);
            let ids = (0..count)
                .map(|_| rooms.add(server as u16, RoomKind::Older, None, seed))
                .collect();
            rooms.older.push(ids);
        }
        rooms
    }

    pub fn add(
        &mut self,
        server: u16,
        kind: RoomKind,
        name: Option<&'static str>,
        seed: u64,
    ) -> u32 {
        let index = self.rooms.len() as u32;
        self.rooms.push(Room {
            server,
            kind,
            hash: mix(seed ^ mix(0x7200_0000 + index as u64)),
            members: Vec::new(),
            name,
        });
        index
    }

    pub fn join(&mut self, room: u32, account: u32) {
        let slot = account as usize;
        if self.joined.len() <= slot {
            self.joined.resize(slot + 1, Vec::new());
        }
        let rooms = &mut self.joined[slot];
        if !rooms.contains(&room) {
            rooms.push(room);
            if rooms.len() > RECENT_ROOMS {
                rooms.remove(0);
            }
        }
        let members = &mut self.rooms[room as usize].members;
        if !members.contains(&account) {
            members.push(account);
        }
    }

    pub fn is_member(&self, room: u32, account: u32) -> bool {
        self.rooms[room as usize].members.contains(&account)
    }

    /// The rooms `account` talks in: its latest rooms and two older rooms of its server.
    pub fn talks_in(&self, account: u32, server: u16, out: &mut Vec<u32>) {
        out.clear();
        if let Some(rooms) = self.joined.get(account as usize) {
            out.extend_from_slice(rooms);
        }
        if let Some(older) = self.older.get(server as usize) {
            let hash = mix(account as u64);
            out.push(older[(hash % older.len() as u64) as usize]);
            out.push(older[((hash >> 32) % older.len() as u64) as usize]);
        }
    }

    /// `!…:server`.
    pub fn room_id(&self, room: u32, server_name: &str) -> String {
        format!("!{:016x}:{server_name}", self.rooms[room as usize].hash)
    }
}
