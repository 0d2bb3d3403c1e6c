//! `ClientFamily`: the app a visit was made with, as the hooks' user-agent rules name it
//! (docs/design.md §3). Not a closed vocabulary: an operator adds rules and families in the
//! hooks' configuration without a release. So the spelling is what a name from configuration
//! looks like (1 to 32 of `a-z`, `0-9`, `_`, starting with a letter), never user-agent text.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::vocabulary::UnknownValue;

/// A client family name such as `tchap_x_android`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientFamily(String);

/// The most characters of a family name.
pub const CLIENT_FAMILY_CHARS: usize = 32;

impl ClientFamily {
    /// The families of the shipped rules (docs/design.md §3).
    pub const TCHAP_X_ANDROID: &'static str = "tchap_x_android";
    pub const TCHAP_X_IOS: &'static str = "tchap_x_ios";
    pub const TCHAP_NEO: &'static str = "tchap_neo";
    pub const TCHAP_ANDROID: &'static str = "tchap_android";
    pub const TCHAP_IOS: &'static str = "tchap_ios";
    pub const TCHAP_DESKTOP: &'static str = "tchap_desktop";
    pub const ELEMENT_X: &'static str = "element_x";
    pub const ELEMENT: &'static str = "element";
    pub const WEB: &'static str = "web";
    pub const OTHER: &'static str = "other";

    /// Every family of the shipped rules, Tchap X first.
    pub const SHIPPED: [&'static str; 10] = [
        Self::TCHAP_X_ANDROID,
        Self::TCHAP_X_IOS,
        Self::TCHAP_ANDROID,
        Self::TCHAP_IOS,
        Self::TCHAP_NEO,
        Self::TCHAP_DESKTOP,
        Self::WEB,
        Self::ELEMENT_X,
        Self::ELEMENT,
        Self::OTHER,
    ];

    /// The prefix naming a Tchap X family: the figures of the move to Tchap X count every
    /// family spelled so, an operator's own included (docs/design.md §5).
    pub const TCHAP_X_PREFIX: &'static str = "tchap_x";
    /// The classic Tchap mobile apps the move is from.
    pub const CLASSIC_MOBILE: [&'static str; 3] =
        [Self::TCHAP_ANDROID, Self::TCHAP_IOS, Self::TCHAP_NEO];

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn other() -> Self {
        ClientFamily(Self::OTHER.to_owned())
    }

    fn is_name(text: &str) -> bool {
        let bytes = text.as_bytes();
        (1..=CLIENT_FAMILY_CHARS).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
    }
}

impl FromStr for ClientFamily {
    type Err = UnknownValue;

    fn from_str(text: &str) -> Result<Self, UnknownValue> {
        if Self::is_name(text) {
            Ok(ClientFamily(text.to_owned()))
        } else {
            Err(UnknownValue::new("ClientFamily", text))
        }
    }
}

impl fmt::Display for ClientFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ClientFamily {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ClientFamily {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for ClientFamily {
    fn schema_name() -> Cow<'static, str> {
        "ClientFamily".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[a-z][a-z0-9_]{0,31}$",
            "description": "The app of the visit, named by the hooks' user-agent rules (shipped: tchap_x_android, tchap_x_ios, tchap_neo, tchap_android, tchap_ios, tchap_desktop, element_x, element, web, other; an operator may add more)."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_words_and_nothing_else() {
        for good in ["tchap_x_android", "web", "a", "tchap_pro2"] {
            assert_eq!(good.parse::<ClientFamily>().unwrap().as_str(), good);
        }
        let too_long = "a".repeat(CLIENT_FAMILY_CHARS + 1);
        for bad in [
            "",
            "Tchap X",
            "tchap-x",
            "_x",
            "2fa",
            "Element X/1.5.0 (Xiaomi Mi 9T; Android 11)",
            too_long.as_str(),
        ] {
            assert!(bad.parse::<ClientFamily>().is_err(), "{bad:?}");
        }
        let err = serde_json::from_str::<ClientFamily>("\"Tchap X/25.04 (Pixel)\"").unwrap_err();
        assert!(!err.to_string().contains("Pixel"), "{err}");
    }
}
