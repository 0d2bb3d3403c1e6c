//! Dashboards as code: one TOML file per dashboard (title, period, panels), the shipped ones
//! compiled in from `dashboards/definitions/`, an operator's own read from a directory at
//! start. A file that is not a valid dashboard fails start-up with its name, line and problem.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mxpulse_query::figures::definitions::is_known;
use serde::Deserialize;

/// A text in French and English (French is the default language of the pages).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub fr: String,
    #[serde(default)]
    pub en: String,
}

impl Text {
    pub fn get(&self, lang: crate::i18n::Lang) -> &str {
        match lang {
            crate::i18n::Lang::En if !self.en.is_empty() => &self.en,
            _ => &self.fr,
        }
    }
}

/// How a panel shows its figures.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChartKind {
    /// The last period's value, with its change over the previous period and a year.
    BigNumber,
    Line,
    Bar,
    StackedBar,
    Table,
    /// The forums directory (largest forums by members).
    Forums,
}

/// Calendar months or days.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Grain {
    #[default]
    Month,
    Day,
}

/// One panel of a dashboard.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    pub id: String,
    pub kind: ChartKind,
    /// The figures shown (names of the figures API); one per series when several.
    #[serde(default)]
    pub figures: Vec<toml::Spanned<String>>,
    /// `total` (default), or a breakdown: a series per server, domain, platform or client
    /// family.
    #[serde(default = "total")]
    pub breakdown: String,
    /// With a breakdown: the keys with the largest values only (the table keeps them all).
    #[serde(default)]
    pub top: Option<usize>,
    /// Only the last period of the dashboard (a ranking), instead of every period.
    #[serde(default)]
    pub last_period_only: bool,
    /// For analysts only: a query over the SQL views (`:from` and `:to` are the period's
    /// first and last days, bound as parameters).
    #[serde(default)]
    pub sql: Option<toml::Spanned<String>>,
    #[serde(default)]
    pub title: Option<Text>,
    /// What the panel counts, when the figures' own definitions do not say it all.
    #[serde(default)]
    pub note: Option<Text>,
}

fn total() -> String {
    "total".into()
}

/// One dashboard.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    pub slug: String,
    /// Place in the navigation (smallest first).
    #[serde(default)]
    pub order: i32,
    pub title: Text,
    #[serde(default)]
    pub intro: Option<Text>,
    #[serde(default)]
    pub grain: Grain,
    /// The period shown by default: this many months (or days) up to the newest data.
    #[serde(default = "default_span")]
    pub default_span: u32,
    /// Under the panels, a paragraph per headline figure on the last closed month's change.
    #[serde(default)]
    pub what_changed: bool,
    #[serde(rename = "panel")]
    pub panels: Vec<Panel>,
}

fn default_span() -> u32 {
    24
}

/// Why a dashboard file was refused.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("dashboard file {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("dashboard file {}, line {line}: {message}", path.display())]
    AtLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("dashboards directory {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |head| head.lines().count().max(1))
        + usize::from(text.get(..offset).is_some_and(|h| h.ends_with('\n')))
}

impl Dashboard {
    /// Reads and checks one definition; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Dashboard, DefinitionError> {
        let dashboard: Dashboard = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| line_of(text, span.start));
            match line {
                Some(line) => DefinitionError::AtLine {
                    path: path.to_owned(),
                    line,
                    message: e.message().to_owned(),
                },
                None => DefinitionError::Invalid {
                    path: path.to_owned(),
                    message: e.message().to_owned(),
                },
            }
        })?;
        let at = |span: std::ops::Range<usize>, message: String| DefinitionError::AtLine {
            path: path.to_owned(),
            line: line_of(text, span.start),
            message,
        };
        let invalid = |message: String| DefinitionError::Invalid {
            path: path.to_owned(),
            message,
        };
        if dashboard.slug.is_empty()
            || !dashboard
                .slug
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(invalid(format!(
                "slug {:?}: lowercase letters, digits and dashes",
                dashboard.slug
            )));
        }
        if dashboard.panels.is_empty() {
            return Err(invalid("no [[panel]]".into()));
        }
        let mut ids = BTreeSet::new();
        for panel in &dashboard.panels {
            if !ids.insert(panel.id.as_str()) {
                return Err(invalid(format!("two panels with id {:?}", panel.id)));
            }
            if !["total", "server", "domain", "platform", "family"]
                .contains(&panel.breakdown.as_str())
            {
                return Err(invalid(format!(
                    "panel {:?}: breakdown {:?} (total, server, domain, platform or family)",
                    panel.id, panel.breakdown
                )));
            }
            for figure in &panel.figures {
                if !is_known(figure.get_ref()) {
                    return Err(at(
                        figure.span(),
                        format!(
                            "panel {:?}: no figure named {:?}",
                            panel.id,
                            figure.get_ref()
                        ),
                    ));
                }
            }
            match (&panel.sql, panel.kind, panel.figures.is_empty()) {
                (Some(sql), ChartKind::Table | ChartKind::Bar, true) => {
                    if sql.get_ref().trim().is_empty() {
                        return Err(at(sql.span(), format!("panel {:?}: empty sql", panel.id)));
                    }
                }
                (Some(sql), _, _) => {
                    return Err(at(
                        sql.span(),
                        format!(
                            "panel {:?}: a SQL panel is a table or a bar chart, without figures",
                            panel.id
                        ),
                    ));
                }
                (None, ChartKind::Forums, _) => {}
                (None, _, true) => {
                    return Err(invalid(format!(
                        "panel {:?}: give `figures` (or `sql` for analysts)",
                        panel.id
                    )));
                }
                (None, _, false) => {}
            }
        }
        Ok(dashboard)
    }

    /// Every figure its panels show.
    pub fn figures(&self) -> BTreeSet<String> {
        self.panels
            .iter()
            .flat_map(|p| p.figures.iter().map(|f| f.get_ref().clone()))
            .collect()
    }
}

/// The dashboards shipped with mxpulse (`dashboards/definitions/`).
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "overview.toml",
        include_str!("../definitions/overview.toml"),
    ),
    (
        "ministries.toml",
        include_str!("../definitions/ministries.toml"),
    ),
    (
        "platforms.toml",
        include_str!("../definitions/platforms.toml"),
    ),
    (
        "features.toml",
        include_str!("../definitions/features.toml"),
    ),
    (
        "transitions.toml",
        include_str!("../definitions/transitions.toml"),
    ),
    ("forums.toml", include_str!("../definitions/forums.toml")),
    ("period.toml", include_str!("../definitions/period.toml")),
];

/// The shipped dashboards and an operator's own from `dir` (a file of the same slug replaces
/// a shipped one), in navigation order.
pub fn load(dir: Option<&Path>) -> Result<Vec<Dashboard>, DefinitionError> {
    let mut dashboards = Vec::new();
    for (name, text) in SHIPPED {
        dashboards.push(Dashboard::parse(
            text,
            &Path::new("dashboards/definitions").join(name),
        )?);
    }
    if let Some(dir) = dir {
        let read = |source| DefinitionError::Read {
            path: dir.to_owned(),
            source,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| DefinitionError::Read {
                path: path.clone(),
                source,
            })?;
            let dashboard = Dashboard::parse(&text, &path)?;
            dashboards.retain(|d| d.slug != dashboard.slug);
            dashboards.push(dashboard);
        }
    }
    dashboards.sort_by(|a, b| (a.order, &a.slug).cmp(&(b.order, &b.slug)));
    Ok(dashboards)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: &str) {
        let got = Dashboard::parse(text, Path::new("mine.toml"))
            .map(|d| d.slug)
            .unwrap_or_else(|e| e.to_string());
        assert!(
            got.contains(expected),
            "{got:?} should contain {expected:?}"
        );
    }

    #[test]
    fn shipped_dashboards_load() {
        let dashboards = load(None).unwrap();
        let slugs: Vec<&str> = dashboards.iter().map(|d| d.slug.as_str()).collect();
        assert_eq!(
            slugs,
            [
                "overview",
                "ministries",
                "platforms",
                "features",
                "transitions",
                "forums",
                "period"
            ]
        );
    }

    #[test]
    fn malformed_files_name_the_line_and_the_problem() {
        let head = "slug = \"mine\"\ntitle = { fr = \"Le mien\" }\n";
        check(
            &format!(
                "{head}[[panel]]\nid = \"a\"\nkind = \"line\"\nfigures = [\"active_users\"]\n"
            ),
            "mine",
        );
        check(
            &format!("{head}[[panel]]\nid = \"a\"\nkind = \"pie\"\nfigures = [\"active_users\"]\n"),
            "mine.toml, line 5: unknown variant `pie`",
        );
        check(
            &format!(
                "{head}[[panel]]\nid = \"a\"\nkind = \"line\"\nfigures = [\"active_users\", \"mesages\"]\n"
            ),
            "mine.toml, line 6: panel \"a\": no figure named \"mesages\"",
        );
        check(
            &format!("{head}[[panel]]\nid = \"a\"\nkind = \"line\"\n"),
            "give `figures`",
        );
        check(
            "slug = \"mine\"\ntitle = { fr = \"x\" }\npanel = 3\n",
            "mine.toml, line 3",
        );
        check(
            "slug = \"Mine!\"\ntitle = { fr = \"x\" }\n[[panel]]\nid = \"a\"\nkind = \"forums\"\n",
            "slug \"Mine!\"",
        );
        check(
            &format!("{head}colour = \"red\"\n"),
            "unknown field `colour`",
        );
        check(
            &format!("{head}[[panel]]\nid = \"a\"\nkind = \"line\"\nsql = \"SELECT 1\"\n"),
            "line 6: panel \"a\": a SQL panel is a table or a bar chart",
        );
    }

    #[test]
    fn an_operators_file_replaces_a_shipped_one_of_the_same_slug() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("overview.toml"),
            "slug = \"overview\"\ntitle = { fr = \"À nous\" }\n[[panel]]\nid = \"a\"\nkind = \"table\"\nfigures = [\"messages\"]\n",
        )
        .unwrap();
        let dashboards = load(Some(dir.path())).unwrap();
        let overview = dashboards.iter().find(|d| d.slug == "overview").unwrap();
        assert_eq!(overview.title.fr, "À nous");
        assert_eq!(dashboards.len(), SHIPPED.len());
        std::fs::write(dir.path().join("broken.toml"), "slug = \n").unwrap();
        let err = load(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("broken.toml, line 1"), "{err}");
    }
}
