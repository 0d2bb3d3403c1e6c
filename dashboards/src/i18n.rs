//! The pages' two languages (French by default, `?lang=en`): the words of the interface, the
//! names of the figures, months and days, and numbers as each language writes them (French:
//! a narrow no-break space between thousands, a decimal comma).

/// What the pages and reports say of the publication rule (docs/design.md §4): withheld
/// cells, and the perturbation of the others when there is one.
pub fn privacy_legend(lang: Lang, min_users: u32, noise: u32) -> String {
    let withheld = lang
        .t("suppressed_legend")
        .replace("{k}", &min_users.to_string());
    if noise == 0 {
        return withheld;
    }
    format!(
        "{withheld} {}",
        lang.t("noise_legend")
            .replace("{noise}", &noise.to_string())
    )
}

/// A language of the pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Lang {
    #[default]
    Fr,
    En,
}

impl Lang {
    pub fn parse(text: Option<&str>) -> Lang {
        match text {
            Some("en") => Lang::En,
            _ => Lang::Fr,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
        }
    }

    /// A word of the interface.
    pub fn t(self, key: &str) -> &'static str {
        let (fr, en) = match key {
            "login" => ("Connexion", "Log in"),
            "logout" => ("Déconnexion", "Log out"),
            "token" => ("Jeton d'accès", "Access token"),
            "login_help" => (
                "Collez le jeton que l'administrateur vous a remis.",
                "Paste the token your administrator gave you.",
            ),
            "bad_token" => (
                "Ce jeton n'est pas reconnu.",
                "This token is not recognised.",
            ),
            "period" => ("Période", "Period"),
            "from" => ("Du", "From"),
            "to" => ("au", "to"),
            "server" => ("Serveur", "Server"),
            "domain" => ("Domaine", "Domain"),
            "platform" => ("Plateforme", "Platform"),
            "family" => ("Application", "App"),
            "all" => ("Tous", "All"),
            "apply" => ("Afficher", "Show"),
            "table" => ("Voir le tableau", "Show the table"),
            "download_csv" => ("Télécharger (CSV)", "Download (CSV)"),
            "download_png" => ("Image (PNG)", "Image (PNG)"),
            "source" => ("Source", "Source"),
            "source_text" => (
                "mxpulse, activité des serveurs de la fédération",
                "mxpulse, activity of the federation's servers",
            ),
            "data_of" => ("données au", "data as of"),
            "suppressed" => ("secret", "secret"),
            "suppressed_legend" => (
                "« secret » : moins de {k} utilisateurs, aucun compris, valeur masquée (règle du secret statistique).",
                "\"secret\": fewer than {k} users, none included, value withheld (statistical confidentiality).",
            ),
            "noise_legend" => (
                "Les autres valeurs sont légèrement perturbées (d'au plus {noise} personnes, ou {noise} fois la moyenne par personne pour les messages et autres actions), toujours de la même façon, pour qu'aucune combinaison de chiffres ne révèle une valeur masquée.",
                "Other values are slightly perturbed (by at most {noise} people, or {noise} times the mean per person for messages and other actions), always the same way, so that no combination of figures reveals a withheld value.",
            ),
            "mom" => ("sur un mois", "month on month"),
            "yoy" => ("sur un an", "year on year"),
            "previous_day" => ("sur la veille", "on the day before"),
            "definition" => ("Définition", "Definition"),
            "annotations" => ("Événements", "Events"),
            "what_changed" => ("Ce qui a changé", "What changed"),
            "no_data" => ("Pas de donnée sur la période.", "No data for the period."),
            "total" => ("Total", "Total"),
            "month" => ("Mois", "Month"),
            "day" => ("Jour", "Day"),
            "rank" => ("Rang", "Rank"),
            "forum" => ("Forum", "Forum"),
            "topic" => ("Sujet", "Topic"),
            "members" => ("Membres", "Members"),
            "created" => ("Créé en", "Created"),
            "in_progress" => ("en cours", "in progress"),
            "skip" => ("Aller au contenu", "Skip to content"),
            "dashboards" => ("Tableaux de bord", "Dashboards"),
            "language" => ("English", "Français"),
            "value" => ("Valeur", "Value"),
            "chart_of" => ("Graphique", "Chart"),
            "others" => ("autres", "others"),
            "contributed" => ("dont", "of which"),
            "key" => ("Clé", "Key"),
            // The monthly report.
            "figure" => ("Indicateur", "Figure"),
            "busiest_day" => ("Jour le plus actif", "Busiest day"),
            "that_day" => ("Valeur ce jour", "Value that day"),
            "report" => ("Rapport mensuel", "Monthly report"),
            "reports" => ("Rapports mensuels", "Monthly reports"),
            "headline" => ("Chiffres clés", "Headline figures"),
            "by_server" => ("Par ministère (serveur)", "By ministry (server)"),
            "by_platform" => ("Par plateforme", "By platform"),
            "daily" => ("Jour par jour", "Day by day"),
            "features" => ("Fonctionnalités", "Features"),
            "transitions" => ("Passage à Tchap X", "The move to Tchap X"),
            "top_forums" => ("Forums les plus suivis", "Largest forums"),
            "events" => ("Événements du mois", "Events of the month"),
            "annex" => (
                "Annexe : définitions et règle du secret",
                "Annex: definitions and the confidentiality rule",
            ),
            "notes" => ("Notes", "Notes"),
            "provisional" => (
                "Provisoire : le mois n'est pas clos, ces chiffres peuvent encore évoluer.",
                "Provisional: the month is not closed, these figures may still change.",
            ),
            "frozen" => (
                "Rapport arrêté : ses chiffres ne changent plus qu'en révision datée.",
                "Frozen report: its figures change only in a dated revision.",
            ),
            "closed_not_frozen" => (
                "Mois clos ; ce rapport n'a pas pu être archivé et sera recalculé.",
                "Month closed; this report could not be stored and will be counted again.",
            ),
            "revision" => ("Révision", "Revision"),
            "replaces" => ("remplace celle du", "replaces the one of"),
            "generated" => ("généré le", "generated on"),
            "counted_from" => ("calculé depuis", "counted from"),
            "time_zone" => ("fuseau", "time zone"),
            "lake_version" => ("version des agrégats", "rollups version"),
            "forums_as_of" => (
                "Classement des forums à la date de génération du rapport.",
                "Forum ranking as of the report's generation.",
            ),
            "download_report" => ("Rapport du mois", "Report of the month"),
            _ => ("?", "?"),
        };
        match self {
            Lang::Fr => fr,
            Lang::En => en,
        }
    }

    /// A figure's name for people.
    pub fn figure(self, name: &str) -> String {
        let (fr, en) = match name {
            "active_users" => ("Utilisateurs actifs", "Active users"),
            "messages" => ("Messages envoyés", "Messages sent"),
            "threads" => ("Messages en fil", "Messages in threads"),
            "reactions" => ("Réactions", "Reactions"),
            "rooms_created" => ("Salons créés", "Rooms created"),
            "rooms_created_direct" => ("Conversations directes créées", "Direct rooms created"),
            "rooms_created_private" => ("Salons privés créés", "Private rooms created"),
            "rooms_created_external" => (
                "Salons ouverts aux externes créés",
                "External rooms created",
            ),
            "rooms_created_forum" => ("Forums créés", "Forums created"),
            "rooms_created_space" => ("Espaces créés", "Spaces created"),
            "accounts_created" => ("Comptes créés", "Accounts created"),
            "calls_started" => ("Appels visibles lancés", "Visible calls started"),
            "call_participants" => (
                "Participants aux appels visibles",
                "Visible call participants",
            ),
            "live_location_shares" => ("Partages de position en direct", "Live location shares"),
            "total_active_accounts" => ("Comptes ouverts", "Open accounts"),
            "r30_users" => ("Utilisateurs fidèles (r30)", "Retained users (r30)"),
            "client_moves_to_x" => ("Passés à Tchap X", "Moved to Tchap X"),
            "client_moves_to_classic" => (
                "Revenus aux applications classiques",
                "Back to the classic apps",
            ),
            "clients_both" => (
                "Sur Tchap X et une application classique",
                "On Tchap X and a classic app",
            ),
            other => (other, other),
        };
        match self {
            Lang::Fr => fr.to_owned(),
            Lang::En => en.to_owned(),
        }
    }

    /// A figure's definition for people (the figure module's own, in English; in French here).
    pub fn definition(self, name: &str) -> String {
        if self == Lang::En {
            return mxpulse_query::figures::definitions::description(name)
                .unwrap_or_default()
                .to_owned();
        }
        match name {
            "active_users" => "Utilisateurs distincts venus au moins une fois, plateforme connue (le « MAU » publié de Tchap sur un mois).",
            "messages" => "Messages envoyés (m.room.message et m.room.encrypted des utilisateurs du serveur), hors réactions et modifications. Dans un salon chiffré le serveur ne voit que m.room.encrypted : la signalisation des appels chiffrés y est comptée comme message, comme dans les statistiques de Synapse.",
            "threads" => "Messages envoyés dans un fil de discussion (aussi comptés dans les messages).",
            "reactions" => "Réactions (m.reaction) des salons non chiffrés : celles des salons chiffrés sont invisibles pour le serveur.",
            "rooms_created" => "Salons créés (m.room.create), tous types.",
            "rooms_created_direct" => "Conversations directes créées.",
            "rooms_created_private" => "Salons privés créés (sur invitation ou restreints).",
            "rooms_created_external" => "Salons chiffrés ouverts aux utilisateurs externes, créés.",
            "rooms_created_forum" => "Forums créés (publics, non chiffrés).",
            "rooms_created_space" => "Espaces créés.",
            "accounts_created" => "Comptes d'agents créés (hors robots et invités).",
            "calls_started" => "Appels que le serveur peut voir : appels de groupe MatrixRTC (état call.member, visible partout) et appels 1:1 des salons non chiffrés. Les appels 1:1 chiffrés sont invisibles : ce chiffre sous-estime les appels et ne mesure pas leur adoption.",
            "call_participants" => "Utilisateurs distincts ayant rejoint un appel de groupe MatrixRTC, ou passé ou décroché un appel 1:1 visible (salons non chiffrés).",
            "live_location_shares" => "Partages de position en direct lancés (m.beacon_info avec live).",
            "total_active_accounts" => "Comptes d'agents ouverts à la fin du mois : créés, moins désactivés, plus réactivés, depuis le début de l'historique.",
            "r30_users" => "Utilisateurs fidèles (r30v2 de Synapse) à la fin du mois : vus, plateforme connue, deux jours séparés de plus de 30 jours dans les 60 jours précédents.",
            "client_moves_to_x" => "Utilisateurs passés à Tchap X : vus sur une application mobile Tchap classique (Android, iOS, NEO) le mois précédent, et ce mois-ci sur Tchap X et sur aucune application mobile classique.",
            "client_moves_to_classic" => "Utilisateurs revenus aux applications classiques : vus sur Tchap X le mois précédent, et ce mois-ci sur une application mobile Tchap classique et pas sur Tchap X.",
            "clients_both" => "Utilisateurs vus ce mois-ci à la fois sur une application mobile Tchap classique et sur Tchap X.",
            _ => "",
        }
        .to_owned()
    }

    /// The name of a month `YYYY-MM` (`juil. 2024`) or a day `YYYY-MM-DD` (`26 juil. 2024`).
    pub fn period(self, period: &str) -> String {
        const FR: [&str; 12] = [
            "janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.",
            "nov.", "déc.",
        ];
        const EN: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let mut parts = period.split('-');
        let (Some(year), Some(month)) = (parts.next(), parts.next()) else {
            return period.to_owned();
        };
        let Some(name) = month
            .parse::<usize>()
            .ok()
            .and_then(|m| m.checked_sub(1))
            .and_then(|m| match self {
                Lang::Fr => FR.get(m),
                Lang::En => EN.get(m),
            })
        else {
            return period.to_owned();
        };
        match (parts.next().and_then(|d| d.parse::<u32>().ok()), self) {
            (Some(day), Lang::Fr) => format!("{day} {name} {year}"),
            (Some(day), Lang::En) => format!("{day} {name} {year}"),
            (None, _) => format!("{name} {year}"),
        }
    }

    /// A count as the language writes it: `230 561` (narrow no-break spaces) or `230,561`.
    pub fn number(self, value: f64) -> String {
        let negative = value < 0.0;
        let digits = format!("{:.0}", value.abs());
        let separator = match self {
            Lang::Fr => '\u{202f}',
            Lang::En => ',',
        };
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(separator);
            }
            out.push(c);
        }
        if negative { format!("−{out}") } else { out }
    }

    /// A change as a signed percentage: `+27,0 %` or `+27.0%`.
    pub fn change(self, fraction: f64) -> String {
        let sign = if fraction >= 0.0 { "+" } else { "−" };
        let percent = format!("{:.1}", fraction.abs() * 100.0);
        match self {
            Lang::Fr => format!("{sign}{}\u{a0}%", percent.replace('.', ",")),
            Lang::En => format!("{sign}{percent}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_periods_in_each_language() {
        assert_eq!(Lang::Fr.number(230_561.0), "230\u{202f}561");
        assert_eq!(Lang::En.number(230_561.0), "230,561");
        assert_eq!(Lang::Fr.number(7_000_000.0), "7\u{202f}000\u{202f}000");
        assert_eq!(Lang::Fr.number(999.0), "999");
        assert_eq!(Lang::Fr.number(-1234.0), "−1\u{202f}234");
        assert_eq!(Lang::Fr.change(0.27), "+27,0\u{a0}%");
        assert_eq!(Lang::En.change(-0.051), "−5.1%");
        assert_eq!(Lang::Fr.period("2024-07"), "juil. 2024");
        assert_eq!(Lang::En.period("2024-07-26"), "26 Jul 2024");
        assert_eq!(Lang::Fr.period("2024-13"), "2024-13");
        for name in mxpulse_query::figures::FIGURES.iter().map(|f| f.name) {
            assert_ne!(Lang::Fr.figure(name), name, "{name} has a French name");
            assert!(
                !Lang::Fr.definition(name).is_empty(),
                "{name} has a French definition"
            );
        }
    }
}
