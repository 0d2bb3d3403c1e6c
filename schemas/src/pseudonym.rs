//! Pseudonyms as they travel: fixed-width lowercase hex on the wire, integers or bytes in Arrow.
//!
//! The values are made by the hooks' keyed HMAC (see `mxpulse-hooks`); this module only
//! carries them. Nothing here can turn a pseudonym back into a Matrix ID.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A hex string that is not the exact width of the pseudonym it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {width} lowercase hex digits, got {found:?}")]
pub struct PseudonymFormatError {
    pub width: usize,
    pub found: String,
}

fn parse_hex<const N: usize>(text: &str) -> Result<[u8; N], PseudonymFormatError> {
    let err = || PseudonymFormatError {
        width: N * 2,
        found: text.chars().take(64).collect(),
    };
    // Uppercase is refused so that one pseudonym has exactly one spelling (keys compare as text).
    if text.len() != N * 2
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(err());
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|_| err())?;
    Ok(out)
}

/// Lowercase hex of `bytes` in `out` (twice its length), without going through `fmt`'s integer
/// formatting: the ingest formats an identity per record (BENCHMARKS.md, the ingest).
fn hex_of<'a>(out: &'a mut [u8], bytes: &[u8]) -> &'a str {
    match hex::encode_to_slice(bytes, out) {
        Ok(()) => std::str::from_utf8(out).unwrap_or_default(),
        Err(_) => "",
    }
}

macro_rules! pseudonym64 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);

        impl $name {
            /// The Arrow/Delta column value: the same 64 bits read as a signed integer, because
            /// Delta Lake (and Spark) have no unsigned 64-bit type.
            pub fn to_i64(self) -> i64 {
                self.0 as i64
            }

            pub fn from_i64(value: i64) -> Self {
                Self(value as u64)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(hex_of(&mut [0; 16], &self.0.to_be_bytes()))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl FromStr for $name {
            type Err = PseudonymFormatError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                parse_hex::<8>(text).map(|bytes| Self(u64::from_be_bytes(bytes)))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
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
                json_schema!({
                    "type": "string",
                    "pattern": "^[0-9a-f]{16}$",
                    "description": "64-bit keyed pseudonym, 16 lowercase hex digits",
                })
            }
        }
    };
}

pseudonym64!(
    /// A local user (`@localpart:server`), 64-bit keyed pseudonym.
    UserPseudonym
);
pseudonym64!(
    /// A room (`!id` or `!id:server`), 64-bit keyed pseudonym.
    RoomPseudonym
);
pseudonym64!(
    /// A device of one user (the pseudonym covers user and device ID together, since device
    /// IDs are only unique per user), 64-bit keyed pseudonym.
    DevicePseudonym
);

/// An event (`$id`), 128-bit keyed pseudonym: the identity of an event record, so it is
/// wide enough that the federation's billions of events never collide.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventPseudonym(pub u128);

impl EventPseudonym {
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(u128::from_be_bytes(bytes))
    }
}

impl fmt::Display for EventPseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(hex_of(&mut [0; 32], &self.0.to_be_bytes()))
    }
}

impl fmt::Debug for EventPseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventPseudonym({self})")
    }
}

impl FromStr for EventPseudonym {
    type Err = PseudonymFormatError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_hex::<16>(text).map(Self::from_bytes)
    }
}

impl Serialize for EventPseudonym {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventPseudonym {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for EventPseudonym {
    fn schema_name() -> Cow<'static, str> {
        "EventPseudonym".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[0-9a-f]{32}$",
            "description": "128-bit keyed pseudonym, 32 lowercase hex digits",
        })
    }
}

/// The public id of the pseudonymization key that made a record's pseudonyms: derived from the
/// key (it does not reveal it), so a key rotation shows in the data as a new `key_id`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 4]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = PseudonymFormatError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_hex::<4>(text).map(Self)
    }
}

impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for KeyId {
    fn schema_name() -> Cow<'static, str> {
        "KeyId".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[0-9a-f]{8}$",
            "description": "public id of the pseudonymization key, 8 lowercase hex digits",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_fixed_width_and_round_trips() {
        let user = UserPseudonym(0x2a);
        assert_eq!(user.to_string(), "000000000000002a");
        assert_eq!("000000000000002a".parse::<UserPseudonym>(), Ok(user));
        let event = EventPseudonym(u128::MAX - 1);
        assert_eq!(event.to_string().len(), 32);
        assert_eq!(event.to_string().parse::<EventPseudonym>(), Ok(event));
        assert_eq!(EventPseudonym::from_bytes(event.to_bytes()), event);
    }

    #[test]
    fn arrow_integer_form_keeps_every_bit() {
        for raw in [0u64, 1, u64::MAX, 1 << 63, 0x8000_0000_0000_0001] {
            let room = RoomPseudonym(raw);
            assert_eq!(RoomPseudonym::from_i64(room.to_i64()), room);
        }
    }

    #[test]
    fn refuses_other_widths_and_spellings() {
        for bad in [
            "2a",
            "000000000000002A",
            "000000000000002g",
            "0000000000000002a",
            "",
            "+00000000000002a",
        ] {
            let err = bad.parse::<UserPseudonym>().unwrap_err();
            assert_eq!(err.width, 16, "{bad}");
        }
        assert!("deadbeef".parse::<KeyId>().is_ok());
        assert!("deadbee".parse::<KeyId>().is_err());
    }
}
