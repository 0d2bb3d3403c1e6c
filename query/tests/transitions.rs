//! The move to Tchap X, counted (docs/design.md §5): active users by client family and the
//! client moves, over a lake whose visits table was written by hooks of schema version 1
//! (no family column) before version 2 visits joined it. Every value below was worked out by
//! hand (k = 3, no noise); the raw tables and the rollups must both give it.

mod golden;

use std::time::Duration;

use chrono::NaiveDate;
use golden::{A, B};
use mxpulse_ingest::LakeRoot;
use mxpulse_ingest::rollup::{self, RollupConfig, RollupMode};
use mxpulse_query::figures::planner;
use mxpulse_query::figures::rollup::index::IndexCache;
use mxpulse_query::figures::{FigureCell, FigureRequest, FigureSource, Filters, Granularity};
use mxpulse_query::lake::LakeSnapshot;
use mxpulse_query::session::{Limits, Publication};
use mxpulse_schemas::vocabulary::{Client, Platform};
use mxpulse_schemas::{KeyId, Record, SchemaVersion, UserPseudonym, VisitRecord};

const TZ: &str = "Europe/Paris";
const DOMAIN: &str = "interieur.gouv.fr";

fn visit(
    user: u64,
    server: &str,
    day: (u32, u32),
    platform: Platform,
    family: Option<&str>,
) -> VisitRecord {
    VisitRecord {
        v: if family.is_some() {
            SchemaVersion::V2
        } else {
            SchemaVersion::V1
        },
        key_id: KeyId([1, 2, 3, 4]),
        day: NaiveDate::from_ymd_opt(2024, day.0, day.1).unwrap(),
        server: server.into(),
        user: UserPseudonym(user),
        device: None,
        domain: Some(DOMAIN.into()),
        platform,
        client: Client::Tchap,
        family: family.map(|f| f.parse().unwrap()),
    }
}

/// The hand-worked story, server A unless said:
/// - users 1-4 on classic Android in May; in June 1-3 only on Tchap X Android (moved), user 4
///   on both (not moved, counted on both);
/// - users 5-7 on Tchap X iOS in May, back on classic iOS only in June (moved back);
/// - user 8 on a version 1 visit in June (family unknown), user 12 on classic iOS in May only;
/// - users 9-11 on the web in June (no move either way);
/// - on server B, users 21-23 move from NEO to Tchap X in June too; user 24, seen on NEO in
///   May and on Tchap X on 1 July only, moved in neither month (not seen in June).
fn story() -> (Vec<VisitRecord>, Vec<VisitRecord>) {
    use Platform::*;
    let mut v1 = Vec::new();
    let mut v2 = Vec::new();
    for user in 1..=4 {
        v1.push(visit(user, A, (5, 10), Android, None));
        v2.push(visit(user, A, (5, 20), Android, Some("tchap_android")));
        v2.push(visit(user, A, (6, 12), Android, Some("tchap_x_android")));
    }
    v2.push(visit(4, A, (6, 15), Android, Some("tchap_android")));
    for user in 5..=7 {
        v2.push(visit(user, A, (5, 3), Ios, Some("tchap_x_ios")));
        v2.push(visit(user, A, (6, 3), Ios, Some("tchap_ios")));
    }
    v1.push(visit(8, A, (6, 9), Android, None));
    for user in 9..=11 {
        v2.push(visit(user, A, (6, 20), Web, Some("web")));
    }
    v2.push(visit(12, A, (5, 30), Ios, Some("tchap_ios")));
    for user in 21..=24 {
        v2.push(visit(user, B, (5, 31), Android, Some("tchap_neo")));
    }
    for user in 21..=23 {
        v2.push(visit(user, B, (6, 30), Android, Some("tchap_x_android")));
    }
    v2.push(visit(24, B, (7, 1), Android, Some("tchap_x_android")));
    (v1, v2)
}

/// A visits table as hooks of version 1 created it (no family column), then the version 2
/// visits written through the ingest's own table opening, which adds the column.
async fn write_lake(root: &LakeRoot) {
    let (v1, v2) = story();
    let batch = VisitRecord::to_record_batch(&v1).unwrap();
    let mut old = batch.clone();
    old.remove_column(batch.schema().index_of("family").unwrap());
    let spec = mxpulse_ingest::lake::TableSpec {
        name: "visits",
        schema: old.schema(),
        partition_columns: &["day"],
        configuration: Vec::new(),
    };
    let table = mxpulse_ingest::lake::open_or_create_at(root.table_url::<VisitRecord>(), &spec)
        .await
        .unwrap();
    table
        .write(vec![old])
        .with_partition_columns(["day"])
        .await
        .unwrap();
    golden::write(root, &v2).await;
}

fn request(filters: Filters) -> FigureRequest {
    FigureRequest {
        granularity: Granularity::Month,
        only: Vec::new(),
        filters,
        breakdowns: vec![
            mxpulse_query::figures::definitions::Dim::Server,
            mxpulse_query::figures::definitions::Dim::Family,
        ],
        from: "2024-06".into(),
        to: "2024-07".into(),
    }
}

async fn answer(root: &LakeRoot, request: &FigureRequest, source: FigureSource) -> Vec<FigureCell> {
    let snapshot = LakeSnapshot::load(root.url()).await.unwrap();
    let cells = IndexCache::default();
    let with = planner::Answering {
        snapshot: &snapshot,
        cells: &cells,
        publication: &Publication {
            timezone: TZ.into(),
            min_users: 3,
            // Exact counts: the hand-worked values are published unmoved.
            noise: 0,
        },
        limits: &Limits {
            memory_bytes: 256 << 20,
            timeout: Duration::from_secs(60),
            max_rows: 10_000,
        },
    };
    let report = planner::figures(&with, request, None, source)
        .await
        .unwrap_or_else(|e| panic!("{source:?}: {e}"));
    report.cells
}

fn value(
    cells: &[FigureCell],
    figure: &str,
    period: &str,
    breakdown: &str,
    key: Option<&str>,
) -> Option<f64> {
    cells
        .iter()
        .find(|c| {
            c.figure == figure
                && c.period == period
                && c.breakdown == breakdown
                && c.key.as_deref() == key
        })
        .unwrap_or_else(|| panic!("no cell {figure} {period} {breakdown} {key:?}"))
        .value
}

#[tokio::test(flavor = "multi_thread")]
async fn the_move_to_tchap_x_is_counted_alike_from_raw_and_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let root = LakeRoot::parse(&dir.path().display().to_string()).unwrap();
    write_lake(&root).await;
    let config = RollupConfig {
        timezone: TZ.into(),
    };
    rollup::run(&root, &config, RollupMode::Incremental)
        .await
        .unwrap();

    let everything = request(Filters::default());
    let raw = answer(&root, &everything, FigureSource::Raw).await;
    let rolled = answer(&root, &everything, FigureSource::Rollups).await;
    assert_eq!(rolled, raw, "rollups equal raw");

    let v = |figure, breakdown, key| value(&raw, figure, "2024-06", breakdown, key);
    // June: users 1-11 on A and 21-23 on B.
    assert_eq!(v("active_users", "total", None), Some(14.0));
    // By family: Tchap X Android 1-4 and 21-23; classic Android user 4 alone (withheld);
    // classic iOS 5-7; the web 9-11; the version 1 visit of user 8 is `unknown`, withheld.
    let family = |key| v("active_users", "family", Some(key));
    assert_eq!(family("tchap_x_android"), Some(7.0));
    assert_eq!(family("tchap_android"), None);
    assert_eq!(family("tchap_ios"), Some(3.0));
    assert_eq!(family("web"), Some(3.0));
    assert_eq!(family("unknown"), None);
    // The moves: 1-3 and 21-23 to Tchap X; 5-7 back to the classic app; user 4 on both.
    assert_eq!(v("client_moves_to_x", "total", None), Some(6.0));
    assert_eq!(v("client_moves_to_x", "server", Some(A)), Some(3.0));
    assert_eq!(v("client_moves_to_x", "server", Some(B)), Some(3.0));
    assert_eq!(v("client_moves_to_classic", "total", None), Some(3.0));
    assert_eq!(v("clients_both", "total", None), None, "user 4 alone");
    // Nobody moved in July: withheld like a small count, never a zero.
    assert_eq!(
        value(&raw, "client_moves_to_x", "2024-07", "total", None),
        None
    );

    // A family filter narrows the figures to visits; the moves are not by family.
    let filtered = request(Filters {
        family: Some("tchap_x_android".into()),
        ..Filters::default()
    });
    let raw = answer(&root, &filtered, FigureSource::Raw).await;
    assert_eq!(answer(&root, &filtered, FigureSource::Rollups).await, raw);
    assert_eq!(
        value(&raw, "active_users", "2024-06", "server", Some(A)),
        Some(4.0)
    );
    assert_eq!(
        value(&raw, "active_users", "2024-06", "server", Some(B)),
        Some(3.0)
    );
    assert!(
        raw.iter().all(|c| c.figure == "active_users"),
        "visits' figures only"
    );

    // The version 1 rows read as they were written: a family column, null, counted unknown.
    let snapshot = LakeSnapshot::load(root.url()).await.unwrap();
    let ctx = mxpulse_query::session::session(
        &snapshot,
        &mxpulse_query::session::Scope {
            server: None,
            pseudonyms: true,
        },
        &Limits {
            memory_bytes: 256 << 20,
            timeout: Duration::from_secs(60),
            max_rows: 10_000,
        },
        None,
    )
    .await
    .unwrap();
    let rows = ctx
        .sql("SELECT count(*) FROM visits WHERE family IS NULL AND v = 1")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let nulls = datafusion::arrow::array::AsArray::as_primitive::<
        datafusion::arrow::datatypes::Int64Type,
    >(rows[0].column(0))
    .value(0);
    assert_eq!(nulls, 5);
}

/// Rollups written before the client family (a cube of version 1: no `family` column, no cube
/// version) are recounted by the next run, even one that finds no raw change: else a request
/// by family would find no cell where the raw tables have people.
#[tokio::test(flavor = "multi_thread")]
async fn rollups_of_an_older_cube_are_recounted_with_the_family() {
    use deltalake::kernel::Transaction;
    use deltalake::kernel::transaction::CommitProperties;
    use mxpulse_query::figures::rollup::{
        CELLS_TABLE, MONTH_COLUMN, TIMEZONE_KEY, cells_schema, watermark_app_id,
    };

    let dir = tempfile::tempdir().unwrap();
    let root = LakeRoot::parse(&dir.path().display().to_string()).unwrap();
    write_lake(&root).await;
    // The rollups as version 1 left them: every raw version held, one (stale) cell.
    let visits = mxpulse_ingest::lake::open_or_create::<VisitRecord>(&root)
        .await
        .unwrap();
    let events = mxpulse_ingest::lake::open_or_create::<mxpulse_schemas::EventRecord>(&root)
        .await
        .unwrap();
    let accounts = mxpulse_ingest::lake::open_or_create::<mxpulse_schemas::AccountRecord>(&root)
        .await
        .unwrap();
    let full = cells_schema();
    let old_fields: Vec<_> = full
        .fields()
        .iter()
        .filter(|f| f.name() != "family")
        .cloned()
        .collect();
    let old_schema = std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(old_fields));
    let spec = mxpulse_ingest::lake::TableSpec {
        name: CELLS_TABLE,
        schema: old_schema.clone(),
        partition_columns: &[MONTH_COLUMN],
        configuration: vec![(TIMEZONE_KEY, TZ.to_owned())],
    };
    let cells = mxpulse_ingest::lake::open_or_create_at(
        mxpulse_ingest::lake::table_url_at(&root, CELLS_TABLE),
        &spec,
    )
    .await
    .unwrap();
    use datafusion::arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray};
    let text = |v: Option<&str>| std::sync::Arc::new(StringArray::from(vec![v])) as ArrayRef;
    let stale = datafusion::arrow::array::RecordBatch::try_new(
        old_schema,
        vec![
            text(Some("2024-06")),
            text(Some("month")),
            text(Some("2024-06")),
            text(Some("active_users")),
            std::sync::Arc::new(Int32Array::from(vec![0])),
            text(None),
            text(None),
            text(None),
            std::sync::Arc::new(Float64Array::from(vec![999.0])),
            std::sync::Arc::new(Int64Array::from(vec![999])),
            std::sync::Arc::new(Int64Array::from(vec![0])),
        ],
    )
    .unwrap();
    let versions = [
        ("events", events.version().unwrap_or(0) as i64),
        ("visits", visits.version().unwrap_or(0) as i64),
        ("accounts", accounts.version().unwrap_or(0) as i64),
    ];
    cells
        .write(vec![stale])
        .with_partition_columns([MONTH_COLUMN])
        .with_commit_properties(
            CommitProperties::default().with_application_transactions(
                versions
                    .iter()
                    .map(|(table, version)| Transaction::new(watermark_app_id(table), *version))
                    .collect(),
            ),
        )
        .await
        .unwrap();

    let config = RollupConfig {
        timezone: TZ.into(),
    };
    let report = rollup::run(&root, &config, RollupMode::Incremental)
        .await
        .unwrap();
    assert!(report.months.contains(&"2024-06".to_owned()), "{report:?}");
    let everything = request(Filters::default());
    let rolled = answer(&root, &everything, FigureSource::Rollups).await;
    assert_eq!(
        value(&rolled, "active_users", "2024-06", "total", None),
        Some(14.0)
    );
    assert_eq!(
        value(
            &rolled,
            "active_users",
            "2024-06",
            "family",
            Some("tchap_x_android")
        ),
        Some(7.0)
    );
    assert_eq!(rolled, answer(&root, &everything, FigureSource::Raw).await);
    // Recounted once: the next run has nothing to do.
    let again = rollup::run(&root, &config, RollupMode::Incremental)
        .await
        .unwrap();
    assert!(again.months.is_empty(), "{again:?}");
}
