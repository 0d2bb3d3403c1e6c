//! Frozen reports on disk. A closed month's report, for one scope (the federation or a server)
//! and one language, is a series of immutable revisions:
//!
//! ```text
//! {dir}/{scope}/{month}/{lang}/r0001-{digest}/report.pdf, report.xlsx, ..., manifest.json
//!                              r0002-{digest}/...   (a late record changed a figure)
//!                              checked.json          (the last data checked against the newest)
//! ```
//!
//! A revision is written in a temporary directory, synced, then renamed into place: a process
//! killed mid-write or a full disk leaves no partial revision (the temporary directory is
//! swept on the next write). Its manifest holds the SHA-256 of every file, checked when it is
//! read back: a file changed on disk is refused, never served. Nothing here overwrites or
//! deletes a revision.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::files::RenderedReport;
use super::{CellChange, MonthlyReport, ReportError};
use crate::i18n::Lang;

/// Which report: its scope, month and language.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    /// The server of a scoped principal; `None`: the whole federation.
    pub scope: Option<String>,
    pub month: String,
    pub lang: Lang,
}

/// What a revision holds, beside its files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub month: String,
    pub server: Option<String>,
    pub lang: String,
    pub revision: u32,
    /// `MonthlyReport::digest`: the same for the same figures.
    pub digest: String,
    /// When it was frozen (RFC 3339).
    pub frozen_at: String,
    /// The data it was counted from (`QueryService::months_digest` of the months it reads,
    /// with the events), when the rollups answered: while it is unchanged, the stored files
    /// are served without recounting.
    pub data: Option<String>,
    pub lake_version: Option<u64>,
    pub mxpulse: String,
    /// Every cell (`MonthlyReport::values`), for the next revision to say what changed.
    pub values: BTreeMap<String, String>,
    /// What changed since the previous revision.
    pub changes: Vec<CellChange>,
    /// SHA-256 (hex) of each file.
    pub files: BTreeMap<String, String>,
}

/// A stored revision.
#[derive(Clone, Debug)]
pub struct Frozen {
    pub manifest: Manifest,
    pub dir: PathBuf,
    /// Data found unchanged in this revision's figures since it was frozen (`checked.json`).
    pub checked: Option<String>,
}

impl Frozen {
    /// Whether `data` is what this revision was counted from, or was since found to give the
    /// same report.
    pub fn counted_from(&self, data: Option<&str>) -> bool {
        data.is_some() && (self.manifest.data.as_deref() == data || self.checked.as_deref() == data)
    }
}

#[derive(Serialize, Deserialize)]
struct Checked {
    revision: u32,
    data: String,
}

/// A directory name for a scope: the server name as is when it is a plain DNS name, else its
/// safe characters and a hash (never a path outside the store, never two scopes in one).
pub fn safe_name(name: &str) -> String {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if plain {
        return name.to_owned();
    }
    let kept: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(40)
        .collect();
    format!(
        "{kept}~{}",
        &hex::encode(Sha256::digest(name.as_bytes()))[..12]
    )
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The frozen reports under one directory.
#[derive(Clone, Debug)]
pub struct ReportStore {
    root: PathBuf,
}

impl ReportStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
        move |source| ReportError::Store {
            path: path.to_owned(),
            source,
        }
    }

    fn series_dir(&self, key: &SeriesKey) -> PathBuf {
        let scope = key.scope.as_deref().map_or_else(
            || "federation".to_owned(),
            |s| format!("server-{}", safe_name(s)),
        );
        self.root
            .join(scope)
            .join(safe_name(&key.month))
            .join(key.lang.code())
    }

    /// The revisions of a series, oldest first.
    pub fn revisions(&self, key: &SeriesKey) -> Result<Vec<(u32, PathBuf)>, ReportError> {
        let dir = self.series_dir(key);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io(&dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Self::io(&dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let number = name
                .strip_prefix('r')
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(n, _)| n.parse::<u32>().ok());
            if let Some(number) = number {
                out.push((number, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The newest revision of a series, if it was frozen.
    pub fn latest(&self, key: &SeriesKey) -> Result<Option<Frozen>, ReportError> {
        let Some((_, dir)) = self.revisions(key)?.pop() else {
            return Ok(None);
        };
        let path = dir.join("manifest.json");
        let text = std::fs::read(&path).map_err(Self::io(&path))?;
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| ReportError::Store {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let checked = std::fs::read(self.series_dir(key).join("checked.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Checked>(&bytes).ok())
            .filter(|c| c.revision == manifest.revision)
            .map(|c| c.data);
        Ok(Some(Frozen {
            manifest,
            dir,
            checked,
        }))
    }

    /// A revision's files, each checked against its manifest's SHA-256.
    pub fn load(&self, frozen: &Frozen) -> Result<RenderedReport, ReportError> {
        let mut files = BTreeMap::new();
        for (name, expected) in &frozen.manifest.files {
            let path = frozen.dir.join(name);
            let bytes = std::fs::read(&path).map_err(Self::io(&path))?;
            if sha256(&bytes) != *expected {
                return Err(ReportError::Store {
                    path,
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the file differs from its frozen digest",
                    ),
                });
            }
            files.insert(name.clone(), bytes);
        }
        Ok(RenderedReport { files })
    }

    /// Records that `data` gives the same report as `frozen` (a change elsewhere in the lake):
    /// the next request serves it without recounting. A small file beside the revisions,
    /// replaced atomically; losing it costs one recount.
    pub fn mark_checked(&self, key: &SeriesKey, frozen: &Frozen, data: &str) {
        let dir = self.series_dir(key);
        let checked = Checked {
            revision: frozen.manifest.revision,
            data: data.to_owned(),
        };
        let write = || -> std::io::Result<()> {
            let tmp = dir.join(format!(".checked-{}.tmp", std::process::id()));
            std::fs::write(&tmp, serde_json::to_vec(&checked)?)?;
            std::fs::rename(&tmp, dir.join("checked.json"))
        };
        if let Err(e) = write() {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot record a checked report");
        }
    }

    /// Stores `report` (its `revision` set) and its files as the series' next revision.
    pub fn freeze(
        &self,
        key: &SeriesKey,
        report: &MonthlyReport,
        rendered: &RenderedReport,
        data: Option<String>,
    ) -> Result<Frozen, ReportError> {
        let revision = report.revision.clone().unwrap_or_default();
        let dir = self.series_dir(key);
        std::fs::create_dir_all(&dir).map_err(Self::io(&dir))?;
        sweep_temporary(&dir);
        let digest = report.digest();
        let manifest = Manifest {
            month: report.month.clone(),
            server: report.server.clone(),
            lang: report.lang.code().to_owned(),
            revision: revision.number,
            digest: digest.clone(),
            frozen_at: report.generated_at.clone(),
            data,
            lake_version: report.lake_version,
            mxpulse: env!("CARGO_PKG_VERSION").to_owned(),
            values: report.values(),
            changes: revision.changes.clone(),
            files: rendered
                .files
                .iter()
                .map(|(name, bytes)| (name.clone(), sha256(bytes)))
                .collect(),
        };
        let tmp = dir.join(format!(".tmp-{}-{digest}", std::process::id()));
        let written = write_revision(&tmp, &manifest, rendered);
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(Self::io(&tmp)(e));
        }
        let target = dir.join(format!("r{:04}-{digest}", revision.number));
        if let Err(e) = std::fs::rename(&tmp, &target) {
            let _ = std::fs::remove_dir_all(&tmp);
            // Another writer froze this revision first: keep theirs.
            if target.join("manifest.json").exists() {
                return self.latest(key)?.ok_or_else(|| Self::io(&target)(e));
            }
            return Err(Self::io(&target)(e));
        }
        sync_dir(&dir).map_err(Self::io(&dir))?;
        Ok(Frozen {
            manifest,
            dir: target,
            checked: None,
        })
    }
}

/// Every file, synced, then the manifest last, then the directory.
fn write_revision(
    dir: &Path,
    manifest: &Manifest,
    rendered: &RenderedReport,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let write = |name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::File::create(&path)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    for (name, bytes) in &rendered.files {
        write(name, bytes)?;
    }
    write("manifest.json", &serde_json::to_vec_pretty(manifest)?)?;
    if dir.join(super::files::CHARTS).exists() {
        sync_dir(&dir.join(super::files::CHARTS))?;
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Removes what an interrupted write left (`.tmp-*` directories).
fn sweep_temporary(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Revision;
    use crate::report::tests::sample;

    fn key() -> SeriesKey {
        SeriesKey {
            scope: None,
            month: "2024-07".into(),
            lang: Lang::Fr,
        }
    }

    fn rendered(text: &str) -> RenderedReport {
        RenderedReport {
            files: [
                ("report.pdf".to_owned(), text.as_bytes().to_vec()),
                ("charts/messages.png".to_owned(), b"png".to_vec()),
            ]
            .into(),
        }
    }

    #[test]
    fn revisions_stack_up_and_a_changed_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReportStore::new(dir.path());
        assert!(store.latest(&key()).unwrap().is_none());
        let mut report = sample(Lang::Fr);
        report.revision = Some(Revision {
            number: 1,
            ..Default::default()
        });
        // An interrupted write's leftovers are swept, never read as a revision.
        let series = store.series_dir(&key());
        std::fs::create_dir_all(series.join(".tmp-1-dead")).unwrap();
        let first = store
            .freeze(&key(), &report, &rendered("one"), Some("data-1".into()))
            .unwrap();
        assert!(!series.join(".tmp-1-dead").exists());
        assert_eq!(first.manifest.revision, 1);
        let latest = store.latest(&key()).unwrap().unwrap();
        assert!(latest.counted_from(Some("data-1")));
        assert!(!latest.counted_from(Some("data-2")) && !latest.counted_from(None));
        assert_eq!(store.load(&latest).unwrap(), rendered("one"));

        store.mark_checked(&key(), &latest, "data-2");
        assert!(
            store
                .latest(&key())
                .unwrap()
                .unwrap()
                .counted_from(Some("data-2"))
        );

        report.tables[0].table.rows[0].1[0] = crate::panel::Value::Number(1.0);
        report.revision = Some(Revision {
            number: 2,
            replaces: Some(first.manifest.frozen_at.clone()),
            changes: report.changes_since(&first.manifest.values),
        });
        store
            .freeze(&key(), &report, &rendered("two"), Some("data-3".into()))
            .unwrap();
        let latest = store.latest(&key()).unwrap().unwrap();
        assert_eq!(latest.manifest.revision, 2);
        assert_eq!(latest.manifest.changes.len(), 1);
        assert_eq!(latest.checked, None, "a check was of the older revision");
        assert_eq!(store.revisions(&key()).unwrap().len(), 2);
        // The first revision is still there, unchanged.
        assert_eq!(std::fs::read(first.dir.join("report.pdf")).unwrap(), b"one");

        std::fs::write(latest.dir.join("report.pdf"), b"tampered").unwrap();
        assert!(matches!(
            store.load(&latest),
            Err(ReportError::Store { .. })
        ));
    }

    #[test]
    fn a_scope_is_a_plain_directory_name() {
        assert_eq!(
            safe_name("agriculture.tchap.gouv.fr"),
            "agriculture.tchap.gouv.fr"
        );
        for hostile in ["../etc", "a/b", ".", "..", "", "x\u{0}y"] {
            let name = safe_name(hostile);
            assert!(
                !name.contains('/') && !name.starts_with('.'),
                "{hostile:?} → {name}"
            );
        }
        assert_ne!(safe_name("a/b"), safe_name("a_b"));
    }
}
