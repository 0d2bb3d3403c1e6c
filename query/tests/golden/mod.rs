//! The golden lake: a small lake where every figure, breakdown, change, peak day and
//! suppression was worked out by hand (k = 3, Europe/Paris). Shared by the figures tests (the
//! hand-worked values) and the rollup tests (rollups equal raw over it).

#![allow(dead_code)] // Each test binary uses its own part.

use chrono::{NaiveDate, TimeZone, Utc};
use mxpulse_schemas::vocabulary::{
    AccessRule, AccountChange, Client, EventType, JoinRule, Membership, MsgType, Platform, RelType,
    RoomType, Source, UserType,
};
use mxpulse_schemas::{
    AccountRecord, ClientFamily, EventPseudonym, EventRecord, KeyId, Record, RoomPseudonym,
    SchemaVersion, UnixMillis, UserPseudonym, VisitRecord,
};

pub const A: &str = "agent.interieur.tchap.gouv.fr";
pub const B: &str = "agent.finances.tchap.gouv.fr";

pub fn ms(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> UnixMillis {
    UnixMillis(
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .timestamp_millis(),
    )
}

pub fn visit(
    user: u64,
    server: &str,
    domain: &str,
    day: (i32, u32, u32),
    platform: Platform,
) -> VisitRecord {
    VisitRecord {
        v: SchemaVersion::CURRENT,
        key_id: KeyId([1, 2, 3, 4]),
        day: NaiveDate::from_ymd_opt(day.0, day.1, day.2).unwrap(),
        server: server.into(),
        user: UserPseudonym(user),
        device: None,
        domain: Some(domain.into()),
        platform,
        client: Client::Tchap,
        family: Some(classic_family(platform)),
    }
}

/// The family of a classic Tchap app on `platform` (the golden visits before Tchap X).
pub fn classic_family(platform: Platform) -> ClientFamily {
    let name = match platform {
        Platform::Web => ClientFamily::WEB,
        Platform::Android => ClientFamily::TCHAP_ANDROID,
        Platform::Ios => ClientFamily::TCHAP_IOS,
        Platform::Desktop => ClientFamily::TCHAP_DESKTOP,
        Platform::Unknown => ClientFamily::OTHER,
    };
    name.parse().unwrap()
}

pub struct Events(pub Vec<EventRecord>);

impl Events {
    pub fn add(
        &mut self,
        sender: u64,
        room: u64,
        at: UnixMillis,
        event_type: EventType,
        edit: impl FnOnce(&mut EventRecord),
    ) {
        let n = self.0.len() as u128 + 1;
        let mut r = EventRecord::new(
            KeyId([1, 2, 3, 4]),
            EventPseudonym(n),
            at,
            A,
            UserPseudonym(sender),
            RoomPseudonym(room),
            event_type,
            Source::Appservice,
        );
        r.domain = Some("interieur.gouv.fr".into());
        edit(&mut r);
        self.0.push(r);
    }
}

pub async fn write<R: Record>(root: &mxpulse_ingest::LakeRoot, records: &[R]) {
    let table = mxpulse_ingest::lake::open_or_create::<R>(root)
        .await
        .unwrap();
    table
        .write(vec![R::to_record_batch(records).unwrap()])
        .with_partition_columns([R::PARTITION_COLUMN])
        .await
        .unwrap();
}

pub fn lake_data() -> (Vec<VisitRecord>, Vec<EventRecord>, Vec<AccountRecord>) {
    use Platform::*;
    let mut visits = Vec::new();
    // May 2024: users 1-3 (interieur, server A) on 2 May, 4-5 (finances, server B) on 3 May;
    // user 6 has no known platform.
    for (user, server, domain, day, platform) in [
        (1, A, "interieur.gouv.fr", 2, Web),
        (2, A, "interieur.gouv.fr", 2, Android),
        (3, A, "interieur.gouv.fr", 2, Web),
        (4, B, "finances.gouv.fr", 3, Ios),
        (5, B, "finances.gouv.fr", 3, Web),
    ] {
        visits.push(visit(user, server, domain, (2024, 5, day), platform));
    }
    // Peak day: 14 May with users 1-4, on Android.
    for user in 1..=4 {
        let (server, domain) = if user <= 3 {
            (A, "interieur.gouv.fr")
        } else {
            (B, "finances.gouv.fr")
        };
        visits.push(visit(user, server, domain, (2024, 5, 14), Android));
    }
    visits.push(visit(6, A, "interieur.gouv.fr", (2024, 5, 20), Unknown));
    // June 2024: two users only (suppressed).
    visits.push(visit(1, A, "interieur.gouv.fr", (2024, 6, 3), Web));
    visits.push(visit(2, A, "interieur.gouv.fr", (2024, 6, 3), Web));
    // May 2023: four users, for the year-over-year change.
    for user in 1..=4 {
        visits.push(visit(user, A, "interieur.gouv.fr", (2023, 5, 10), Web));
    }
    // April 2024: four users, for the month-over-month change.
    for user in 1..=4 {
        visits.push(visit(user, A, "interieur.gouv.fr", (2024, 4, 10), Web));
    }

    let mut e = Events(Vec::new());
    let msg = |r: &mut EventRecord| r.msgtype = Some(MsgType::Text);
    // May 2024 (Paris): 30 April 22:30 UTC is 1 May 00:30 in Paris.
    e.add(1, 100, ms(2024, 4, 30, 22, 30), EventType::RoomMessage, msg);
    for (sender, day) in [(1, 6), (2, 6), (3, 7), (4, 7), (1, 7), (2, 20), (3, 21)] {
        e.add(
            sender,
            100,
            ms(2024, 5, day, 10, 0),
            EventType::RoomEncrypted,
            |_| {},
        );
    }
    e.add(2, 100, ms(2024, 5, 7, 11, 0), EventType::RoomMessage, |r| {
        r.msgtype = Some(MsgType::Text);
        r.rel_type = Some(RelType::Thread)
    });
    e.add(
        3,
        100,
        ms(2024, 5, 7, 12, 0),
        EventType::RoomEncrypted,
        |r| r.rel_type = Some(RelType::Thread),
    );
    e.add(1, 100, ms(2024, 5, 8, 12, 0), EventType::RoomMessage, |r| {
        r.msgtype = Some(MsgType::Text);
        r.rel_type = Some(RelType::Replace)
    });
    e.add(2, 100, ms(2024, 5, 8, 12, 0), EventType::Reaction, |r| {
        r.rel_type = Some(RelType::Annotation)
    });
    e.add(3, 100, ms(2024, 5, 8, 12, 5), EventType::Reaction, |r| {
        r.rel_type = Some(RelType::Annotation)
    });
    // 31 May 22:30 UTC is 1 June in Paris: June has one message, from one sender.
    e.add(4, 100, ms(2024, 5, 31, 22, 30), EventType::RoomMessage, msg);
    // Rooms created in May 2024 by users 1, 2, 3: one of each kind.
    e.add(1, 201, ms(2024, 5, 9, 9, 0), EventType::RoomCreate, |_| {});
    e.add(1, 201, ms(2024, 5, 9, 9, 1), EventType::RoomMember, |r| {
        r.membership = Some(Membership::Invite);
        r.target = Some(UserPseudonym(2));
        r.is_direct = Some(true)
    });
    e.add(2, 202, ms(2024, 5, 9, 9, 0), EventType::RoomCreate, |_| {});
    e.add(
        2,
        202,
        ms(2024, 5, 9, 9, 1),
        EventType::RoomJoinRules,
        |r| r.join_rule = Some(JoinRule::Public),
    );
    e.add(3, 203, ms(2024, 5, 9, 9, 0), EventType::RoomCreate, |r| {
        r.room_type = Some(RoomType::Space)
    });
    e.add(3, 204, ms(2024, 5, 9, 9, 0), EventType::RoomCreate, |_| {});
    e.add(
        3,
        204,
        ms(2024, 5, 9, 9, 1),
        EventType::RoomJoinRules,
        |r| r.join_rule = Some(JoinRule::Invite),
    );
    e.add(
        3,
        204,
        ms(2024, 5, 9, 9, 2),
        EventType::RoomEncryption,
        |r| r.encrypted = Some(true),
    );
    e.add(1, 205, ms(2024, 5, 9, 9, 0), EventType::RoomCreate, |_| {});
    e.add(
        1,
        205,
        ms(2024, 5, 9, 9, 2),
        EventType::RoomEncryption,
        |r| r.encrypted = Some(true),
    );
    e.add(1, 205, ms(2024, 5, 9, 9, 3), EventType::AccessRules, |r| {
        r.access_rule = Some(AccessRule::Unrestricted)
    });

    let account = |user: u64, at: UnixMillis, user_type: UserType| AccountRecord {
        v: SchemaVersion::CURRENT,
        key_id: KeyId([1, 2, 3, 4]),
        ts: at,
        server: A.into(),
        user: UserPseudonym(user),
        domain: None,
        change: AccountChange::Created,
        user_type,
    };
    let accounts = vec![
        account(1, ms(2024, 5, 1, 8, 0), UserType::Regular),
        account(2, ms(2024, 5, 2, 8, 0), UserType::Regular),
        account(3, ms(2024, 5, 2, 9, 0), UserType::Regular),
        account(4, ms(2024, 5, 3, 8, 0), UserType::Regular),
        account(90, ms(2024, 5, 3, 8, 0), UserType::Bot),
    ];
    (visits, e.0, accounts)
}

/// Writes the golden lake under `root`, one commit per table.
pub async fn write_lake(root: &mxpulse_ingest::LakeRoot) {
    let (visits, events, accounts) = lake_data();
    write(root, &visits).await;
    write(root, &events).await;
    write(root, &accounts).await;
}
