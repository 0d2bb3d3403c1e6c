//! The e-mail domain hidden in a Tchap-style localpart: Tchap derives a user's Matrix ID from
//! their address, `first.last@interieur.gouv.fr` becoming `@first.last-interieur.gouv.fr:server`.
//! The domain is all the figures keep of it; the name never leaves the hooks.
//!
//! The `-` that stood for `@` is ambiguous when names or domains hold hyphens
//! (`jean-marc.durand-developpement-durable.gouv.fr`), so a list of known domains is tried
//! first, then a rule that fits how addresses are written.

/// Domains of the French State that a Tchap-like federation is expected to see; a deployment
/// adds its own in `hooks.known_domains`.
pub const TCHAP_DOMAINS: &[&str] = &[
    "agriculture.gouv.fr",
    "culture.gouv.fr",
    "developpement-durable.gouv.fr",
    "diplomatie.gouv.fr",
    "education.gouv.fr",
    "elysee.fr",
    "finances.gouv.fr",
    "interieur.gouv.fr",
    "intradef.gouv.fr",
    "justice.gouv.fr",
    "modernisation.gouv.fr",
    "numerique.gouv.fr",
    "pm.gouv.fr",
    "sante.gouv.fr",
    "social.gouv.fr",
    "ssi.gouv.fr",
    "gendarmerie.interieur.gouv.fr",
    "ac-paris.fr",
];

/// Reads e-mail domains out of localparts.
#[derive(Clone, Debug, Default)]
pub struct DomainReader {
    /// Lowercase, longest first, so the most specific known domain wins.
    known: Vec<String>,
}

impl DomainReader {
    pub fn new<S: AsRef<str>>(known: impl IntoIterator<Item = S>) -> Self {
        let mut known: Vec<String> = known
            .into_iter()
            .map(|d| d.as_ref().trim().to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect();
        known.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        known.dedup();
        Self { known }
    }

    /// The domain encoded in a user ID (`@local:server`) or bare localpart, if it holds one.
    pub fn domain_of(&self, user: &str) -> Option<String> {
        let localpart = user.strip_prefix('@').unwrap_or(user);
        let localpart = localpart
            .split_once(':')
            .map_or(localpart, |(local, _server)| local);
        let address = strip_collision_suffix(&unescape(localpart)?);

        if let Some(known) = self.known.iter().find(|d| {
            address.len() > d.len() + 1
                && address.ends_with(d.as_str())
                && address.as_bytes()[address.len() - d.len() - 1] == b'-'
        }) {
            return Some(known.clone());
        }
        // An address's local part is `first.last` in the State's directories, so the `-` that
        // stood for `@` is the first one with a dot before it; failing that, the last `-`.
        let splits: Vec<usize> = address
            .match_indices('-')
            .map(|(i, _)| i)
            .filter(|&i| i > 0 && is_domain(&address[i + 1..]))
            .collect();
        let at = splits
            .iter()
            .copied()
            .find(|&i| address[..i].contains('.'))
            .or(splits.last().copied())?;
        Some(address[at + 1..].to_owned())
    }
}

/// Undoes the Matrix spec's user ID escaping (`_x` for an uppercase letter, `__` for `_`,
/// `=xx` for any other byte) and lowercases. `None` when the escapes are malformed.
fn unescape(localpart: &str) -> Option<String> {
    let bytes = localpart.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' => {
                let hex = localpart.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'_' if bytes.get(i + 1).is_some_and(u8::is_ascii_lowercase) => {
                out.push(bytes[i + 1]);
                i += 2;
            }
            b'_' if bytes.get(i + 1) == Some(&b'_') => {
                out.push(b'_');
                i += 2;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(|s| s.to_lowercase())
}

/// Tchap appends a number when two addresses map to one localpart (`...gouv.fr2`); a top-level
/// domain has no digits, so trailing digits after the last dot are that suffix.
fn strip_collision_suffix(address: &str) -> String {
    match address.rsplit_once('.') {
        Some((_, tld))
            if tld.bytes().any(|b| b.is_ascii_digit())
                && tld.bytes().any(|b| b.is_ascii_alphabetic()) =>
        {
            address
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .to_owned()
        }
        _ => address.to_owned(),
    }
}

/// At least two labels of letters, digits and inner hyphens, and an alphabetic top-level domain.
fn is_domain(text: &str) -> bool {
    let labels: Vec<&str> = text.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    labels.len() >= 2
        && labels.iter().all(label_ok)
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(known: &[&str], user: &str, expected: Option<&str>) {
        let reader = DomainReader::new(known.iter().copied());
        assert_eq!(reader.domain_of(user).as_deref(), expected, "{user}");
    }

    #[test]
    fn plain_tchap_localparts() {
        check(
            &[],
            "@jean.dupont-interieur.gouv.fr:agent.interieur.tchap.gouv.fr",
            Some("interieur.gouv.fr"),
        );
        check(
            &[],
            "jean.dupont-interieur.gouv.fr",
            Some("interieur.gouv.fr"),
        );
        check(
            &[],
            "@marie.curie-gmail.com:agent.externe.tchap.gouv.fr",
            Some("gmail.com"),
        );
        check(
            &[],
            "@a.b-elysee.fr:agent.elysee.tchap.gouv.fr",
            Some("elysee.fr"),
        );
    }

    #[test]
    fn hyphens_in_names_and_domains() {
        check(
            &[],
            "@jean-marc.durand-interieur.gouv.fr:s",
            Some("interieur.gouv.fr"),
        );
        check(
            &[],
            "@jean.dupont-dev-durable.gouv.fr:s",
            Some("dev-durable.gouv.fr"),
        );
        check(
            &[],
            "@jean-marc.durand-developpement-durable.gouv.fr:s",
            Some("developpement-durable.gouv.fr"),
        );
        // A hyphenated last name would fool the rule; the known list sets it right.
        check(
            &[],
            "@anne.martin-leroy-interieur.gouv.fr:s",
            Some("leroy-interieur.gouv.fr"),
        );
        check(
            TCHAP_DOMAINS,
            "@anne.martin-leroy-interieur.gouv.fr:s",
            Some("interieur.gouv.fr"),
        );
        // The longest known domain wins over a shorter one it ends with.
        check(
            TCHAP_DOMAINS,
            "@p.n-gendarmerie.interieur.gouv.fr:s",
            Some("gendarmerie.interieur.gouv.fr"),
        );
    }

    #[test]
    fn collision_suffixes_and_escapes() {
        check(
            &[],
            "@jean.dupont-interieur.gouv.fr2:s",
            Some("interieur.gouv.fr"),
        );
        check(
            &[],
            "@jean.dupont-interieur.gouv.fr17:s",
            Some("interieur.gouv.fr"),
        );
        check(
            &[],
            "@_jean.dupont-_interieur.gouv.fr:s",
            Some("interieur.gouv.fr"),
        );
        check(
            &[],
            "@jean=2edupont-interieur.gouv.fr:s",
            Some("interieur.gouv.fr"),
        );
        check(
            &[],
            "@JEAN.DUPONT-INTERIEUR.GOUV.FR:s",
            Some("interieur.gouv.fr"),
        );
    }

    #[test]
    fn localparts_without_an_address() {
        for user in [
            "@alice:interieur.localhost",
            "@admin:s",
            "@bot-:s",
            "@-interieur.gouv.fr:s",
            "@x-localhost:s",
            "@x-gouv.f2:s",
            "",
            "@:s",
            "@a=zz-b.fr:s",
            "@a-b.123:s",
        ] {
            check(TCHAP_DOMAINS, user, None);
        }
    }
}
