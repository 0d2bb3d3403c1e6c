//! A user agent string reduced to the facts a visit keeps: platform, client and client
//! family (docs/design.md §3). The string itself never leaves the hooks.
//!
//! The families come from a table of rules read top to bottom, the first match winning: the
//! operator's own rules (`[[hooks.client_rules]]`, so that a new app needs no release), then
//! the shipped ones, which are the `LIKE` patterns of Tchap's own statistics. A pattern is SQL
//! `LIKE`: `%` is any run of characters, `_` one character, everything else itself, case
//! sensitive, over the whole string.

use std::sync::Arc;

use mxpulse_schemas::ClientFamily;
use mxpulse_schemas::vocabulary::{Client, Platform};
use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

/// One rule as written in the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRule {
    /// A SQL `LIKE` pattern over the whole user agent (`Tchap X%Android%`).
    pub like: String,
    /// The family a matching visit is counted in: a short name (`tchap_x_android`). A name
    /// starting with `tchap_x` counts as Tchap X in the figures of the move to it.
    pub family: String,
    /// The platform of a matching visit: `web`, `android`, `ios`, `desktop` or `unknown`.
    pub platform: String,
}

/// Why an operator's rule was refused (at start-up, naming the rule).
#[derive(Debug, thiserror::Error)]
pub enum ClientRuleError {
    #[error(
        "client rule {index}: family {family:?} is not a name of 1 to 32 of a-z, 0-9 and _, starting with a letter"
    )]
    Family { index: usize, family: String },
    #[error(
        "client rule {index}: platform {platform:?} is not one of web, android, ios, desktop, unknown"
    )]
    Platform { index: usize, platform: String },
    #[error(
        "client rule {index}: the pattern is empty or longer than {MAX_PATTERN_CHARS} characters"
    )]
    Pattern { index: usize },
}

/// The longest pattern an operator may write.
pub const MAX_PATTERN_CHARS: usize = 200;

/// What a visit keeps of its user agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOf {
    pub platform: Platform,
    pub client: Client,
    pub family: ClientFamily,
}

/// What a rule gives a matching visit.
#[derive(Debug)]
struct Outcome {
    family: ClientFamily,
    platform: Platform,
}

/// The rules read at most this much of a user agent (real ones are a few hundred bytes; a
/// client may send kilobytes): a visit's classification costs the same whatever it sent.
pub const MAX_USER_AGENT_BYTES: usize = 1024;

/// The shipped rules, in order (docs/design.md §3 lists them).
const SHIPPED: &[(&str, &str, Platform)] = &[
    // Desktop apps are Electron and also say `Mozilla`: before the web.
    (
        "tchap-windows%",
        ClientFamily::TCHAP_DESKTOP,
        Platform::Desktop,
    ),
    (
        "tchap-macos%",
        ClientFamily::TCHAP_DESKTOP,
        Platform::Desktop,
    ),
    (
        "tchap-linux%",
        ClientFamily::TCHAP_DESKTOP,
        Platform::Desktop,
    ),
    (
        "%Tchap/%Electron%",
        ClientFamily::TCHAP_DESKTOP,
        Platform::Desktop,
    ),
    (
        "%Element/%Electron%",
        ClientFamily::ELEMENT,
        Platform::Desktop,
    ),
    ("%Electron%", ClientFamily::OTHER, Platform::Desktop),
    ("Mozilla%", ClientFamily::WEB, Platform::Web),
    // Tchap X (on Element X): its own name, or a version of two digits then a dot.
    (
        "Tchap X%Android%",
        ClientFamily::TCHAP_X_ANDROID,
        Platform::Android,
    ),
    (
        "Tchap/__.%Android%",
        ClientFamily::TCHAP_X_ANDROID,
        Platform::Android,
    ),
    (
        "Tchap beta%Android%",
        ClientFamily::TCHAP_X_ANDROID,
        Platform::Android,
    ),
    ("Tchap X%iOS%", ClientFamily::TCHAP_X_IOS, Platform::Ios),
    ("Tchap/__.%iOS%", ClientFamily::TCHAP_X_IOS, Platform::Ios),
    // The classic apps.
    ("Tchap%NEO%", ClientFamily::TCHAP_NEO, Platform::Android),
    (
        "Tchap%Android%",
        ClientFamily::TCHAP_ANDROID,
        Platform::Android,
    ),
    ("Tchap%iOS%", ClientFamily::TCHAP_IOS, Platform::Ios),
    ("RiotNSE/2%iOS%", ClientFamily::TCHAP_IOS, Platform::Ios),
    (
        "RiotSharedExtension/2%iOS%",
        ClientFamily::TCHAP_IOS,
        Platform::Ios,
    ),
    // Element, whose apps federations other than Tchap use.
    (
        "Element X%Android%",
        ClientFamily::ELEMENT_X,
        Platform::Android,
    ),
    ("Element X%iOS%", ClientFamily::ELEMENT_X, Platform::Ios),
    ("Element%Android%", ClientFamily::ELEMENT, Platform::Android),
    ("Riot%Android%", ClientFamily::ELEMENT, Platform::Android),
    ("Element%iOS%", ClientFamily::ELEMENT, Platform::Ios),
    ("Riot%iOS%", ClientFamily::ELEMENT, Platform::Ios),
];

/// `LIKE` as an anchored regular expression.
fn like_to_expression(like: &str) -> String {
    let mut expression = String::from("(?s)^");
    let mut literal = [0u8; 4];
    for c in like.chars() {
        match c {
            '%' => expression.push_str(".*"),
            '_' => expression.push('.'),
            other => expression.push_str(&regex::escape(other.encode_utf8(&mut literal))),
        }
    }
    expression.push('$');
    expression
}

/// The rule table a homeserver's visits are classified with: every pattern in one
/// `RegexSet`, so a user agent is read once whatever the number of rules; the first rule
/// that matches (the lowest index) gives the outcome.
#[derive(Debug, Clone)]
pub struct ClientRules {
    patterns: Arc<RegexSet>,
    outcomes: Arc<[Outcome]>,
}

impl Default for ClientRules {
    fn default() -> Self {
        ClientRules::shipped()
    }
}

impl ClientRules {
    /// Only the shipped rules (literals, tested below: with no operator rule nothing can fail;
    /// an empty table, classifying every visit `other`, stands for the impossible case).
    pub fn shipped() -> Self {
        Self::with_operator_rules(&[]).unwrap_or_else(|_| ClientRules {
            patterns: Arc::new(RegexSet::empty()),
            outcomes: Arc::from(Vec::new()),
        })
    }

    /// The operator's rules, then the shipped ones.
    pub fn with_operator_rules(operator: &[ClientRule]) -> Result<Self, ClientRuleError> {
        let mut expressions = Vec::with_capacity(operator.len() + SHIPPED.len());
        let mut outcomes = Vec::with_capacity(operator.len() + SHIPPED.len());
        for (index, rule) in operator.iter().enumerate() {
            let family = rule.family.parse().map_err(|_| ClientRuleError::Family {
                index,
                family: rule.family.clone(),
            })?;
            let platform = rule
                .platform
                .parse()
                .map_err(|_| ClientRuleError::Platform {
                    index,
                    platform: rule.platform.clone(),
                })?;
            if rule.like.is_empty() || rule.like.chars().count() > MAX_PATTERN_CHARS {
                return Err(ClientRuleError::Pattern { index });
            }
            let expression = like_to_expression(&rule.like);
            Regex::new(&expression).map_err(|_| ClientRuleError::Pattern { index })?;
            expressions.push(expression);
            outcomes.push(Outcome { family, platform });
        }
        for (like, family, platform) in SHIPPED {
            // The shipped families are literals tested below; one that failed would be skipped.
            if let Ok(family) = family.parse() {
                expressions.push(like_to_expression(like));
                outcomes.push(Outcome {
                    family,
                    platform: *platform,
                });
            }
        }
        let patterns = RegexSet::new(&expressions).map_err(|_| ClientRuleError::Pattern {
            index: operator.len().saturating_sub(1),
        })?;
        Ok(ClientRules {
            patterns: Arc::new(patterns),
            outcomes: Arc::from(outcomes),
        })
    }

    /// What a visit keeps of `user_agent`; `None` (Synapse stores NULL when a client sent no
    /// header) is unknown.
    pub fn classify(&self, user_agent: Option<&str>) -> ClientOf {
        let Some(ua) = user_agent.map(str::trim) else {
            return ClientOf {
                platform: Platform::Unknown,
                client: Client::Other,
                family: ClientFamily::other(),
            };
        };
        let mut end = ua.len().min(MAX_USER_AGENT_BYTES);
        while !ua.is_char_boundary(end) {
            end -= 1;
        }
        let (platform, family) = self
            .patterns
            .matches(&ua[..end])
            .iter()
            .next()
            .and_then(|first| self.outcomes.get(first))
            .map_or((Platform::Unknown, ClientFamily::other()), |rule| {
                (rule.platform, rule.family.clone())
            });
        // The version 1 field, kept as it was: who made the app, by name.
        let client = if ua.contains("Tchap") {
            Client::Tchap
        } else if ua.contains("Element") || ua.contains("Riot") {
            Client::Element
        } else {
            Client::Other
        };
        ClientOf {
            platform,
            client,
            family,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(rules: &ClientRules, ua: Option<&str>, platform: Platform, family: &str) {
        let found = rules.classify(ua);
        assert_eq!(
            (found.platform, found.family.as_str()),
            (platform, family),
            "{ua:?}"
        );
    }

    #[test]
    fn real_user_agents() {
        use Platform::*;
        let rules = ClientRules::shipped();
        let cases: &[(&str, Platform, &str)] = &[
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                Web,
                "web",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                Web,
                "web",
            ),
            (
                "Tchap/2.4.5 (iPad; iOS 16.4.1; Scale/2.00)",
                Ios,
                "tchap_ios",
            ),
            (
                "Tchap/2.10.1 (iPhone; iOS 17.5.1; Scale/3.00)",
                Ios,
                "tchap_ios",
            ),
            (
                "Tchap/2.12.3 (Samsung SM-G991B; Android 14; UP1A.231005.007; Flavour GooglePlay; MatrixAndroidSdk2 1.5.30)",
                Android,
                "tchap_android",
            ),
            (
                "Tchap/2.11.0 (Samsung SM-A525F; Android 13; TP1A.220624.014; Flavour NEO; MatrixAndroidSdk2 1.5.30)",
                Android,
                "tchap_neo",
            ),
            (
                "RiotNSE/2 CFNetwork/1410.0.3 Darwin/22.6.0 (iPhone; iOS 16.6; Scale/3.00)",
                Ios,
                "tchap_ios",
            ),
            (
                "RiotSharedExtension/2.10.1 (iPhone; iOS 17.1; Scale/3.00)",
                Ios,
                "tchap_ios",
            ),
            // Tchap X sends Element X's format under its own name, or a two-digit version.
            (
                "Tchap X/25.04.2 (Samsung SM-S911B; Android 14; UP1A.231005.007; Sdk 25.04.1)",
                Android,
                "tchap_x_android",
            ),
            (
                "Tchap/25.06.0 (Google Pixel 8; Android 15; AP4A.250105.002; Sdk 25.06.0)",
                Android,
                "tchap_x_android",
            ),
            (
                "Tchap beta/25.07.1 (Xiaomi Mi 9T; Android 11; RKQ1.200826.002; Sdk 25.07.1)",
                Android,
                "tchap_x_android",
            ),
            (
                "Tchap X/25.04.2 (iPhone 13; iOS 17.5; Scale/3.00)",
                Ios,
                "tchap_x_ios",
            ),
            (
                "Tchap/25.06.0 (iPhone 15; iOS 18.1; Scale/3.00)",
                Ios,
                "tchap_x_ios",
            ),
            (
                "Element X/1.5.0 (Xiaomi Mi 9T; Android 11; RKQ1.200826.002; Sdk 0.1.0)",
                Android,
                "element_x",
            ),
            (
                "Element X/1.1.5 (iPhone 11; iOS 16.5; Scale/2.00)",
                Ios,
                "element_x",
            ),
            (
                "Riot.im/0.9.12 (Linux; U; Android 9; Redmi Note 7 Build/PKQ1.180904.001; Flavour GPlay; MatrixAndroidSDK 0.9.32)",
                Android,
                "element",
            ),
            (
                "Element/1.6.10 (Google Pixel 7; Android 14; AP2A.240805.005; Flavour GooglePlay; MatrixAndroidSdk2 1.6.10)",
                Android,
                "element",
            ),
            (
                "RiotSharedExtension/1.11.4 (iPhone; iOS 17.1; Scale/3.00)",
                Ios,
                "element",
            ),
            (
                "Element/1.11.19 (iPhone; iOS 17.4; Scale/3.00)",
                Ios,
                "element",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Element/1.11.50 Chrome/120.0.6099.56 Electron/28.0.0 Safari/537.36",
                Desktop,
                "element",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Tchap/4.8.0 Chrome/126.0 Electron/31.0.1 Safari/537.36",
                Desktop,
                "tchap_desktop",
            ),
            ("tchap-windows/4.12.1", Desktop, "tchap_desktop"),
            ("tchap-macos/4.12.1 (arm64)", Desktop, "tchap_desktop"),
            ("tchap-linux/4.12.1", Desktop, "tchap_desktop"),
        ];
        for (ua, platform, family) in cases {
            check(&rules, Some(ua), *platform, family);
        }
        // The version 1 client stays what it was.
        let tchap_x = rules.classify(Some("Tchap X/25.04.2 (iPhone 13; iOS 17.5)"));
        assert_eq!(tchap_x.client, Client::Tchap);
        let element = rules.classify(Some("Element X/1.1.5 (iPhone 11; iOS 16.5)"));
        assert_eq!(element.client, Client::Element);
    }

    #[test]
    fn garbage_and_absence_are_other() {
        use Platform::*;
        let rules = ClientRules::shipped();
        for ua in [
            None,
            Some(""),
            Some("curl/8.5.0"),
            Some("okhttp/4.12.0"),
            Some("Synapse/1.163.2"),
            Some("\u{0}\u{fffd}💥"),
            // iOS mentioned before the client name matches no rule.
            Some("iOS Tchap"),
            Some("Tchap/2.0 (unknown OS)"),
            // A wildcard of the pattern is no wildcard in the string.
            Some("Tchap X"),
        ] {
            check(&rules, ua, Unknown, "other");
        }
        // `_` is one character: a one-digit version is the classic app.
        check(
            &rules,
            Some("Tchap/2.1 (Android 14)"),
            Android,
            "tchap_android",
        );
        // Case matters, as in LIKE.
        check(&rules, Some("TCHAP X/25.04 (Android 14)"), Unknown, "other");
        // Only the first kilobyte is read: what a client adds after it decides nothing.
        let padded = format!(
            "Tchap X/25.04 ({}; Android 14)",
            "é".repeat(MAX_USER_AGENT_BYTES)
        );
        check(&rules, Some(&padded), Unknown, "other");
        // A newline does not stop `%`.
        check(
            &rules,
            Some("Tchap X/25.04\n(Android 14)"),
            Android,
            "tchap_x_android",
        );
    }

    #[test]
    fn operator_rules_come_first_and_are_checked() {
        let rule = |like: &str, family: &str, platform: &str| ClientRule {
            like: like.into(),
            family: family.into(),
            platform: platform.into(),
        };
        let rules = ClientRules::with_operator_rules(&[
            rule("Tchap Pro/%Android%", "tchap_x_android_pro", "android"),
            // Overrides a shipped rule: this federation's web app is its own family.
            rule("Mozilla%Tchap-web%", "tchap_web", "web"),
            // Regular-expression characters are themselves.
            rule("a.b(c)*[d]", "odd", "unknown"),
        ])
        .unwrap();
        check(
            &rules,
            Some("Tchap Pro/1.0 (Fairphone 5; Android 14)"),
            Platform::Android,
            "tchap_x_android_pro",
        );
        check(
            &rules,
            Some("Mozilla/5.0 (X11) Tchap-web/4.12"),
            Platform::Web,
            "tchap_web",
        );
        check(&rules, Some("Mozilla/5.0 (X11)"), Platform::Web, "web");
        check(&rules, Some("a.b(c)*[d]"), Platform::Unknown, "odd");
        check(&rules, Some("aXb(c)*[d]"), Platform::Unknown, "other");

        let refused = [
            rule("Tchap%", "Tchap X", "android"),
            rule("Tchap%", "tchap_x", "windows"),
            rule("", "tchap_x", "android"),
            rule(&"%".repeat(MAX_PATTERN_CHARS + 1), "tchap_x", "android"),
        ];
        for bad in refused {
            let err = ClientRules::with_operator_rules(std::slice::from_ref(&bad)).unwrap_err();
            assert!(err.to_string().starts_with("client rule 0:"), "{err}");
        }
    }
}
