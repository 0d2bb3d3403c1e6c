//! A user agent string reduced to the two facts a visit keeps: platform and client family
//! (docs/design.md §3). The string itself never leaves the hooks.
//!
//! The rules are the `LIKE` patterns Tchap's own statistics used, as a table read top to
//! bottom; the first match wins. Electron comes first because desktop apps also say `Mozilla`.

use mxpulse_schemas::vocabulary::{Client, Platform};

/// How one rule matches: a prefix, then words that must follow in order (`Tchap%Android%`).
struct Rule {
    prefix: &'static str,
    then: &'static [&'static str],
    platform: Platform,
}

const RULES: &[Rule] = &[
    Rule {
        prefix: "",
        then: &["Electron"],
        platform: Platform::Desktop,
    },
    Rule {
        prefix: "Mozilla",
        then: &[],
        platform: Platform::Web,
    },
    Rule {
        prefix: "Tchap",
        then: &["Android"],
        platform: Platform::Android,
    },
    Rule {
        prefix: "Riot",
        then: &["Android"],
        platform: Platform::Android,
    },
    Rule {
        prefix: "Element",
        then: &["Android"],
        platform: Platform::Android,
    },
    Rule {
        prefix: "Tchap",
        then: &["iOS"],
        platform: Platform::Ios,
    },
    Rule {
        prefix: "RiotNSE/",
        then: &["iOS"],
        platform: Platform::Ios,
    },
    Rule {
        prefix: "RiotSharedExtension/",
        then: &["iOS"],
        platform: Platform::Ios,
    },
    Rule {
        prefix: "Riot/",
        then: &["iOS"],
        platform: Platform::Ios,
    },
    Rule {
        prefix: "Element",
        then: &["iOS"],
        platform: Platform::Ios,
    },
];

impl Rule {
    fn matches(&self, user_agent: &str) -> bool {
        let Some(mut rest) = user_agent.strip_prefix(self.prefix) else {
            return false;
        };
        for word in self.then {
            match rest.find(word) {
                Some(at) => rest = &rest[at + word.len()..],
                None => return false,
            }
        }
        true
    }
}

/// Platform and client of a user agent; `None` (Synapse stores NULL when a client sent no
/// header) is unknown.
pub fn classify(user_agent: Option<&str>) -> (Platform, Client) {
    let Some(ua) = user_agent.map(str::trim) else {
        return (Platform::Unknown, Client::Other);
    };
    let platform = RULES
        .iter()
        .find(|rule| rule.matches(ua))
        .map_or(Platform::Unknown, |rule| rule.platform);
    let client = if ua.contains("Tchap") {
        Client::Tchap
    } else if ua.contains("Element") || ua.contains("Riot") {
        Client::Element
    } else {
        Client::Other
    };
    (platform, client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ua: Option<&str>, platform: Platform, client: Client) {
        assert_eq!(classify(ua), (platform, client), "{ua:?}");
    }

    #[test]
    fn real_user_agents() {
        use Client::*;
        use Platform::*;
        check(
            Some(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            ),
            Web,
            Other,
        );
        check(
            Some("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
            Web,
            Other,
        );
        check(
            Some("Tchap/2.4.5 (iPad; iOS 16.4.1; Scale/2.00)"),
            Ios,
            Tchap,
        );
        check(
            Some("Tchap/2.10.1 (iPhone; iOS 17.5.1; Scale/3.00)"),
            Ios,
            Tchap,
        );
        check(
            Some(
                "Tchap/2.12.3 (Samsung SM-G991B; Android 14; UP1A.231005.007; Flavour GooglePlay; MatrixAndroidSdk2 1.5.30)",
            ),
            Android,
            Tchap,
        );
        check(
            Some(
                "Riot.im/0.9.12 (Linux; U; Android 9; Redmi Note 7 Build/PKQ1.180904.001; Flavour GPlay; MatrixAndroidSDK 0.9.32)",
            ),
            Android,
            Element,
        );
        check(
            Some(
                "Element/1.6.10 (Google Pixel 7; Android 14; AP2A.240805.005; Flavour GooglePlay; MatrixAndroidSdk2 1.6.10)",
            ),
            Android,
            Element,
        );
        check(
            Some("RiotNSE/2 CFNetwork/1410.0.3 Darwin/22.6.0 (iPhone; iOS 16.6; Scale/3.00)"),
            Ios,
            Element,
        );
        check(
            Some("RiotSharedExtension/1.11.4 (iPhone; iOS 17.1; Scale/3.00)"),
            Ios,
            Element,
        );
        check(
            Some("Element/1.11.19 (iPhone; iOS 17.4; Scale/3.00)"),
            Ios,
            Element,
        );
        check(
            Some(
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Element/1.11.50 Chrome/120.0.6099.56 Electron/28.0.0 Safari/537.36",
            ),
            Desktop,
            Element,
        );
        check(
            Some(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Tchap/4.8.0 Chrome/126.0 Electron/31.0.1 Safari/537.36",
            ),
            Desktop,
            Tchap,
        );
    }

    #[test]
    fn garbage_and_absence_are_unknown() {
        use Client::*;
        use Platform::*;
        check(None, Unknown, Other);
        check(Some(""), Unknown, Other);
        check(Some("curl/8.5.0"), Unknown, Other);
        check(Some("okhttp/4.12.0"), Unknown, Other);
        check(Some("Synapse/1.163.2"), Unknown, Other);
        check(Some("\u{0}\u{fffd}💥"), Unknown, Other);
        // iOS mentioned before the client name is not an iOS client rule.
        check(Some("iOS Tchap"), Unknown, Tchap);
        check(Some("Tchap/2.0 (unknown OS)"), Unknown, Tchap);
    }
}
