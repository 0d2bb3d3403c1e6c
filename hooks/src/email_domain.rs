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
    "interieur.gouv.fr",
    "douane.finances.gouv.fr",
    "dgfip.finances.gouv.fr",
    "insee.fr",
    "pole-emploi.fr",
    "francetravail.fr",
    "ars.sante.fr",
    "ofb.gouv.fr",
    "onf.fr",
    "beta.gouv.fr",
    "developpement-durable.gouv.fr",
    "ecologie.gouv.fr",
    "travail.gouv.fr",
    "armees.gouv.fr",
    "def.gouv.fr",
    "outre-mer.gouv.fr",
    "enseignementsup.gouv.fr",
    "recherche.gouv.fr",
    "jeunesse-sports.gouv.fr",
    "cnil.fr",
    "conseil-etat.fr",
    "cour-des-comptes.fr",
    "assemblee-nationale.fr",
    "senat.fr",
    // The académies (rectorats): their domains hold hyphens, as do many names.
    "ac-aix-marseille.fr",
    "ac-amiens.fr",
    "ac-besancon.fr",
    "ac-bordeaux.fr",
    "ac-clermont.fr",
    "ac-corse.fr",
    "ac-creteil.fr",
    "ac-dijon.fr",
    "ac-grenoble.fr",
    "ac-guadeloupe.fr",
    "ac-guyane.fr",
    "ac-lille.fr",
    "ac-limoges.fr",
    "ac-lyon.fr",
    "ac-martinique.fr",
    "ac-mayotte.fr",
    "ac-montpellier.fr",
    "ac-nancy-metz.fr",
    "ac-nantes.fr",
    "ac-nice.fr",
    "ac-normandie.fr",
    "ac-orleans-tours.fr",
    "ac-paris.fr",
    "ac-poitiers.fr",
    "ac-reims.fr",
    "ac-rennes.fr",
    "ac-reunion.fr",
    "ac-strasbourg.fr",
    "ac-toulouse.fr",
    "ac-versailles.fr",
    "ac-noumea.nc",
    "ac-polynesie.pf",
    "ac-wf.wf",
    "ac-spm.fr",
];

/// What is published for an address whose domain is neither known nor shared by enough users.
pub const OTHER: &str = "other";

/// Candidate domains kept at most, waiting for enough users: bounds the memory a flood of
/// unique names could take (the oldest are not evicted; new ones are no longer learned).
const MAX_CANDIDATES: usize = 100_000;

/// Reads e-mail domains out of localparts, and publishes only domains it can trust: a known
/// one (the built-in list, the configured one), or one it learned from at least `min_users`
/// distinct users of the server. Any other domain is `other`: a localpart such as
/// `marie.dupont-durand-ac-lyon.fr` must never publish `durand-ac-lyon.fr` (part of a name), and
/// a domain of one user would single them out.
#[derive(Debug, Default)]
pub struct DomainReader {
    /// Lowercase, longest first, so the most specific known domain wins.
    known: Vec<String>,
    /// 0: nothing is learned (every unknown domain is `other`).
    min_users: usize,
    learned: std::sync::Mutex<Learned>,
    /// Blinds the candidates (`Learned::candidates`): only learned domains are kept in clear.
    blind: Option<crate::Pseudonymizer>,
}

/// Domains learned from the server's users, and the candidates still short of users.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Learned {
    pub domains: std::collections::BTreeSet<String>,
    /// Candidate domain, blinded under the pseudonymization key (16 hex digits: a candidate
    /// seen for one user may be part of a name, such as `leroy-ac-lyon.fr`) -> the
    /// (pseudonymous) users seen with it, fewer than `min_users`.
    pub candidates: std::collections::BTreeMap<String, std::collections::BTreeSet<u64>>,
    #[serde(skip)]
    pub changed: bool,
}

/// What a localpart says of a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reading {
    /// No address in it (`@alice:server`).
    Nothing,
    Known(String),
    /// The domains it could end with, most specific first.
    Unlisted(Vec<String>),
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
        Self {
            known,
            ..Self::default()
        }
    }

    /// Learns a domain once `min_users` distinct users of the server have it (the privacy
    /// threshold of the figures), starting from what was learned before.
    /// Candidates are blinded by `blind` (the server's pseudonymizer); candidates kept in
    /// clear by an older version are dropped (and the file rewritten).
    pub fn learning(
        mut self,
        min_users: usize,
        mut learned: Learned,
        blind: crate::Pseudonymizer,
    ) -> Self {
        let before = learned.candidates.len();
        learned
            .candidates
            .retain(|k, _| k.len() == 16 && k.bytes().all(|b| b.is_ascii_hexdigit()));
        learned.changed |= learned.candidates.len() != before;
        self.min_users = min_users;
        self.learned = std::sync::Mutex::new(learned);
        self.blind = Some(blind);
        self
    }

    /// What was learned, and whether it changed since the last call (to persist it).
    pub fn take_learned(&self) -> Option<Learned> {
        let mut learned = self.learned.lock().ok()?;
        let changed = std::mem::take(&mut learned.changed);
        changed.then(|| learned.clone())
    }

    fn read(&self, user: &str) -> Reading {
        let localpart = user.strip_prefix('@').unwrap_or(user);
        let localpart = localpart
            .split_once(':')
            .map_or(localpart, |(local, _server)| local);
        let Some(address) = unescape(localpart).map(|a| strip_collision_suffix(&a)) else {
            return Reading::Nothing;
        };
        if let Some(known) = self.known.iter().find(|d| {
            address.len() > d.len() + 1
                && address.ends_with(d.as_str())
                && address.as_bytes()[address.len() - d.len() - 1] == b'-'
        }) {
            return Reading::Known(known.clone());
        }
        let candidates: Vec<String> = address
            .match_indices('-')
            .map(|(i, _)| i)
            .filter(|&i| i > 0 && is_domain(&address[i + 1..]))
            .map(|i| address[i + 1..].to_owned())
            .collect();
        if candidates.is_empty() {
            Reading::Nothing
        } else {
            Reading::Unlisted(candidates)
        }
    }

    /// The domain published for `user` (pseudonymized as `who`): a known domain, a learned
    /// one, `other` for an address whose domain is neither, `None` without an address. Each
    /// call counts `who` toward the candidates it could be.
    pub fn domain_of(&self, user: &str, who: u64) -> Option<String> {
        match self.read(user) {
            Reading::Nothing => None,
            Reading::Known(domain) => Some(domain),
            Reading::Unlisted(candidates) => Some(
                self.observe(&candidates, who)
                    .unwrap_or_else(|| OTHER.to_owned()),
            ),
        }
    }

    /// Counts `who` toward each candidate; the most specific learned one, if any.
    fn observe(&self, candidates: &[String], who: u64) -> Option<String> {
        let Ok(mut learned) = self.learned.lock() else {
            return None;
        };
        if let (true, Some(blind)) = (self.min_users > 0, &self.blind) {
            for candidate in candidates {
                if learned.domains.contains(candidate) {
                    continue;
                }
                let blinded = format!("{:016x}", blind.candidate_domain(candidate));
                if !learned.candidates.contains_key(&blinded)
                    && learned.candidates.len() >= MAX_CANDIDATES
                {
                    continue;
                }
                let users = learned.candidates.entry(blinded.clone()).or_default();
                let (added, enough) = (users.insert(who), users.len() >= self.min_users);
                learned.changed |= added;
                if enough {
                    learned.candidates.remove(&blinded);
                    learned.domains.insert(candidate.clone());
                    learned.changed = true;
                }
            }
        }
        // The most specific domain that enough users share: `ac-lyon.fr` before `lyon.fr`,
        // never `durand-ac-lyon.fr` unless that many Durands write from there.
        candidates
            .iter()
            .find(|c| learned.domains.contains(*c))
            .cloned()
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
        assert_eq!(reader.domain_of(user, 1).as_deref(), expected, "{user}");
    }

    #[test]
    fn plain_tchap_localparts() {
        check(
            TCHAP_DOMAINS,
            "@jean.dupont-interieur.gouv.fr:agent.interieur.tchap.gouv.fr",
            Some("interieur.gouv.fr"),
        );
        check(
            TCHAP_DOMAINS,
            "jean.dupont-interieur.gouv.fr",
            Some("interieur.gouv.fr"),
        );
        check(
            &["gmail.com"],
            "@marie.curie-gmail.com:agent.externe.tchap.gouv.fr",
            Some("gmail.com"),
        );
        check(
            TCHAP_DOMAINS,
            "@a.b-elysee.fr:agent.elysee.tchap.gouv.fr",
            Some("elysee.fr"),
        );
        // An unlisted domain, not learned: `other`, whatever it is.
        check(&[], "@marie.curie-gmail.com:s", Some(OTHER));
    }

    #[test]
    fn hyphens_in_names_and_domains() {
        check(
            TCHAP_DOMAINS,
            "@jean-marc.durand-interieur.gouv.fr:s",
            Some("interieur.gouv.fr"),
        );
        check(
            TCHAP_DOMAINS,
            "@jean-marc.durand-developpement-durable.gouv.fr:s",
            Some("developpement-durable.gouv.fr"),
        );
        // A hyphenated last name never becomes a domain: the known list, or `other`.
        check(
            TCHAP_DOMAINS,
            "@anne.martin-leroy-interieur.gouv.fr:s",
            Some("interieur.gouv.fr"),
        );
        check(&[], "@anne.martin-leroy-interieur.gouv.fr:s", Some(OTHER));
        check(
            TCHAP_DOMAINS,
            "@marie.dupont-durand-ac-lyon.fr:s",
            Some("ac-lyon.fr"),
        );
        // The longest known domain wins over a shorter one it ends with.
        check(
            TCHAP_DOMAINS,
            "@p.n-gendarmerie.interieur.gouv.fr:s",
            Some("gendarmerie.interieur.gouv.fr"),
        );
    }

    fn blind() -> crate::Pseudonymizer {
        let key = crate::PseudonymKey::from_bytes(zeroize::Zeroizing::new(vec![7u8; 32]), "test")
            .unwrap();
        crate::Pseudonymizer::new(&key)
    }

    #[test]
    fn a_domain_is_learned_from_enough_users_and_a_surname_never_is() {
        let reader = DomainReader::new(TCHAP_DOMAINS).learning(3, Learned::default(), blind());
        // Two users of an unlisted domain: not enough, `other`; the third makes it.
        assert_eq!(
            reader.domain_of("@a.b-mairie-x.fr:s", 1).as_deref(),
            Some(OTHER)
        );
        assert_eq!(
            reader.domain_of("@c.d-mairie-x.fr:s", 2).as_deref(),
            Some(OTHER)
        );
        // The same user again counts once.
        assert_eq!(
            reader.domain_of("@c.d-mairie-x.fr:s", 2).as_deref(),
            Some(OTHER)
        );
        assert_eq!(
            reader.domain_of("@e.f-mairie-x.fr:s", 3).as_deref(),
            Some("mairie-x.fr")
        );
        assert_eq!(
            reader.domain_of("@g.h-mairie-x.fr:s", 4).as_deref(),
            Some("mairie-x.fr")
        );
        // A double surname at that domain: its other candidates (`durand-mairie-x.fr`,
        // `x.fr`) lose to the learned domain.
        assert_eq!(
            reader
                .domain_of("@marie.dupont-durand-mairie-x.fr:s", 5)
                .as_deref(),
            Some("mairie-x.fr")
        );
        let learned = reader.take_learned().unwrap();
        assert!(learned.domains.contains("mairie-x.fr"));
        assert!(!learned.domains.contains("durand-mairie-x.fr"));
        // The candidates short of users are kept blinded: no part of a name in the state.
        let kept = serde_json::to_string(&learned).unwrap();
        assert!(
            !kept.contains("durand") && !kept.contains("dupont"),
            "{kept}"
        );
        assert!(!learned.candidates.is_empty());
        assert!(reader.take_learned().is_none(), "nothing changed since");
        // Learned, persisted, and learned again: the same.
        let again = DomainReader::new(TCHAP_DOMAINS).learning(3, learned, blind());
        assert_eq!(
            again.domain_of("@z.z-mairie-x.fr:s", 9).as_deref(),
            Some("mairie-x.fr")
        );
    }

    #[test]
    fn collision_suffixes_and_escapes() {
        for user in [
            "@jean.dupont-interieur.gouv.fr2:s",
            "@jean.dupont-interieur.gouv.fr17:s",
            "@_jean.dupont-_interieur.gouv.fr:s",
            "@jean=2edupont-interieur.gouv.fr:s",
            "@JEAN.DUPONT-INTERIEUR.GOUV.FR:s",
        ] {
            check(TCHAP_DOMAINS, user, Some("interieur.gouv.fr"));
        }
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
