//! Round trips of every record type through JSON and Arrow, the decode errors that make dead
//! letters, and the JSON Schema files that must not drift from the types.

use std::path::PathBuf;

use chrono::NaiveDate;
use mxpulse_schemas::vocabulary::*;
use mxpulse_schemas::*;

/// A small deterministic generator (xorshift), so the cases cover every optional field set
/// and unset without a property-testing dependency.
struct Cases(u64);

impl Cases {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<T: Copy>(&mut self, all: &[T]) -> T {
        all[(self.next() % all.len() as u64) as usize]
    }
    fn maybe<T>(&mut self, make: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.next().is_multiple_of(2) {
            Some(make(self))
        } else {
            None
        }
    }
}

fn events(n: usize) -> Vec<EventRecord> {
    let mut c = Cases(0x5eed);
    (0..n)
        .map(|i| {
            let mut e = EventRecord::new(
                KeyId([1, 2, 3, 4]),
                EventPseudonym(u128::from(c.next()) << 64 | u128::from(c.next())),
                // Around the Olympics, and one instant before 1970 to exercise negative days.
                UnixMillis(if i == 3 {
                    -1
                } else {
                    1_721_000_000_000 + (c.next() % 10_000_000_000) as i64
                }),
                format!(
                    "agent.{}.tchap.gouv.fr",
                    c.pick(&["interieur", "dinum", "externe"])
                ),
                UserPseudonym(c.next()),
                RoomPseudonym(c.next()),
                c.pick(EventType::ALL),
                c.pick(Source::ALL),
            );
            e.domain = c.maybe(|_| "interieur.gouv.fr".to_owned());
            e.msgtype = c.maybe(|c| c.pick(MsgType::ALL));
            e.rel_type = c.maybe(|c| c.pick(RelType::ALL));
            e.target = c.maybe(|c| UserPseudonym(c.next()));
            e.membership = c.maybe(|c| c.pick(Membership::ALL));
            e.join_rule = c.maybe(|c| c.pick(JoinRule::ALL));
            e.access_rule = c.maybe(|c| c.pick(AccessRule::ALL));
            e.encrypted = c.maybe(|c| c.next().is_multiple_of(2));
            e.is_direct = c.maybe(|c| c.next().is_multiple_of(2));
            e.room_type = c.maybe(|c| c.pick(RoomType::ALL));
            e.call = c.maybe(|c| c.pick(CallChange::ALL));
            e.live = c.maybe(|c| c.next().is_multiple_of(2));
            e.replaces = c.maybe(|c| EventPseudonym(u128::from(c.next()) << 64 | 9));
            e
        })
        .collect()
}

fn visits(n: usize) -> Vec<VisitRecord> {
    let mut c = Cases(0xda7);
    (0..n)
        .map(|_| VisitRecord {
            v: SchemaVersion::CURRENT,
            key_id: KeyId([9, 9, 9, 9]),
            day: NaiveDate::from_ymd_opt(2023, 1, 1).unwrap() + chrono::Days::new(c.next() % 730),
            server: "agent.dinum.tchap.gouv.fr".into(),
            user: UserPseudonym(c.next()),
            device: c.maybe(|c| DevicePseudonym(c.next())),
            domain: c.maybe(|_| "numerique.gouv.fr".into()),
            platform: c.pick(Platform::ALL),
            client: c.pick(Client::ALL),
            family: c.maybe(|c| {
                c.pick(&["tchap_x_android", "tchap_ios", "web", "other"])
                    .parse()
                    .unwrap()
            }),
        })
        .collect()
}

fn accounts(n: usize) -> Vec<AccountRecord> {
    let mut c = Cases(0xacc);
    (0..n)
        .map(|_| AccountRecord {
            v: SchemaVersion::CURRENT,
            key_id: KeyId([0xde, 0xad, 0xbe, 0xef]),
            ts: UnixMillis(1_700_000_000_000 + (c.next() % 100_000_000_000) as i64),
            server: "agent.externe.tchap.gouv.fr".into(),
            user: UserPseudonym(c.next()),
            domain: c.maybe(|_| "gmail.com".into()),
            change: c.pick(AccountChange::ALL),
            user_type: c.pick(UserType::ALL),
        })
        .collect()
}

fn directory(n: usize) -> Vec<DirectoryRecord> {
    let mut c = Cases(0xd1);
    (0..n)
        .map(|_| {
            let listed = c.next().is_multiple_of(3);
            DirectoryRecord {
                v: SchemaVersion::CURRENT,
                key_id: KeyId([1, 2, 3, 4]),
                ts: UnixMillis(
                    1_721_000_000_000 + (c.next() % 10_000_000_000) as i64 / 60_000 * 60_000,
                ),
                server: "agent.dinum.tchap.gouv.fr".into(),
                room: RoomPseudonym(c.next()),
                listed,
                name: c
                    .maybe(|c| format!("Forum {}", c.next() % 100))
                    .filter(|_| listed),
                topic: c.maybe(|_| "Entraide".to_owned()).filter(|_| listed),
            }
        })
        .collect()
}

fn check_round_trips<R: Record>(records: Vec<R>) {
    for record in &records {
        let envelope = encode(record);
        assert_eq!(envelope.topic, R::TOPIC);
        assert_eq!(envelope.key, record.key());
        let header = Envelope::version_header();
        let back: R = decode(Some(header.as_bytes()), &envelope.payload).unwrap();
        assert_eq!(&back, record);
    }
    let batch = R::to_record_batch(&records).unwrap();
    assert_eq!(batch.num_rows(), records.len());
    assert_eq!(batch.schema(), R::arrow_schema());
    assert!(batch.schema().field_with_name(R::PARTITION_COLUMN).is_ok());
    assert_eq!(R::from_record_batch(&batch).unwrap(), records);
    // The identity columns alone give the same keys.
    let indices: Vec<usize> = R::IDENTITY_COLUMNS
        .iter()
        .map(|c| batch.schema().index_of(c).unwrap())
        .collect();
    let keys: Vec<RecordKey> = records.iter().map(Record::key).collect();
    assert_eq!(
        R::keys_from_batch(&batch.project(&indices).unwrap()).unwrap(),
        keys
    );
    // The ingest's identities: the same from a record and from the lake's identity columns,
    // and as distinct as the keys.
    let prints: Vec<KeyPrint> = records.iter().map(Record::key_print).collect();
    assert_eq!(
        R::key_prints_from_batch(&batch.project(&indices).unwrap()).unwrap(),
        prints
    );
    let distinct_keys: std::collections::HashSet<&RecordKey> = keys.iter().collect();
    let distinct_prints: std::collections::HashSet<&KeyPrint> = prints.iter().collect();
    assert_eq!(distinct_prints.len(), distinct_keys.len());
}

#[test]
fn event_records_round_trip_through_json_and_arrow() {
    check_round_trips(events(500));
}

#[test]
fn visit_records_round_trip_through_json_and_arrow() {
    check_round_trips(visits(500));
}

#[test]
fn account_records_round_trip_through_json_and_arrow() {
    check_round_trips(accounts(500));
}

#[test]
fn directory_records_round_trip_through_json_and_arrow() {
    check_round_trips(directory(200));
}

/// A directory shows a topic's first line: so does the record, cut to 200 characters.
#[test]
fn directory_texts_are_one_line_of_at_most_200_characters() {
    assert_eq!(
        DirectoryRecord::one_line("\n  Entraide entre agents  \nsecond line").as_deref(),
        Some("Entraide entre agents")
    );
    assert_eq!(DirectoryRecord::one_line(" \n \t"), None);
    let long = "é".repeat(500);
    let cut = DirectoryRecord::one_line(&long).unwrap();
    assert_eq!(cut.chars().count(), DIRECTORY_TEXT_CHARS);
    assert!(cut.ends_with('…'));
}

#[test]
fn pseudonyms_are_fixed_width_hex_on_the_wire() {
    let mut event = events(1).remove(0);
    event.sender = UserPseudonym(7);
    event.event = EventPseudonym(7);
    let json: serde_json::Value = serde_json::from_slice(&encode(&event).payload).unwrap();
    assert_eq!(json["sender"], "0000000000000007");
    assert_eq!(json["event"], "00000000000000000000000000000007");
    assert_eq!(json["v"], 2);
    assert_eq!(json["key_id"], "01020304");
    assert_eq!(encode(&event).key.0, "00000000000000000000000000000007");
}

/// A version 1 visit, as the hooks wrote them before the client family: it still decodes,
/// with no family, into the same table as version 2 visits (docs/design.md §3).
#[test]
fn version_one_records_stay_readable_beside_version_two() {
    let v1 = br#"{"v":1,"key_id":"09090909","day":"2024-07-26","server":"agent.dinum.tchap.gouv.fr","user":"0000000000000001","device":"0000000000000002","platform":"android","client":"tchap"}"#;
    let old = decode::<VisitRecord>(Some(b"1"), v1).unwrap();
    assert_eq!((old.v, old.family.as_ref()), (SchemaVersion::V1, None));
    let mut new = visits(1).remove(0);
    new.family = Some("tchap_x_android".parse().unwrap());
    let envelope = encode(&new);
    let json: serde_json::Value = serde_json::from_slice(&envelope.payload).unwrap();
    assert_eq!(
        (json["v"].as_u64(), json["family"].as_str()),
        (Some(2), Some("tchap_x_android"))
    );
    let new = decode::<VisitRecord>(Some(b"2"), &envelope.payload).unwrap();
    let batch = VisitRecord::to_record_batch(&[old.clone(), new.clone()]).unwrap();
    assert_eq!(
        VisitRecord::from_record_batch(&batch).unwrap(),
        [old.clone(), new]
    );
    // A batch of a table written before version 2 has no family column.
    let without = batch
        .project(&(0..batch.num_columns() - 1).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(without.schema().index_of("family").ok(), None);
    assert_eq!(VisitRecord::from_record_batch(&without).unwrap()[0], old);
    // A family that is user-agent text is refused, without repeating it.
    let leaky = String::from_utf8(v1.to_vec())
        .unwrap()
        .replace("\"v\":1", "\"v\":2")
        .replace("}", ",\"family\":\"Tchap X/25.04 (Pixel 8)\"}");
    let err = decode::<VisitRecord>(None, leaky.as_bytes()).unwrap_err();
    assert!(!err.to_string().contains("Pixel"), "{err}");
}

#[test]
fn identities_follow_the_design() {
    let mut visit = visits(1).remove(0);
    visit.user = UserPseudonym(1);
    visit.device = Some(DevicePseudonym(2));
    visit.day = NaiveDate::from_ymd_opt(2024, 7, 26).unwrap();
    assert_eq!(
        visit.key().0,
        "0000000000000001:0000000000000002:2024-07-26"
    );
    visit.device = None;
    assert_eq!(visit.key().0, "0000000000000001:-:2024-07-26");

    let mut account = accounts(1).remove(0);
    account.user = UserPseudonym(1);
    account.change = AccountChange::Deactivated;
    account.ts = UnixMillis(1_721_000_000_000);
    assert_eq!(
        account.key().0,
        "0000000000000001:deactivated:1721000000000"
    );
}

fn payload_with(edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> Vec<u8> {
    let mut json = serde_json::to_value(&events(1)[0]).unwrap();
    edit(json.as_object_mut().unwrap());
    serde_json::to_vec(&json).unwrap()
}

#[test]
fn decode_errors_name_what_is_wrong() {
    let future = payload_with(|o| {
        o.insert("v".into(), 3.into());
    });
    assert_eq!(
        decode::<EventRecord>(None, &future),
        Err(DecodeError::UnknownVersion {
            found: "3".into(),
            supported: SchemaVersion::V2
        })
    );
    let none = payload_with(|o| {
        o.insert("v".into(), 0.into());
    });
    assert!(matches!(
        decode::<EventRecord>(None, &none),
        Err(DecodeError::UnknownVersion { .. })
    ));

    let no_version = payload_with(|o| {
        o.remove("v");
    });
    assert_eq!(
        decode::<EventRecord>(None, &no_version),
        Err(DecodeError::MissingField { field: "v".into() })
    );

    let no_sender = payload_with(|o| {
        o.remove("sender");
    });
    assert_eq!(
        decode::<EventRecord>(None, &no_sender),
        Err(DecodeError::MissingField {
            field: "sender".into()
        })
    );

    let good = payload_with(|_| {});
    assert!(matches!(
        decode::<EventRecord>(Some(b"1"), &good),
        Err(DecodeError::VersionMismatch { .. })
    ));

    assert!(matches!(
        decode::<EventRecord>(None, b"\x00\xffgarbage"),
        Err(DecodeError::NotJson { .. })
    ));
    assert!(matches!(
        decode::<EventRecord>(None, br#"{"v":1,"event":"#),
        Err(DecodeError::NotJson { .. })
    ));

    let bad_type = payload_with(|o| {
        o.insert("type".into(), "m.room.name".into());
    });
    match decode::<EventRecord>(None, &bad_type) {
        Err(DecodeError::Invalid { reason }) => {
            // The kind of problem and where, never the value (it may be anything, names
            // included, and reasons go to logs and dead-letter headers).
            assert!(!reason.contains("m.room.name"), "{reason}");
            assert!(reason.contains("line 1 column"), "{reason}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    for (field, value) in [
        ("v", serde_json::json!("jeanne.martin@interieur.gouv.fr")),
        (
            "msgtype",
            serde_json::json!("jeanne.martin@interieur.gouv.fr"),
        ),
        ("ts", serde_json::json!("jeanne.martin@interieur.gouv.fr")),
        (
            "room",
            serde_json::json!("!jeanne.martin:interieur.gouv.fr"),
        ),
    ] {
        let payload = payload_with(|o| {
            o.insert(field.into(), value.clone());
        });
        let error = decode::<EventRecord>(None, &payload)
            .unwrap_err()
            .to_string();
        assert!(!error.contains("jeanne"), "{field}: {error}");
    }
    let error = decode::<EventRecord>(Some(b"jeanne.martin"), &good)
        .unwrap_err()
        .to_string();
    assert!(!error.contains("jeanne"), "{error}");

    let bad_pseudonym = payload_with(|o| {
        o.insert("room".into(), "@alice:example.org".into());
    });
    assert!(matches!(
        decode::<EventRecord>(None, &bad_pseudonym),
        Err(DecodeError::Invalid { .. })
    ));

    // A visit is not an event, even though both are JSON objects of version 1.
    let visit = encode(&visits(1)[0]).payload;
    assert!(matches!(
        decode::<EventRecord>(None, &visit),
        Err(DecodeError::MissingField { .. })
    ));
}

#[test]
fn arrow_read_back_names_the_bad_column() {
    let batch = EventRecord::to_record_batch(&events(3)).unwrap();
    let without_room = batch
        .project(
            &(0..batch.num_columns())
                .filter(|&i| batch.schema().field(i).name() != "room")
                .collect::<Vec<_>>(),
        )
        .unwrap();
    assert_eq!(
        EventRecord::from_record_batch(&without_room),
        Err(ArrowFormError::MissingColumn { column: "room" })
    );
}

#[test]
fn arrow_read_back_accepts_the_encodings_query_engines_produce() {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};

    let records = visits(50);
    let batch = VisitRecord::to_record_batch(&records).unwrap();
    // As DataFusion reads the lake: strings as views, the partition column dictionary-encoded.
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| {
            let to = match field.data_type() {
                DataType::Utf8 => DataType::Utf8View,
                DataType::Date32 => {
                    DataType::Dictionary(Box::new(DataType::UInt16), Box::new(DataType::Date32))
                }
                other => other.clone(),
            };
            (
                Field::new(field.name(), to.clone(), true),
                arrow_cast::cast(column, &to).unwrap(),
            )
        })
        .unzip();
    let viewed = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    assert_eq!(VisitRecord::from_record_batch(&viewed).unwrap(), records);
}

fn schema_dir() -> PathBuf {
    PathBuf::from(
        // At run time first: cargo may reuse a test binary built in another checkout.
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("json")
}

fn check_schema_file<R: Record>() {
    let path = schema_dir().join(json_schema_file::<R>());
    let generated = serde_json::to_string_pretty(&json_schema::<R>()).unwrap() + "\n";
    if std::env::var_os("MXPULSE_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    // Compared as JSON values: the key order of the text depends on whether some crate in
    // the build turned on serde_json's `preserve_order`, the schema does not.
    let same = serde_json::from_str::<serde_json::Value>(&committed)
        .is_ok_and(|committed| committed == json_schema::<R>());
    assert!(
        same,
        "{} is out of date with the {} type: run `MXPULSE_BLESS=1 cargo test -p mxpulse-schemas` and commit the file",
        path.display(),
        std::any::type_name::<R>()
    );
}

/// A table written before `replaces` existed reads as records without it, and a batch with
/// a wrong-sized pseudonym there is an error naming the column.
#[test]
fn an_event_batch_without_a_later_column_reads_as_none() {
    let with = events(20);
    assert!(with.iter().any(|e| e.replaces.is_some()));
    let batch = EventRecord::to_record_batch(&with).unwrap();
    let at = batch.schema().index_of("replaces").unwrap();
    let mut older = batch.clone();
    older.remove_column(at);
    let read = EventRecord::from_record_batch(&older).unwrap();
    assert!(read.iter().all(|e| e.replaces.is_none()));
    let mut without = with.clone();
    without.iter_mut().for_each(|e| e.replaces = None);
    assert_eq!(read, without);

    let mut columns = batch.columns().to_vec();
    columns[at] = std::sync::Arc::new(arrow_array::BinaryArray::from_iter(
        (0..batch.num_rows()).map(|_| Some(&b"short"[..])),
    ));
    let damaged = arrow_array::RecordBatch::try_new(batch.schema(), columns).unwrap();
    let error = EventRecord::from_record_batch(&damaged)
        .unwrap_err()
        .to_string();
    assert!(error.contains("replaces"), "{error}");
}

#[test]
fn json_schema_files_match_the_types() {
    check_schema_file::<EventRecord>();
    check_schema_file::<VisitRecord>();
    check_schema_file::<AccountRecord>();
    check_schema_file::<DirectoryRecord>();
}

#[test]
fn json_schema_lists_required_fields_and_vocabularies() {
    let schema = json_schema::<EventRecord>();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for field in [
        "v", "key_id", "event", "ts", "server", "sender", "room", "type", "source",
    ] {
        assert!(
            required.contains(&field),
            "{field} should be required: {required:?}"
        );
    }
    assert!(!required.contains(&"domain"));
    let text = schema.to_string();
    assert!(
        text.contains("im.vector.room.access_rules") && text.contains("^[0-9a-f]{32}$"),
        "{text}"
    );
}
