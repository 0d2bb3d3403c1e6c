//! Client-format Matrix events (what Synapse pushes to an application service, and what the
//! backfill rebuilds from `event_json`) to [`EventRecord`]s: the type allow-list, the
//! cleartext relation, the membership target and the few state facts the figures need.
//!
//! Only facts are read; content, names and identifiers stop here. An event whose fields have
//! an unexpected shape is skipped with a [`SkipReason`] (counted by the caller), never fatal.

use mxpulse_schemas::EventRecord;
use mxpulse_schemas::vocabulary::{
    AccessRule, CallChange, EventType, JoinRule, Membership, MsgType, RelType, RoomType, Source,
};
use serde_json::{Map, Value};

use crate::Anonymizer;

/// What became of one event.
#[derive(Clone, Debug, PartialEq)]
pub enum Mapped {
    Record(Box<EventRecord>),
    /// Sent by a user of another homeserver: that server's hooks report it.
    Remote,
}

/// Why an event was skipped. `label` is the metrics label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("the event is not a JSON object")]
    NotAnObject,
    #[error("the event has no `{0}`")]
    MissingField(&'static str),
    #[error("`{0}` has an unexpected JSON type")]
    WrongType(&'static str),
    /// The value itself is never kept: a free-text field (an access rule, a membership) may
    /// hold an address or a message, and this reason reaches the log.
    #[error("`{field}` has a value outside its vocabulary ({chars} characters)")]
    UnknownValue { field: &'static str, chars: usize },
    /// Not readable as JSON within serde_json's nesting limit (128 levels; Synapse accepts
    /// content nested deeper), or not JSON.
    #[error("the event cannot be read: {0}")]
    Unreadable(String),
}

impl SkipReason {
    pub fn label(&self) -> &'static str {
        match self {
            SkipReason::NotAnObject => "not_an_object",
            SkipReason::MissingField(_) => "missing_field",
            SkipReason::WrongType(_) => "wrong_type",
            SkipReason::UnknownValue { .. } => "unknown_value",
            SkipReason::Unreadable(_) => "unreadable",
        }
    }
}

/// The allow-list: stable types as they are, unstable prefixes of the ones the figures need
/// under their stable spelling, everything else `other`.
pub fn event_type(matrix_type: &str) -> EventType {
    match matrix_type {
        "org.matrix.msc3401.call.member" => EventType::CallMember,
        "org.matrix.msc3672.beacon_info" => EventType::BeaconInfo,
        "org.matrix.msc3672.beacon" => EventType::Beacon,
        "org.matrix.msc3381.poll.start" => EventType::PollStart,
        other => other.parse().unwrap_or(EventType::Other),
    }
}

fn string<'a>(object: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, SkipReason> {
    match object.get(field) {
        None | Some(Value::Null) => Err(SkipReason::MissingField(field)),
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(SkipReason::WrongType(field)),
    }
}

fn optional_string<'a>(
    object: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, SkipReason> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(SkipReason::WrongType(field)),
    }
}

fn optional_bool(
    object: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<bool>, SkipReason> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(_) => Err(SkipReason::WrongType(field)),
    }
}

/// A closed vocabulary: a value outside it is a skip, not a guess.
fn closed<T: std::str::FromStr>(field: &'static str, text: &str) -> Result<T, SkipReason> {
    text.parse().map_err(|_| SkipReason::UnknownValue {
        field,
        chars: text.chars().count(),
    })
}

impl Anonymizer {
    /// Maps one client-format event. `source` says which path saw it.
    pub fn event(&self, event: &Value, source: Source) -> Result<Mapped, SkipReason> {
        let object = event.as_object().ok_or(SkipReason::NotAnObject)?;
        let sender = string(object, "sender")?;
        let event_id = string(object, "event_id")?;
        let room_id = string(object, "room_id")?;
        let matrix_type = string(object, "type")?;
        let ts = match object.get("origin_server_ts") {
            None | Some(Value::Null) => return Err(SkipReason::MissingField("origin_server_ts")),
            Some(value) => value
                .as_i64()
                .ok_or(SkipReason::WrongType("origin_server_ts"))?,
        };
        if !self.is_local(sender) {
            return Ok(Mapped::Remote);
        }
        let empty = Map::new();
        let content = match object.get("content") {
            // A redacted event keeps an empty content (and sometimes none at all).
            None | Some(Value::Null) => &empty,
            Some(Value::Object(content)) => content,
            Some(_) => return Err(SkipReason::WrongType("content")),
        };

        let p = self.pseudonymizer();
        let event_type = event_type(matrix_type);
        let mut record = EventRecord::new(
            p.key_id(),
            p.event(event_id),
            crate::anonymizer::coarsened(ts, crate::anonymizer::EVENT_TIME_MS),
            self.server(),
            p.user(sender),
            p.room(room_id),
            event_type,
            source,
        );
        record.domain = self.domain_of(sender);
        record.rel_type = match content.get("m.relates_to") {
            None | Some(Value::Null) => None,
            Some(Value::Object(relation)) => optional_string(relation, "rel_type")
                .map_err(|_| SkipReason::WrongType("m.relates_to.rel_type"))?
                .map(|rel| rel.parse().unwrap_or(RelType::Other)),
            Some(_) => return Err(SkipReason::WrongType("m.relates_to")),
        };

        match event_type {
            EventType::RoomMessage => {
                record.msgtype = optional_string(content, "msgtype")?
                    .map(|msgtype| msgtype.parse().unwrap_or(MsgType::Other));
            }
            EventType::RoomMember => {
                let target = string(object, "state_key")?;
                record.target = Some(p.user(target));
                // A redacted membership keeps its `membership`; one without is malformed.
                record.membership = Some(closed::<Membership>(
                    "membership",
                    string(content, "membership")?,
                )?);
                record.is_direct = optional_bool(content, "is_direct")?;
                record.replaces = replaced_state(object)?.map(|id| p.event(id));
            }
            EventType::RoomJoinRules => {
                record.join_rule = optional_string(content, "join_rule")?
                    .map(|rule| rule.parse().unwrap_or(JoinRule::Other));
            }
            EventType::AccessRules => {
                record.access_rule = optional_string(content, "rule")?
                    .map(|rule| closed::<AccessRule>("rule", rule))
                    .transpose()?;
            }
            EventType::RoomEncryption => record.encrypted = Some(true),
            EventType::RoomCreate => {
                record.room_type = optional_string(content, "type")?.map(|room_type| {
                    if room_type == "m.space" {
                        RoomType::Space
                    } else {
                        RoomType::Other
                    }
                });
            }
            EventType::CallMember => record.call = Some(call_change(content)),
            EventType::BeaconInfo => record.live = optional_bool(content, "live")?,
            _ => {}
        }
        Ok(Mapped::Record(Box::new(record)))
    }
}

/// The event ID a state event replaces: Synapse puts `replaces_state` in `unsigned` (in the
/// events it pushes to an application service and in `event_json`), and in the
/// application service's copy also at the top level.
fn replaced_state(object: &Map<String, Value>) -> Result<Option<&str>, SkipReason> {
    let unsigned = match object.get("unsigned") {
        Some(Value::Object(unsigned)) => optional_string(unsigned, "replaces_state")
            .map_err(|_| SkipReason::WrongType("unsigned.replaces_state"))?,
        _ => None,
    };
    match unsigned {
        Some(id) => Ok(Some(id)),
        None => optional_string(object, "replaces_state"),
    }
}

/// MatrixRTC: a member event with content joins; an empty one (or the legacy form with an
/// empty `memberships` list) leaves.
fn call_change(content: &Map<String, Value>) -> CallChange {
    let legacy_empty = content
        .get("memberships")
        .and_then(Value::as_array)
        .is_some_and(|memberships| memberships.is_empty());
    if content.is_empty() || (content.len() == 1 && legacy_empty) {
        CallChange::Leave
    } else {
        CallChange::Join
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use zeroize::Zeroizing;

    use super::*;
    use crate::{DomainReader, PseudonymKey, Pseudonymizer};

    fn anonymizer() -> Anonymizer {
        let key = PseudonymKey::from_bytes(Zeroizing::new(vec![7u8; 32]), "test").unwrap();
        Anonymizer::new(
            "interieur.localhost",
            Arc::new(Pseudonymizer::new(&key)),
            Arc::new(DomainReader::new(crate::TCHAP_DOMAINS)),
        )
    }

    fn base(matrix_type: &str, content: Value) -> Value {
        json!({
            "event_id": "$e1", "room_id": "!r", "sender": "@jean.dupont-interieur.gouv.fr:interieur.localhost",
            "type": matrix_type, "origin_server_ts": 1_700_000_000_000_i64, "content": content,
        })
    }

    fn record(event: Value) -> EventRecord {
        match anonymizer().event(&event, Source::Appservice).unwrap() {
            Mapped::Record(record) => *record,
            Mapped::Remote => panic!("unexpectedly remote"),
        }
    }

    #[test]
    fn remote_senders_are_not_reported() {
        let mut event = base("m.room.message", json!({"msgtype": "m.text"}));
        event["sender"] = json!("@bob:agent.tchap.gouv.fr");
        assert_eq!(
            anonymizer().event(&event, Source::Appservice),
            Ok(Mapped::Remote)
        );
    }

    #[test]
    fn facts_are_read_and_identifiers_pseudonymized() {
        let r = record(base(
            "m.room.message",
            json!({"msgtype": "m.text", "body": "secret", "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}}),
        ));
        assert_eq!(r.msgtype, Some(MsgType::Text));
        assert_eq!(r.rel_type, Some(RelType::Thread));
        assert_eq!(r.domain.as_deref(), Some("interieur.gouv.fr"));
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains("secret") && !text.contains("jean") && !text.contains("$e1"));
    }

    #[test]
    fn unstable_types_and_state_facts() {
        let r = record(base("org.matrix.msc3401.call.member", json!({})));
        assert_eq!(
            (r.event_type, r.call),
            (EventType::CallMember, Some(CallChange::Leave))
        );
        let r = record(base(
            "org.matrix.msc3401.call.member",
            json!({"memberships": []}),
        ));
        assert_eq!(r.call, Some(CallChange::Leave));
        let r = record(base("m.call.member", json!({"application": "m.call"})));
        assert_eq!(r.call, Some(CallChange::Join));
        let r = record(base("m.room.create", json!({"type": "m.space"})));
        assert_eq!(r.room_type, Some(RoomType::Space));
        let r = record(base("m.room.name", json!({"name": "Secret plans"})));
        assert_eq!(r.event_type, EventType::Other);
        let r = record(base(
            "m.room.join_rules",
            json!({"join_rule": "something_new"}),
        ));
        assert_eq!(r.join_rule, Some(JoinRule::Other));
    }

    #[test]
    fn a_membership_names_the_membership_it_replaces_by_pseudonym() {
        let mut event = base("m.room.member", json!({"membership": "join"}));
        event["state_key"] = json!("@carol:interieur.localhost");
        assert_eq!(record(event.clone()).replaces, None, "a first membership");
        event["unsigned"] = json!({"age": 3, "replaces_state": "$invite"});
        let p = anonymizer();
        let expected = Some(p.pseudonymizer().event("$invite"));
        assert_eq!(record(event.clone()).replaces, expected);
        // The top-level copy alone (older Synapse) is read too.
        event["unsigned"] = json!({"age": 3});
        event["replaces_state"] = json!("$invite");
        assert_eq!(record(event.clone()).replaces, expected);
        let text = serde_json::to_string(&record(event.clone())).unwrap();
        assert!(!text.contains("$invite"), "{text}");
        event["replaces_state"] = json!(7);
        assert_eq!(
            p.event(&event, Source::Appservice),
            Err(SkipReason::WrongType("replaces_state"))
        );
        // Other state events do not carry it: the order is only needed for memberships.
        let mut rules = base("m.room.join_rules", json!({"join_rule": "public"}));
        rules["unsigned"] = json!({"replaces_state": "$old"});
        assert_eq!(record(rules).replaces, None);
    }

    #[test]
    fn unexpected_content_is_a_reason_not_a_crash() {
        let a = anonymizer();
        let cases = [
            (json!("not an object"), SkipReason::NotAnObject),
            (
                json!({"type": "m.room.message"}),
                SkipReason::MissingField("sender"),
            ),
            (
                base("m.room.member", json!({"membership": "join"})),
                SkipReason::MissingField("state_key"),
            ),
            (
                base("m.room.message", json!([1, 2])),
                SkipReason::WrongType("content"),
            ),
            (
                {
                    let mut e = base("m.room.member", json!({"membership": "dance"}));
                    e["state_key"] = json!("@x:interieur.localhost");
                    e
                },
                SkipReason::UnknownValue {
                    field: "membership",
                    chars: 5,
                },
            ),
            (
                {
                    let mut e = base("m.room.message", json!({}));
                    e["origin_server_ts"] = json!("yesterday");
                    e
                },
                SkipReason::WrongType("origin_server_ts"),
            ),
        ];
        for (event, reason) in cases {
            assert_eq!(a.event(&event, Source::Appservice), Err(reason), "{event}");
        }
    }
}
