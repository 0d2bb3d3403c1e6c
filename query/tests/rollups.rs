//! Rollups equal raw: over the golden lake (`golden/`), every request shape (monthly and
//! daily, every filter and combination of filters, a server's scope, breakdowns or none) is
//! answered identically from the rollups and from the raw tables, and stays so after late
//! records for an old day (including a room's kind changing weeks after its creation), a
//! repeat delivered again through the ingest's sink, a compaction and a purge (after which
//! the purged months' figures are unchanged, though the raw tables lost them). Incremental
//! runs leave the rollup tables exactly as a rebuild does.

mod golden;

use std::time::Duration;

use chrono::NaiveDate;
use golden::{A, B, Events, ms, visit, write, write_lake};
use mxpulse_ingest::LakeRoot;
use mxpulse_ingest::rollup::{self, RollupConfig, RollupMode, RollupReport};
use mxpulse_query::figures::planner;
use mxpulse_query::figures::rollup::index::IndexCache;
use mxpulse_query::figures::{
    Dim, FigureCell, FigureRequest, FigureSource, Filters, ForumRank, Granularity,
};
use mxpulse_query::lake::LakeSnapshot;
use mxpulse_query::session::{Limits, Publication};
use mxpulse_schemas::vocabulary::{EventType, Membership, MsgType, Platform};
use mxpulse_schemas::{EventPseudonym, UserPseudonym};

const TZ: &str = "Europe/Paris";

fn config() -> RollupConfig {
    RollupConfig {
        timezone: TZ.into(),
    }
}

fn publication() -> Publication {
    Publication {
        timezone: TZ.into(),
        min_users: 3,
        noise: 2,
    }
}

fn limits() -> Limits {
    Limits {
        memory_bytes: 256 << 20,
        timeout: Duration::from_secs(60),
        max_rows: 10_000,
    }
}

async fn rollup(root: &LakeRoot, mode: RollupMode) -> RollupReport {
    rollup::run(root, &config(), mode).await.unwrap()
}

fn filters(server: Option<&str>, domain: Option<&str>, platform: Option<&str>) -> Filters {
    Filters {
        server: server.map(str::to_owned),
        domain: domain.map(str::to_owned),
        platform: platform.map(str::to_owned),
        family: None,
    }
}

/// Every request shape over the golden lake's periods (`all`), or a few that touch every
/// figure, breakdown and period.
fn requests(all: bool) -> Vec<FigureRequest> {
    let filter_sets = [
        filters(None, None, None),
        filters(Some(A), None, None),
        filters(Some(B), None, None),
        filters(None, Some("interieur.gouv.fr"), None),
        filters(None, Some("finances.gouv.fr"), None),
        filters(None, None, Some("web")),
        filters(None, None, Some("android")),
        filters(Some(A), Some("interieur.gouv.fr"), None),
        filters(Some(A), None, Some("web")),
        filters(None, Some("interieur.gouv.fr"), Some("android")),
        filters(Some(B), Some("interieur.gouv.fr"), None),
        filters(Some("nowhere.example"), None, None),
    ];
    let filter_sets = if all {
        &filter_sets[..]
    } else {
        &filter_sets[..2]
    };
    let mut requests = Vec::new();
    for filters in filter_sets {
        for (granularity, from, to) in [
            (Granularity::Month, "2023-04", "2024-07"),
            (Granularity::Day, "2024-04-28", "2024-06-05"),
        ] {
            requests.push(FigureRequest {
                filters: filters.clone(),
                ..FigureRequest::new(granularity, from, to)
            });
        }
    }
    requests.push(FigureRequest {
        breakdowns: Vec::new(),
        ..FigureRequest::new(Granularity::Month, "2024-05", "2024-05")
    });
    requests.push(FigureRequest {
        breakdowns: vec![Dim::Platform],
        only: vec!["active_users".into(), "r30_users".into()],
        ..FigureRequest::new(Granularity::Month, "2024-01", "2024-06")
    });
    requests
}

async fn answer(
    snapshot: &LakeSnapshot,
    request: &FigureRequest,
    scope: Option<&str>,
    source: FigureSource,
) -> Vec<FigureCell> {
    answer_as(snapshot, request, scope, source, &publication()).await
}

/// `answer` under `publication`'s rule.
async fn answer_as(
    snapshot: &LakeSnapshot,
    request: &FigureRequest,
    scope: Option<&str>,
    source: FigureSource,
    publication: &Publication,
) -> Vec<FigureCell> {
    let cells = IndexCache::default();
    let with = planner::Answering {
        snapshot,
        cells: &cells,
        publication,
        limits: &limits(),
    };
    let report = planner::figures(&with, request, scope, source)
        .await
        .unwrap_or_else(|e| panic!("{source:?} {scope:?} {request:?}: {e}"));
    assert_eq!(report.source, source);
    report.cells
}

async fn forums(
    snapshot: &LakeSnapshot,
    scope: Option<&str>,
    source: FigureSource,
) -> Vec<ForumRank> {
    let cells = IndexCache::default();
    let with = planner::Answering {
        snapshot,
        cells: &cells,
        publication: &publication(),
        limits: &limits(),
    };
    planner::forums(&with, 10, scope, source).await.unwrap()
}

/// Every answer from the rollups, by request and scope.
async fn rolled_answers(root: &LakeRoot) -> Vec<Vec<FigureCell>> {
    let snapshot = LakeSnapshot::load(root.url()).await.unwrap();
    let mut out = Vec::new();
    for scope in [None, Some(A)] {
        for request in requests(true) {
            out.push(answer(&snapshot, &request, scope, FigureSource::Rollups).await);
        }
    }
    out
}

async fn assert_rollups_equal_raw(root: &LakeRoot, context: &str, all: bool) {
    let snapshot = LakeSnapshot::load(root.url()).await.unwrap();
    let mut cells = 0;
    for scope in [None, Some(A)] {
        for request in requests(all) {
            let raw = answer(&snapshot, &request, scope, FigureSource::Raw).await;
            let rolled = answer(&snapshot, &request, scope, FigureSource::Rollups).await;
            assert_eq!(rolled, raw, "{context}: {scope:?} {request:?}");
            cells += raw.len();
        }
        assert_eq!(
            forums(&snapshot, scope, FigureSource::Rollups).await,
            forums(&snapshot, scope, FigureSource::Raw).await,
            "{context}: forums {scope:?}"
        );
    }
    assert!(
        cells > 200,
        "{context}: the requests have cells to compare ({cells})"
    );
}

fn lake() -> (tempfile::TempDir, LakeRoot) {
    let dir = tempfile::tempdir().unwrap();
    let root = LakeRoot::parse(&dir.path().display().to_string()).unwrap();
    (dir, root)
}

/// A late event with its own identity (the golden events are numbered from 1).
fn late(
    events: &mut Events,
    id: u128,
    sender: u64,
    room: u64,
    at: mxpulse_schemas::UnixMillis,
    event_type: EventType,
    edit: impl FnOnce(&mut mxpulse_schemas::EventRecord),
) {
    events.add(sender, room, at, event_type, |r| {
        r.event = EventPseudonym(id);
        edit(r)
    });
}

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rollups_equal_raw_through_late_records_repeats_compaction_and_purge() {
    let (_dir, root) = lake();
    write_lake(&root).await;
    let first = rollup(&root, RollupMode::Incremental).await;
    assert!(first.months.contains(&"2024-05".to_owned()), "{first:?}");
    assert_rollups_equal_raw(&root, "first run", true).await;

    // Late records: members joining the forum (room 202, created in May) on 10 May, a visit
    // and a message for May 2023.
    let mut e = Events(Vec::new());
    for (i, user) in [1u64, 2, 3, 4].into_iter().enumerate() {
        late(
            &mut e,
            1000 + i as u128,
            user,
            202,
            ms(2024, 5, 10, 9, 0),
            EventType::RoomMember,
            |r| {
                r.membership = Some(Membership::Join);
                r.target = Some(UserPseudonym(user))
            },
        );
    }
    late(
        &mut e,
        1010,
        1,
        100,
        ms(2023, 5, 10, 9, 0),
        EventType::RoomMessage,
        |r| r.msgtype = Some(MsgType::Text),
    );
    write(&root, &e.0).await;
    write(
        &root,
        &[visit(
            7,
            A,
            "interieur.gouv.fr",
            (2023, 5, 11),
            Platform::Web,
        )],
    )
    .await;
    let late_run = rollup(&root, RollupMode::Incremental).await;
    assert!(
        late_run.months.contains(&"2023-05".to_owned()),
        "a late day recounts its month: {late_run:?}"
    );
    assert!(
        !late_run.months.contains(&"2023-11".to_owned()),
        "{late_run:?}"
    );
    assert_rollups_equal_raw(&root, "late records", false).await;
    let snapshot = LakeSnapshot::load(root.url()).await.unwrap();
    assert_eq!(
        forums(&snapshot, None, FigureSource::Rollups).await.len(),
        1,
        "the forum now has 4 members"
    );

    // Weeks later, the forum is encrypted: it becomes a private room, and May's rooms change
    // though no May day did.
    let mut e = Events(Vec::new());
    late(
        &mut e,
        1020,
        2,
        202,
        ms(2024, 6, 20, 9, 0),
        EventType::RoomEncryption,
        |r| r.encrypted = Some(true),
    );
    write(&root, &e.0).await;
    let kind_run = rollup(&root, RollupMode::Incremental).await;
    assert!(
        kind_run.months.contains(&"2024-05".to_owned()),
        "{kind_run:?}"
    );
    assert_eq!(kind_run.rooms_changed, 1, "{kind_run:?}");
    assert_rollups_equal_raw(&root, "a room's kind changed", true).await;
    let snapshot = LakeSnapshot::load(root.url()).await.unwrap();
    assert!(
        forums(&snapshot, None, FigureSource::Rollups)
            .await
            .is_empty()
    );

    // A repeat through the ingest's sink: dropped by identity, an empty commit.
    let mut events = mxpulse_ingest::lake::open_or_create::<mxpulse_schemas::EventRecord>(&root)
        .await
        .unwrap();
    events.update_state().await.unwrap();
    let mut sink =
        mxpulse_ingest::TableSink::<mxpulse_schemas::EventRecord>::new(events, "test", 8);
    let envelope = mxpulse_schemas::encode(&e.0[0]);
    let admitted = sink
        .admit(
            0,
            mxpulse_ingest::offsets::Offset(0),
            None,
            Some(envelope.key.0.as_bytes()),
            &envelope.payload,
        )
        .await
        .unwrap();
    assert_eq!(admitted, mxpulse_ingest::Admission::Buffered);
    let commit = sink.flush().await.unwrap().unwrap();
    assert_eq!((commit.rows, commit.repeats), (0, 1), "{commit:?}");
    let repeat_run = rollup(&root, RollupMode::Incremental).await;
    assert!(repeat_run.months.is_empty(), "{repeat_run:?}");
    assert_rollups_equal_raw(&root, "a repeat", false).await;

    // Compaction rewrites files without changing a day: nothing to recount.
    mxpulse_ingest::maintenance::compact(&root).await.unwrap();
    let compact_run = rollup(&root, RollupMode::Incremental).await;
    assert!(compact_run.months.is_empty(), "{compact_run:?}");
    assert_rollups_equal_raw(&root, "compaction", false).await;

    // Purge the raw records before 15 May 2024: the rollups' answers do not change.
    let before = rolled_answers(&root).await;
    let purged = mxpulse_ingest::maintenance::purge(&root, &config(), day("2024-05-15"))
        .await
        .unwrap();
    assert!(
        purged.tables.iter().any(|t| t.files_removed > 0),
        "{purged:?}"
    );
    let state = rollup::state(&root).await.unwrap().unwrap();
    assert_eq!(state.purged_before, Some(day("2024-05-15")));
    let after_purge = rollup(&root, RollupMode::Incremental).await;
    assert!(
        !after_purge.months.iter().any(|m| m.as_str() <= "2024-05"),
        "purged months are frozen: {after_purge:?}"
    );
    assert_eq!(
        rolled_answers(&root).await,
        before,
        "figures after the purge"
    );
    // The raw tables did lose those months: the rollups are what keeps them.
    let snapshot = LakeSnapshot::load(root.url()).await.unwrap();
    let may = FigureRequest::new(Granularity::Month, "2024-05", "2024-05");
    let total = |cells: &[FigureCell], figure: &str| {
        cells
            .iter()
            .find(|c| c.figure == figure && c.breakdown == "total" && c.period == "2024-05")
            .and_then(|c| c.value)
    };
    let raw_may = answer(&snapshot, &may, None, FigureSource::Raw).await;
    let rolled_may = answer(&snapshot, &may, None, FigureSource::Rollups).await;
    // Published values: the exact 5 users and 4 accounts, moved by at most 2 (noise = 2).
    let near = |value: Option<f64>, exact: f64| value.is_some_and(|v| (v - exact).abs() <= 2.0);
    let rolled_users = total(&rolled_may, "active_users");
    assert!(near(rolled_users, 5.0), "{rolled_users:?}");
    assert_ne!(total(&raw_may, "active_users"), rolled_users, "{raw_may:?}");
    let accounts = total(&rolled_may, "total_active_accounts");
    assert!(near(accounts, 4.0), "{accounts:?}");

    // New days after the purge are counted as before.
    write(
        &root,
        &[
            visit(1, A, "interieur.gouv.fr", (2024, 6, 20), Platform::Web),
            visit(2, A, "interieur.gouv.fr", (2024, 6, 20), Platform::Ios),
            visit(3, A, "interieur.gouv.fr", (2024, 6, 21), Platform::Web),
        ],
    )
    .await;
    let june_run = rollup(&root, RollupMode::Incremental).await;
    assert!(
        june_run.months.contains(&"2024-06".to_owned()),
        "{june_run:?}"
    );
    let snapshot = LakeSnapshot::load(root.url()).await.unwrap();
    let june = FigureRequest::new(Granularity::Day, "2024-06-01", "2024-06-30");
    assert_eq!(
        answer(&snapshot, &june, None, FigureSource::Rollups).await,
        answer(&snapshot, &june, None, FigureSource::Raw).await
    );
    let june_month = FigureRequest::new(Granularity::Month, "2024-06", "2024-06");
    // Counted exactly (noise 0): each person once, whatever their visits.
    let exact = Publication {
        noise: 0,
        ..publication()
    };
    let rolled = answer_as(&snapshot, &june_month, None, FigureSource::Rollups, &exact).await;
    let active = rolled
        .iter()
        .find(|c| c.figure == "active_users" && c.breakdown == "total")
        .unwrap();
    assert_eq!(
        active.value,
        Some(3.0),
        "users 1, 2 (3 and 20 June) and 3: {active:?}"
    );
}

/// The rollup tables' rows, sorted, as text.
async fn table_rows(root: &LakeRoot) -> Vec<String> {
    use deltalake::datafusion::prelude::SessionContext;
    let mut out = Vec::new();
    for path in [
        mxpulse_query::figures::rollup::CELLS_TABLE,
        mxpulse_query::figures::rollup::ROOMS_TABLE,
        mxpulse_query::figures::rollup::FORUM_MEMBERS_TABLE,
    ] {
        let table = mxpulse_query::lake::load_table(root.url(), path)
            .await
            .unwrap()
            .unwrap();
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table("t", table.table_provider().await.unwrap())
            .unwrap();
        let batches = ctx
            .sql("SELECT * FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = deltalake::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        let mut rows: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("| "))
            .skip(1)
            .map(|l| format!("{path} {l}"))
            .collect();
        rows.sort();
        out.extend(rows);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_runs_leave_the_tables_a_rebuild_does() {
    let (_dir, root) = lake();
    let (visits, events, accounts) = golden::lake_data();
    // The golden lake in five deliveries, a rollup run after each.
    let (early, late) = events.split_at(events.len() / 2);
    write(&root, early).await;
    rollup(&root, RollupMode::Incremental).await;
    write(&root, &visits[..visits.len() / 2]).await;
    rollup(&root, RollupMode::Incremental).await;
    write(&root, late).await;
    write(&root, &accounts).await;
    rollup(&root, RollupMode::Incremental).await;
    write(&root, &visits[visits.len() / 2..]).await;
    let last = rollup(&root, RollupMode::Incremental).await;
    assert!(!last.months.is_empty());
    let incremental = table_rows(&root).await;
    assert!(
        incremental.iter().any(|r| r.contains("rollups/rooms")),
        "rooms rolled up"
    );
    assert!(incremental.len() > 150, "{} rows", incremental.len());
    let rebuilt = rollup(&root, RollupMode::Rebuild).await;
    assert!(
        rebuilt.months.contains(&"2023-05".to_owned()),
        "{rebuilt:?}"
    );
    assert_eq!(table_rows(&root).await, incremental);
    assert_rollups_equal_raw(&root, "after five deliveries", true).await;
    let again = rollup(&root, RollupMode::Incremental).await;
    assert!(again.months.is_empty(), "nothing new: {again:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rollups_cut_in_another_time_zone_are_not_used_and_recut_on_rebuild() {
    let (_dir, root) = lake();
    write_lake(&root).await;
    rollup(&root, RollupMode::Incremental).await;
    let utc = RollupConfig {
        timezone: "UTC".into(),
    };
    let err = rollup::run(&root, &utc, RollupMode::Incremental)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--rebuild") && err.contains("Europe/Paris"),
        "{err}"
    );
    // The service counting in UTC answers from the raw tables meanwhile.
    let snapshot = LakeSnapshot::load(root.url()).await.unwrap();
    let in_utc = Publication {
        timezone: "UTC".into(),
        min_users: 3,
        noise: 2,
    };
    let chosen = planner::choose(&snapshot, &in_utc, planner::SourceChoice::Auto).unwrap();
    assert_eq!(chosen, FigureSource::Raw);
    assert!(planner::choose(&snapshot, &in_utc, planner::SourceChoice::Rollups).is_err());
    rollup::run(&root, &utc, RollupMode::Rebuild).await.unwrap();
    let snapshot = LakeSnapshot::load(root.url()).await.unwrap();
    assert_eq!(
        planner::choose(&snapshot, &in_utc, planner::SourceChoice::Auto).unwrap(),
        FigureSource::Rollups
    );
}

/// `forums` under `publication`'s rule.
async fn forums_as(
    snapshot: &LakeSnapshot,
    source: FigureSource,
    publication: &Publication,
) -> Vec<(String, i64)> {
    let cells = IndexCache::default();
    let with = planner::Answering {
        snapshot,
        cells: &cells,
        publication,
        limits: &limits(),
    };
    planner::forums(&with, 10, None, source)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.server, f.members))
        .collect()
}

/// The members of room `room` in the `rooms` view an analyst queries.
async fn members_in_rooms_view(snapshot: &LakeSnapshot, room: u64) -> i64 {
    use datafusion::arrow::array::AsArray as _;
    use datafusion::arrow::datatypes::Int64Type;
    let scope = mxpulse_query::session::Scope {
        server: None,
        pseudonyms: true,
    };
    let ctx = mxpulse_query::session::session(snapshot, &scope, &limits(), None)
        .await
        .unwrap();
    let batches = ctx
        .sql(&format!("SELECT members FROM rooms WHERE room = {room}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

/// Issue 24, item 2: event times leave the hooks to the minute, so a room's memberships
/// within one minute have no order by time. Seven users of two forums go through invite,
/// join, leave, ban, unban and re-join all within 10:00 on 20 May, written in order for one
/// forum and in reverse for the other (whatever a tie-break by position would pick, one of
/// them misleads it); who is a member follows Synapse's `replaces_state` chain, in the raw
/// `rooms` view, in the forums from raw and from rollups, and across two rollup runs that
/// each see part of the same minute.
#[tokio::test(flavor = "multi_thread")]
async fn memberships_within_one_minute_follow_the_order_synapse_gives_them() {
    use Membership::{Ban, Invite, Join, Leave};
    const FORUMS: [u64; 2] = [300, 301];
    let (_dir, root) = lake();
    write_lake(&root).await;
    let mut setup = Events(Vec::new());
    for (i, forum) in FORUMS.into_iter().enumerate() {
        let id = 3000 + 10 * i as u128;
        late(
            &mut setup,
            id,
            11,
            forum,
            ms(2024, 5, 9, 9, 0),
            EventType::RoomCreate,
            |_| {},
        );
        late(
            &mut setup,
            id + 1,
            11,
            forum,
            ms(2024, 5, 9, 9, 1),
            EventType::RoomJoinRules,
            |r| r.join_rule = Some(mxpulse_schemas::vocabulary::JoinRule::Public),
        );
    }
    write(&root, &setup.0).await;

    // (target, its memberships in order as (sender, membership)); 11 is the moderator.
    let chains: [(u64, &[(u64, Membership)]); 7] = [
        (11, &[(11, Join)]),
        (12, &[(11, Invite), (12, Join), (12, Leave)]),
        (13, &[(13, Join), (11, Ban), (11, Leave), (13, Join)]),
        (14, &[(11, Invite), (14, Join)]),
        (15, &[(15, Join), (15, Leave), (15, Join)]),
        (16, &[(11, Invite), (16, Leave)]),
        (17, &[(17, Join)]),
    ];
    let minute = ms(2024, 5, 20, 10, 0);
    let mut batches = [Events(Vec::new()), Events(Vec::new())];
    let mut id = 3100u128;
    for (forum_at, forum) in FORUMS.into_iter().enumerate() {
        let mut forum_batches = [Events(Vec::new()), Events(Vec::new())];
        for (target, chain) in chains {
            let mut previous = None;
            for (at, &(sender, membership)) in chain.iter().enumerate() {
                id += 1;
                // The last re-joins of 13 and 15 arrive after a first rollup run.
                let second = at == 3 || (target == 15 && at == 2);
                let batch = &mut forum_batches[usize::from(second)];
                late(
                    batch,
                    id,
                    sender,
                    forum,
                    minute,
                    EventType::RoomMember,
                    |r| {
                        r.target = Some(UserPseudonym(target));
                        r.membership = Some(membership);
                        r.replaces = previous;
                    },
                );
                previous = Some(EventPseudonym(id));
            }
        }
        for (into, mut events) in batches.iter_mut().zip(forum_batches) {
            if forum_at == 1 {
                events.0.reverse();
            }
            into.0.extend(events.0);
        }
    }
    let exact = Publication {
        min_users: 3,
        noise: 0,
        ..publication()
    };
    // 11, 14 and 17, then 13 and 15 too; 12 and 16 left.
    for (batch, members) in batches.iter().zip([3, 5]) {
        write(&root, &batch.0).await;
        rollup(&root, RollupMode::Incremental).await;
        let snapshot = LakeSnapshot::load(root.url()).await.unwrap();
        for forum in FORUMS {
            assert_eq!(
                members_in_rooms_view(&snapshot, forum).await,
                members,
                "forum {forum}"
            );
        }
        for source in [FigureSource::Raw, FigureSource::Rollups] {
            assert_eq!(
                forums_as(&snapshot, source, &exact).await,
                [(A.to_owned(), members), (A.to_owned(), members)],
                "{source:?}"
            );
        }
    }
    assert_rollups_equal_raw(&root, "memberships in one minute", false).await;
}

/// A lake written before the event record had `replaces`: the ingest adds the column to
/// the table when it opens it (rows already written read it as null, and their memberships
/// are ordered by time as before), and a query service reading a table that still lacks it
/// sees the column, empty.
#[tokio::test(flavor = "multi_thread")]
async fn an_events_table_from_before_replaces_gains_the_column() {
    use datafusion::arrow::array::AsArray as _;
    use mxpulse_schemas::{EventRecord, Record};
    let (_dir, root) = lake();
    let (_, events, _) = golden::lake_data();
    let batch = EventRecord::to_record_batch(&events).unwrap();
    let mut old = batch.clone();
    old.remove_column(batch.schema().index_of("replaces").unwrap());
    let spec = mxpulse_ingest::lake::TableSpec {
        name: "events",
        schema: old.schema(),
        partition_columns: &["date"],
        configuration: Vec::new(),
    };
    let table = mxpulse_ingest::lake::open_or_create_at(root.table_url::<EventRecord>(), &spec)
        .await
        .unwrap();
    table
        .write(vec![old])
        .with_partition_columns(["date"])
        .await
        .unwrap();

    // Read as it is: the column is there, null.
    let snapshot = LakeSnapshot::load(root.url()).await.unwrap();
    let scope = mxpulse_query::session::Scope {
        server: None,
        pseudonyms: true,
    };
    let ctx = mxpulse_query::session::session(&snapshot, &scope, &limits(), None)
        .await
        .unwrap();
    let counted = ctx
        .sql("SELECT count(*) AS n, count(replaces) AS named FROM events")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let column = |i: usize| {
        counted[0]
            .column(i)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .value(0)
    };
    assert_eq!((column(0), column(1)), (events.len() as i64, 0));
    // The `rooms` view plans over the table as it is: forum 202 has no member yet.
    assert_eq!(members_in_rooms_view(&snapshot, 202).await, 0);

    // The ingest opens it: the column is added, old and new rows read together.
    let table = mxpulse_ingest::lake::open_or_create::<EventRecord>(&root)
        .await
        .unwrap();
    let fields: Vec<String> = table
        .snapshot()
        .unwrap()
        .schema()
        .fields()
        .map(|f| f.name().to_owned())
        .collect();
    assert_eq!(fields.last().map(String::as_str), Some("replaces"));
    let mut newer = Events(Vec::new());
    late(
        &mut newer,
        5000,
        1,
        202,
        ms(2024, 5, 21, 9, 0),
        EventType::RoomMember,
        |r| {
            r.target = Some(UserPseudonym(1));
            r.membership = Some(Membership::Join);
            r.replaces = Some(EventPseudonym(4999));
        },
    );
    write(&root, &newer.0).await;
    let read = harness_records(&root).await;
    assert_eq!(read.len(), events.len() + 1);
    assert_eq!(
        read.iter().filter(|r| r.replaces.is_some()).count(),
        1,
        "only the new row names what it replaces"
    );
    let snapshot = LakeSnapshot::load(root.url()).await.unwrap();
    assert_eq!(members_in_rooms_view(&snapshot, 202).await, 1);
    rollup(&root, RollupMode::Incremental).await;
    assert_rollups_equal_raw(&root, "an evolved events table", false).await;
}

/// Every event record of the lake, read back through the ingest's reader.
async fn harness_records(root: &LakeRoot) -> Vec<mxpulse_schemas::EventRecord> {
    let table = mxpulse_ingest::lake::open_or_create::<mxpulse_schemas::EventRecord>(root)
        .await
        .unwrap();
    mxpulse_ingest::lake::read_all(&table).await.unwrap()
}

/// Issue 24, item 5: a forum in a homeserver's public room directory is shown with the name
/// and topic that directory shows; a forum no longer in it (absent from its server's newest
/// day, or said to have left) and a forum never in it are not named; from raw and rollups.
#[tokio::test(flavor = "multi_thread")]
async fn forums_are_named_from_the_public_directory_only() {
    use mxpulse_schemas::{DirectoryRecord, KeyId, RoomPseudonym, SchemaVersion};
    let (_dir, root) = lake();
    write_lake(&root).await;
    let mut e = Events(Vec::new());
    let mut id = 6000u128;
    for forum in [310u64, 311, 312, 313] {
        id += 1;
        late(
            &mut e,
            id,
            11,
            forum,
            ms(2024, 5, 9, 9, 0),
            EventType::RoomCreate,
            |_| {},
        );
        id += 1;
        late(
            &mut e,
            id,
            11,
            forum,
            ms(2024, 5, 9, 9, 1),
            EventType::RoomJoinRules,
            |r| r.join_rule = Some(mxpulse_schemas::vocabulary::JoinRule::Public),
        );
        // 3 to 6 members: every forum is published at k = 3.
        for user in 0..(forum - 307) {
            id += 1;
            late(
                &mut e,
                id,
                20 + user,
                forum,
                ms(2024, 5, 10, 9, 0),
                EventType::RoomMember,
                |r| {
                    r.target = Some(UserPseudonym(20 + user));
                    r.membership = Some(Membership::Join);
                },
            );
        }
    }
    write(&root, &e.0).await;
    let entry = |room: u64, at, listed: bool, name: Option<&str>| DirectoryRecord {
        v: SchemaVersion::CURRENT,
        key_id: KeyId([1, 2, 3, 4]),
        ts: at,
        server: A.into(),
        room: RoomPseudonym(room),
        listed,
        name: name.map(str::to_owned),
        topic: name.map(|n| format!("{n} : entraide")),
    };
    let (day1, day2) = (ms(2024, 6, 1, 8, 0), ms(2024, 6, 2, 8, 0));
    write(
        &root,
        &[
            // 310: listed both days. 311: listed the first day only. 312: listed, then left
            // on the newest day. 313: never listed.
            entry(310, day1, true, Some("Forum Tchap info")),
            entry(311, day1, true, Some("Ancien forum")),
            entry(312, day1, true, Some("Cybersécurité")),
            entry(310, day2, true, Some("Forum Tchap info")),
            entry(312, day2, true, Some("Cybersécurité")),
            entry(312, ms(2024, 6, 2, 9, 0), false, None),
        ],
    )
    .await;
    rollup(&root, RollupMode::Incremental).await;
    let snapshot = LakeSnapshot::load(root.url()).await.unwrap();
    let exact = Publication {
        noise: 0,
        ..publication()
    };
    for source in [FigureSource::Raw, FigureSource::Rollups] {
        let cells = IndexCache::default();
        let with = planner::Answering {
            snapshot: &snapshot,
            cells: &cells,
            publication: &exact,
            limits: &limits(),
        };
        let named: Vec<(i64, Option<String>, Option<String>)> =
            planner::forums(&with, 10, None, source)
                .await
                .unwrap()
                .into_iter()
                .map(|f| (f.members, f.name, f.topic))
                .collect();
        assert_eq!(
            named,
            [
                (6, None, None),
                (5, None, None),
                (4, None, None),
                (
                    3,
                    Some("Forum Tchap info".to_owned()),
                    Some("Forum Tchap info : entraide".to_owned())
                ),
            ],
            "{source:?}"
        );
    }
}
