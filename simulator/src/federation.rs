//! The federation's shape: its homeservers, the share of the users each one hosts, the
//! e-mail domains of their users, and the public forums of the published directory.

/// The 17 servers of the public federation (docs/design.md §8), by short name.
pub const TCHAP_SERVERS: [&str; 17] = [
    "agent",
    "agriculture",
    "collectivites",
    "culture",
    "dev-durable",
    "diplomatie",
    "dinum",
    "education",
    "elysee",
    "externe",
    "finances",
    "interieur",
    "intradef",
    "justice",
    "pm",
    "social",
    "ssi",
];

/// One simulated homeserver.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerSpec {
    /// Synapse's `server_name`, e.g. `agent.interieur.tchap.gouv.fr`.
    pub name: String,
    /// Relative share of the federation's users.
    pub weight: f64,
    /// E-mail domains of its users (the first is the most common).
    pub domains: Vec<String>,
}

/// The servers and what lives on them.
#[derive(Clone, Debug, PartialEq)]
pub struct Federation {
    pub servers: Vec<ServerSpec>,
}

/// A forum of the published directory: name, hosting server (short name), members.
pub const DIRECTORY_FORUMS: [(&str, &str, usize); 9] = [
    ("Forum Tchap info", "dinum", 5_556),
    ("Emploi public", "interieur", 4_885),
    ("Cybersécurité", "interieur", 4_272),
    ("Petites annonces", "interieur", 3_413),
    ("Police Nationale", "interieur", 2_266),
    ("Sécurité des SI", "interieur", 2_251),
    ("Gendarmerie Nationale", "interieur", 2_100),
    ("ANSSI/CERT-FR - Vulnérabilités", "ssi", 1_900),
    ("DNUM [interieur]", "interieur", 1_500),
];

impl Federation {
    /// The public federation's 17 servers.
    pub fn tchap() -> Self {
        Self::from_short_names(TCHAP_SERVERS.iter().copied())
    }

    /// Servers named by their short name (`interieur` → `agent.interieur.tchap.gouv.fr`,
    /// `agent` → `agent.tchap.gouv.fr`); a name with a dot is taken as a full server name.
    pub fn from_short_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let servers = names
            .into_iter()
            .map(|short| {
                let name = if short.contains('.') {
                    short.to_owned()
                } else if short == "agent" {
                    "agent.tchap.gouv.fr".to_owned()
                } else {
                    format!("agent.{short}.tchap.gouv.fr")
                };
                let (weight, domains) = profile(short);
                ServerSpec {
                    name,
                    weight,
                    domains: domains.iter().map(|d| (*d).to_owned()).collect(),
                }
            })
            .collect();
        Self { servers }
    }

    /// The index of the server a short or full name designates.
    pub fn find(&self, short: &str) -> Option<usize> {
        let full = Self::from_short_names([short]).servers.remove(0).name;
        self.servers.iter().position(|s| s.name == full)
    }

    /// The server external users live on, if the federation has one.
    pub fn external_server(&self) -> Option<usize> {
        self.find("externe")
    }
}

/// Share of users and e-mail domains of a server by its short name; unknown servers get an
/// average share and a domain of their own.
fn profile(short: &str) -> (f64, &'static [&'static str]) {
    match short {
        "agent" => (3.0, &["modernisation.gouv.fr", "numerique.gouv.fr"]),
        "agriculture" => (4.0, &["agriculture.gouv.fr"]),
        "collectivites" => (
            8.0,
            &[
                "ville-paris.fr",
                "lyon.fr",
                "nantesmetropole.fr",
                "gironde.fr",
            ],
        ),
        "culture" => (3.0, &["culture.gouv.fr"]),
        "dev-durable" => (6.0, &["developpement-durable.gouv.fr"]),
        "diplomatie" => (3.0, &["diplomatie.gouv.fr"]),
        "dinum" => (2.0, &["numerique.gouv.fr", "modernisation.gouv.fr"]),
        "education" => (10.0, &["education.gouv.fr", "ac-paris.fr"]),
        "elysee" => (0.5, &["elysee.fr"]),
        "externe" => (8.0, &["laposte.net", "orange.fr", "sncf.fr", "edf.fr"]),
        "finances" => (10.0, &["finances.gouv.fr"]),
        "interieur" => (
            20.0,
            &["interieur.gouv.fr", "gendarmerie.interieur.gouv.fr"],
        ),
        "intradef" => (5.0, &["intradef.gouv.fr"]),
        "justice" => (6.0, &["justice.gouv.fr"]),
        "pm" => (1.0, &["pm.gouv.fr"]),
        "social" => (6.0, &["social.gouv.fr", "sante.gouv.fr"]),
        "ssi" => (1.5, &["ssi.gouv.fr"]),
        _ => (5.0, &["example.gouv.fr"]),
    }
}

pub(crate) const FIRST_NAMES: [&str; 40] = [
    "marie",
    "jean",
    "nathalie",
    "pierre",
    "isabelle",
    "michel",
    "sylvie",
    "philippe",
    "catherine",
    "alain",
    "sophie",
    "nicolas",
    "christine",
    "eric",
    "sandrine",
    "laurent",
    "valerie",
    "frederic",
    "celine",
    "stephane",
    "julie",
    "olivier",
    "aurelie",
    "thomas",
    "camille",
    "julien",
    "claire",
    "sebastien",
    "emilie",
    "david",
    "anne",
    "christophe",
    "lea",
    "vincent",
    "manon",
    "antoine",
    "chloe",
    "maxime",
    "ines",
    "hugo",
];

pub(crate) const LAST_NAMES: [&str; 60] = [
    "martin",
    "bernard",
    "thomas",
    "petit",
    "robert",
    "richard",
    "durand",
    "dubois",
    "moreau",
    "laurent",
    "simon",
    "michel",
    "lefebvre",
    "leroy",
    "roux",
    "david",
    "bertrand",
    "morel",
    "fournier",
    "girard",
    "bonnet",
    "dupont",
    "lambert",
    "fontaine",
    "rousseau",
    "vincent",
    "muller",
    "lefevre",
    "faure",
    "andre",
    "mercier",
    "blanc",
    "guerin",
    "boyer",
    "garnier",
    "chevalier",
    "francois",
    "legrand",
    "gauthier",
    "garcia",
    "perrin",
    "robin",
    "clement",
    "morin",
    "nicolas",
    "henry",
    "roussel",
    "mathieu",
    "gautier",
    "masson",
    "marchand",
    "duval",
    "denis",
    "dumont",
    "marie",
    "lemaire",
    "noel",
    "meyer",
    "dufour",
    "meunier",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tchap_server_names_follow_the_published_pattern() {
        let federation = Federation::tchap();
        assert_eq!(federation.servers.len(), 17);
        assert_eq!(federation.servers[0].name, "agent.tchap.gouv.fr");
        assert_eq!(
            federation.servers[federation.find("interieur").expect("listed")].name,
            "agent.interieur.tchap.gouv.fr"
        );
        assert!(federation.external_server().is_some());
        for (_, server, _) in DIRECTORY_FORUMS {
            assert!(federation.find(server).is_some(), "{server}");
        }
    }
}
