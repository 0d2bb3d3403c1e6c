//! Events rendered as Synapse sends them to an appservice (the shapes of the real transactions
//! in `hooks/tests/data/synapse-appservice/`), and appservice transactions of up to 100 events.

use serde_json::{Value, json};

use crate::population::mix;
use crate::rooms::RoomKind;
use crate::{EventBody, Membership, SimEvent, Simulation};

/// Synapse puts at most 100 events in one appservice transaction.
pub const EVENTS_PER_TRANSACTION: usize = 100;

const TEXTS: [&str; 8] = [
    "Bonjour, point à 14h ?",
    "Je vous transmets le compte rendu.",
    "Merci, bien reçu.",
    "La réunion est décalée à demain.",
    "Qui est d'astreinte ce week-end ?",
    "Le document est dans le dossier partagé.",
    "D'accord pour moi.",
    "Je regarde et je reviens vers vous.",
];

impl Simulation {
    /// The event ID of the event numbered `seq`.
    pub fn event_id(&self, seq: u64) -> String {
        let a = mix(self.spec.seed ^ mix(seq));
        let b = mix(a ^ seq);
        format!("${a:016x}{b:016x}")
    }

    /// The event as Synapse would send it.
    pub fn render(&self, event: &SimEvent) -> Value {
        let sender = self.user_id(event.sender);
        let room = &self.rooms.rooms[event.room as usize];
        let room_server = &self.spec.federation.servers[room.server as usize].name;
        let room_id = self.rooms.room_id(event.room, room_server);
        let related = self.event_id(mix(event.seq) | 1);
        // Only encrypted and call events name the device.
        let device = || self.population.accounts[event.sender as usize].device_id(event.sender, 0);
        let mut state_key: Option<String> = Some(String::new());
        let (kind, content) = match event.body {
            EventBody::Create { space } => {
                let mut content = json!({"room_version": "10", "creator": sender});
                if space {
                    content["type"] = json!("m.space");
                }
                ("m.room.create", content)
            }
            EventBody::Name => (
                "m.room.name",
                json!({"name": room.name.unwrap_or(match room.kind {
                    RoomKind::Space => "Espace de travail",
                    RoomKind::Forum => "Forum",
                    _ => "Équipe projet",
                })}),
            ),
            EventBody::Member {
                target,
                membership,
                is_direct,
                ..
            } => {
                state_key = Some(self.user_id(target));
                let account = &self.population.accounts[target as usize];
                let name = account.localpart.split('-').next().unwrap_or("agent");
                let mut content = json!({
                    "membership": match membership {
                        Membership::Invite => "invite",
                        Membership::Join => "join",
                    },
                    "displayname": name.replace('.', " "),
                });
                if is_direct {
                    content["is_direct"] = json!(true);
                }
                ("m.room.member", content)
            }
            EventBody::JoinRules { public } => (
                "m.room.join_rules",
                json!({"join_rule": if public { "public" } else { "invite" }}),
            ),
            EventBody::AccessRules => (
                "im.vector.room.access_rules",
                json!({"rule": room.kind.access_rule()}),
            ),
            EventBody::Encryption => (
                "m.room.encryption",
                json!({"algorithm": "m.megolm.v1.aes-sha2"}),
            ),
            EventBody::Message { msgtype, thread } => {
                state_key = None;
                let text = TEXTS[(mix(event.seq) % TEXTS.len() as u64) as usize];
                let mut content = json!({"msgtype": msgtype, "body": text});
                if msgtype != "m.text" {
                    content["url"] = json!(format!("mxc://{room_server}/{:024x}", mix(event.seq)));
                }
                if thread {
                    content["m.relates_to"] = json!({"rel_type": "m.thread", "event_id": related});
                }
                ("m.room.message", content)
            }
            EventBody::Encrypted { thread } => {
                state_key = None;
                let mut content = encrypted(event.seq, &device());
                if thread {
                    content["m.relates_to"] = json!({"rel_type": "m.thread", "event_id": related});
                }
                ("m.room.encrypted", content)
            }
            EventBody::Edit => {
                state_key = None;
                let relates = json!({"rel_type": "m.replace", "event_id": related});
                if room.kind.encrypted() {
                    let mut content = encrypted(event.seq, &device());
                    content["m.relates_to"] = relates;
                    ("m.room.encrypted", content)
                } else {
                    (
                        "m.room.message",
                        json!({"msgtype": "m.text", "body": "* corrigé",
                               "m.new_content": {"msgtype": "m.text", "body": "corrigé"},
                               "m.relates_to": relates}),
                    )
                }
            }
            EventBody::Reaction => {
                state_key = None;
                (
                    "m.reaction",
                    json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": related, "key": "👍"}}),
                )
            }
            EventBody::Redaction => {
                state_key = None;
                ("m.room.redaction", json!({"redacts": related}))
            }
            EventBody::CallInvite | EventBody::CallAnswer | EventBody::CallHangup => {
                state_key = None;
                let call_id = format!("{:016x}", mix(event.seq / 4));
                match event.body {
                    EventBody::CallInvite => (
                        "m.call.invite",
                        json!({"call_id": call_id, "version": "1", "lifetime": 60000,
                               "offer": {"type": "offer", "sdp": "v=0"}}),
                    ),
                    EventBody::CallAnswer => (
                        "m.call.answer",
                        json!({"call_id": call_id, "version": "1",
                               "answer": {"type": "answer", "sdp": "v=0"}}),
                    ),
                    _ => ("m.call.hangup", json!({"call_id": call_id, "version": "1"})),
                }
            }
            EventBody::CallMember { join } => {
                let device = device();
                state_key = Some(format!("_{sender}_{device}"));
                let content = if join {
                    json!({"application": "m.call", "call_id": "", "scope": "m.room",
                           "device_id": device,
                           "focus_active": {"type": "livekit", "focus_selection": "oldest_membership"},
                           "foci_preferred": [{"type": "livekit", "livekit_service_url": format!("https://livekit.{room_server}")}]})
                } else {
                    json!({})
                };
                ("org.matrix.msc3401.call.member", content)
            }
            EventBody::Beacon { live } => {
                state_key = Some(sender.clone());
                (
                    "org.matrix.msc3672.beacon_info",
                    json!({"description": "Ma position", "live": live, "timeout": 900000,
                           "org.matrix.msc3488.asset": {"type": "m.self"},
                           "org.matrix.msc3488.ts": event.ts_ms}),
                )
            }
        };
        let mut value = json!({
            "type": kind,
            "room_id": room_id,
            "sender": sender,
            "content": content,
            "origin_server_ts": event.ts_ms,
            "unsigned": {"age": 42},
            "event_id": self.event_id(event.seq),
        });
        if let Some(state_key) = state_key {
            value["state_key"] = json!(state_key);
        }
        if matches!(event.body, EventBody::Redaction) {
            value["redacts"] = json!(related);
        }
        if let EventBody::Member {
            replaces: Some(seq),
            ..
        } = event.body
        {
            // Where Synapse puts it: in `unsigned`, and at the top level for an appservice.
            let replaced = json!(self.event_id(seq));
            value["unsigned"]["replaces_state"] = replaced.clone();
            value["replaces_state"] = replaced;
        }
        value
    }

    /// The server (index) whose appservice reports the event: its sender's.
    pub fn origin_server(&self, event: &SimEvent) -> usize {
        self.population.accounts[event.sender as usize].server as usize
    }

    /// The body of one appservice transaction holding `events`.
    pub fn transaction_body(&self, events: &[SimEvent]) -> Vec<u8> {
        let events: Vec<Value> = events.iter().map(|e| self.render(e)).collect();
        serde_json::to_vec(&json!({"events": events, "ephemeral": []})).unwrap_or_default()
    }
}

fn encrypted(seq: u64, device: &str) -> Value {
    json!({
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": format!("AwgAEpAB{:032x}{:032x}", mix(seq), mix(seq ^ 1)),
        "device_id": device,
        "sender_key": format!("{:043x}", mix(seq >> 8) as u128 * 7),
        "session_id": format!("{:043x}", mix(seq >> 12) as u128 * 3),
    })
}

/// Groups a server's events into transactions in time order, as Synapse sends them.
pub fn per_server_batches(sim: &Simulation, events: &[SimEvent]) -> Vec<Vec<Vec<SimEvent>>> {
    sim.by_server(events.iter().copied(), |e| e.sender)
        .into_iter()
        .map(|events| {
            events
                .chunks(EVENTS_PER_TRANSACTION)
                .map(<[SimEvent]>::to_vec)
                .collect()
        })
        .collect()
}
