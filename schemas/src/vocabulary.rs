//! The closed vocabularies of the records (event types, memberships, platforms, ...): each a
//! Rust enum whose wire spelling, Arrow spelling and JSON Schema enum come from one table.
//!
//! A value outside a vocabulary does not decode: the hooks map anything they do not know to an
//! explicit `other` where the design allows one, so an unknown spelling means a newer or broken
//! producer and the record becomes a dead letter instead of a silent miscount.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A spelling that is not part of a vocabulary. The spelling is kept only when it looks like
/// one (a short word of lowercase letters, digits, `.`, `_` and `-`): anything else may be
/// free text from outside (an address, a message), and this error reaches logs and
/// dead-letter headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value} is not a known {vocabulary}")]
pub struct UnknownValue {
    pub vocabulary: &'static str,
    /// `"m.room.name"` (quoted), or `a value of N characters`.
    pub value: String,
}

impl UnknownValue {
    pub fn new(vocabulary: &'static str, text: &str) -> Self {
        let word = text.len() <= 64
            && text.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
        let value = if word {
            format!("{text:?}")
        } else {
            format!("a value of {} characters", text.chars().count())
        };
        Self { vocabulary, value }
    }
}

macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling on the wire and in the lake.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(UnknownValue::new(stringify!($name), text)),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = Cow::<str>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", "enum": [$($wire),+] })
            }
        }
    };
}

vocabulary!(
    /// Matrix event types the figures need (the hooks' allow-list). Unstable prefixes
    /// (`org.matrix.msc3401.call.member`, `org.matrix.msc3672.beacon_info`, ...) are published
    /// under the stable spelling; everything else is `other`.
    EventType {
        RoomMessage = "m.room.message",
        RoomEncrypted = "m.room.encrypted",
        RoomCreate = "m.room.create",
        RoomMember = "m.room.member",
        RoomJoinRules = "m.room.join_rules",
        RoomEncryption = "m.room.encryption",
        RoomRedaction = "m.room.redaction",
        RoomTombstone = "m.room.tombstone",
        AccessRules = "im.vector.room.access_rules",
        Reaction = "m.reaction",
        Sticker = "m.sticker",
        PollStart = "m.poll.start",
        SpaceChild = "m.space.child",
        CallInvite = "m.call.invite",
        CallAnswer = "m.call.answer",
        CallHangup = "m.call.hangup",
        /// MatrixRTC membership (group calls, Element Call).
        CallMember = "m.call.member",
        BeaconInfo = "m.beacon_info",
        Beacon = "m.beacon",
        Other = "other",
    }
);

vocabulary!(
    /// `msgtype` of a cleartext `m.room.message`.
    MsgType {
        Text = "m.text",
        Emote = "m.emote",
        Notice = "m.notice",
        Image = "m.image",
        File = "m.file",
        Audio = "m.audio",
        Video = "m.video",
        Location = "m.location",
        Other = "other",
    }
);

vocabulary!(
    /// `rel_type` of `m.relates_to`, which stays cleartext in encrypted rooms.
    RelType {
        Thread = "m.thread",
        Annotation = "m.annotation",
        Replace = "m.replace",
        Reference = "m.reference",
        Other = "other",
    }
);

vocabulary!(
    /// `membership` of an `m.room.member` event.
    Membership {
        Join = "join",
        Leave = "leave",
        Invite = "invite",
        Ban = "ban",
        Knock = "knock",
    }
);

vocabulary!(
    /// `join_rule` of `m.room.join_rules`.
    JoinRule {
        Public = "public",
        Invite = "invite",
        Knock = "knock",
        Restricted = "restricted",
        KnockRestricted = "knock_restricted",
        Private = "private",
        Other = "other",
    }
);

vocabulary!(
    /// `rule` of Tchap's `im.vector.room.access_rules`.
    AccessRule {
        Restricted = "restricted",
        Unrestricted = "unrestricted",
        Direct = "direct",
    }
);

vocabulary!(
    /// `type` of `m.room.create`: spaces are rooms of type `m.space`.
    RoomType {
        Space = "m.space",
        Other = "other",
    }
);

vocabulary!(
    /// A MatrixRTC membership change: a `call.member` state with content joins, an empty one leaves.
    CallChange {
        Join = "join",
        Leave = "leave",
    }
);

vocabulary!(
    /// Which path of the hooks saw the event. Both may report one event; its identity is the same.
    Source {
        Appservice = "appservice",
        SynapseDb = "synapse_db",
    }
);

vocabulary!(
    /// Platform of a visit, read from the user agent (docs/design.md §3).
    Platform {
        Web = "web",
        Android = "android",
        Ios = "ios",
        Desktop = "desktop",
        Unknown = "unknown",
    }
);

vocabulary!(
    /// Client family of a visit, read from the user agent.
    Client {
        Tchap = "tchap",
        Element = "element",
        Other = "other",
    }
);

vocabulary!(
    /// What happened to an account.
    AccountChange {
        Created = "created",
        Deactivated = "deactivated",
        Reactivated = "reactivated",
    }
);

vocabulary!(
    /// Synapse's user type (`NULL` in its `users` table is `regular`).
    UserType {
        Regular = "regular",
        Guest = "guest",
        Bot = "bot",
        Support = "support",
        Appservice = "appservice",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T>(all: &[T])
    where
        T: Copy + fmt::Debug + PartialEq + FromStr<Err = UnknownValue> + fmt::Display + Serialize,
    {
        for &value in all {
            let text = value.to_string();
            assert_eq!(text.parse::<T>(), Ok(value));
            assert_eq!(
                serde_json::to_string(&value).unwrap(),
                format!("\"{text}\"")
            );
        }
    }

    #[test]
    fn every_vocabulary_round_trips() {
        check(EventType::ALL);
        check(MsgType::ALL);
        check(RelType::ALL);
        check(Membership::ALL);
        check(JoinRule::ALL);
        check(AccessRule::ALL);
        check(RoomType::ALL);
        check(CallChange::ALL);
        check(Source::ALL);
        check(Platform::ALL);
        check(Client::ALL);
        check(AccountChange::ALL);
        check(UserType::ALL);
    }

    #[test]
    fn unknown_spelling_is_an_error_that_names_it() {
        let err = "m.room.name".parse::<EventType>().unwrap_err();
        assert_eq!(err.to_string(), "\"m.room.name\" is not a known EventType");
        let err = serde_json::from_str::<Platform>("\"windows-phone\"").unwrap_err();
        assert!(err.to_string().contains("windows-phone"), "{err}");
        // Free text is never repeated: it may be an address or a message.
        let err = "anne.martin@interieur.gouv.fr budget"
            .parse::<EventType>()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "a value of 36 characters is not a known EventType"
        );
    }
}
