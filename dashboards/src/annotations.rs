//! Known events, as data: drawn as a band on every time chart and listed under it, so that a
//! peak explains itself. The Paris 2024 Olympic and Paralympic Games are built in; an operator
//! adds their own in a TOML file (`dashboards.annotations_file`):
//!
//! ```toml
//! [[annotation]]
//! from = 2024-09-02
//! to = 2024-09-06
//! fr = "Rentrée : migration des comptes de l'éducation"
//! en = "Back to school: education accounts migrated"
//! ```

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::Deserialize;

use crate::chart::Band;
use crate::definition::Text;
use crate::i18n::Lang;

/// An event between two days, both included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotation {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub label: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnnotationFile {
    #[serde(default)]
    annotation: Vec<AnnotationEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnnotationEntry {
    from: toml::value::Datetime,
    to: toml::value::Datetime,
    fr: String,
    #[serde(default)]
    en: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AnnotationError {
    #[error("annotations file {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
}

/// The events every federation of the State shares.
pub fn built_in() -> Vec<Annotation> {
    vec![
        Annotation {
            from: day(2024, 7, 26),
            to: day(2024, 8, 11),
            label: Text {
                fr: "Jeux olympiques de Paris 2024".into(),
                en: "Paris 2024 Olympic Games".into(),
            },
        },
        Annotation {
            from: day(2024, 8, 28),
            to: day(2024, 9, 8),
            label: Text {
                fr: "Jeux paralympiques de Paris 2024".into(),
                en: "Paris 2024 Paralympic Games".into(),
            },
        },
    ]
}

/// The built-in events and those of `file`.
pub fn load(file: Option<&Path>) -> Result<Vec<Annotation>, AnnotationError> {
    let mut all = built_in();
    let Some(path) = file else {
        return Ok(all);
    };
    let invalid = |message: String| AnnotationError::Invalid {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
    let parsed: AnnotationFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let day_of = |value: &toml::value::Datetime| {
        value
            .date
            .and_then(|d| {
                NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
            })
            .ok_or_else(|| invalid(format!("{value}: a day (YYYY-MM-DD) is expected")))
    };
    for entry in parsed.annotation {
        let (from, to) = (day_of(&entry.from)?, day_of(&entry.to)?);
        if to < from {
            return Err(invalid(format!(
                "{:?}: ends ({to}) before it starts ({from})",
                entry.fr
            )));
        }
        all.push(Annotation {
            from,
            to,
            label: Text {
                fr: entry.fr,
                en: entry.en,
            },
        });
    }
    all.sort_by_key(|a| a.from);
    Ok(all)
}

/// The first and last day of a period (`YYYY-MM` or `YYYY-MM-DD`).
fn days_of(period: &str) -> Option<(NaiveDate, NaiveDate)> {
    if period.len() == 7 {
        let first = NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d").ok()?;
        let last = first
            .checked_add_months(chrono::Months::new(1))?
            .pred_opt()?;
        Some((first, last))
    } else {
        let day = NaiveDate::parse_from_str(period, "%Y-%m-%d").ok()?;
        Some((day, day))
    }
}

/// The events among `periods` (in order), as bands over the periods they touch.
pub fn bands(annotations: &[Annotation], periods: &[String], lang: Lang) -> Vec<Band> {
    annotations
        .iter()
        .filter_map(|a| {
            let touched: Vec<usize> = periods
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    days_of(p).is_some_and(|(first, last)| first <= a.to && a.from <= last)
                })
                .map(|(i, _)| i)
                .collect();
            Some(Band {
                first: *touched.first()?,
                last: *touched.last()?,
                label: a.label.get(lang).to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_olympics_cover_july_and_august_or_their_days() {
        let months: Vec<String> = ["2024-06", "2024-07", "2024-08", "2024-09"]
            .map(String::from)
            .to_vec();
        let bands = bands(&built_in(), &months, Lang::Fr);
        assert_eq!(bands[0].first, 1);
        assert_eq!(bands[0].last, 2);
        assert_eq!(bands[0].label, "Jeux olympiques de Paris 2024");
        assert_eq!((bands[1].first, bands[1].last), (2, 3), "the Paralympics");
        let days: Vec<String> = ["2024-07-25", "2024-07-26", "2024-07-27"]
            .map(String::from)
            .to_vec();
        let olympics = &bands_of(&days)[0];
        assert_eq!((olympics.first, olympics.last), (1, 2));
        assert!(super::bands(&built_in(), &["2023-01".to_owned()], Lang::Fr).is_empty());
    }

    fn bands_of(days: &[String]) -> Vec<Band> {
        bands(&built_in(), days, Lang::En)
    }

    #[test]
    fn an_operators_file_adds_its_events_and_refuses_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.toml");
        std::fs::write(
            &path,
            "[[annotation]]\nfrom = 2024-09-02\nto = 2024-09-06\nfr = \"Rentrée\"\n",
        )
        .unwrap();
        let all = load(Some(&path)).unwrap();
        assert_eq!(all.len(), 3);
        assert!(all.iter().any(|a| a.label.fr == "Rentrée"));
        std::fs::write(
            &path,
            "[[annotation]]\nfrom = 2024-09-06\nto = 2024-09-02\nfr = \"x\"\n",
        )
        .unwrap();
        assert!(load(Some(&path)).unwrap_err().to_string().contains("ends"));
    }
}
