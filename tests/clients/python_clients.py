"""What a Python analyst does over the PostgreSQL wire protocol, and what each answer was.

Usage: python_clients.py PORT USER PASSWORD SERVER
psycopg 3 (the extended protocol: bound parameters, a prepared statement with binary
results), psycopg2 (the simple protocol, parameters interpolated by the client), and pandas
over SQLAlchemy with either driver (their connection probes: version(), SHOW, savepoints,
to_regtype). Prints one JSON object; tests/serve.rs compares it with the HTTP API's answers.
"""

import json
import sys

import pandas
import psycopg
import psycopg2
import sqlalchemy

port, user, password, server = sys.argv[1:5]
dsn = f"host=127.0.0.1 port={port} user={user} password={password} dbname=mxpulse"
facts = {}

DAILY = (
    "SELECT date, count(*) AS messages FROM events"
    " WHERE type = 'm.room.message' GROUP BY date ORDER BY date"
)

with psycopg.connect(dsn) as conn:
    facts["psycopg_events_of_server"] = conn.execute(
        "SELECT count(*) FROM events WHERE server = %s", [server]
    ).fetchone()[0]
    # A value that would change the query if it were pasted into the SQL text.
    facts["psycopg_injection"] = conn.execute(
        "SELECT count(*) FROM events WHERE server = %s", ["x' OR '1'='1"]
    ).fetchone()[0]
    row = (
        conn.cursor(binary=True)
        .execute("SELECT count(*), max(date) FROM events WHERE server = %s", [server], prepare=True)
        .fetchone()
    )
    facts["psycopg_binary_prepared"] = [row[0], row[1].isoformat() if row[1] else None]
    try:
        conn.execute("DELETE FROM events WHERE server = %s", [server])
        facts["psycopg_delete"] = "accepted"
    except psycopg.Error as error:
        facts["psycopg_delete"] = error.sqlstate
        conn.rollback()
    facts["psycopg_events_after_delete"] = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    notices = []
    conn.add_notice_handler(lambda notice: notices.append(notice.message_primary))
    facts["psycopg_long_rows"] = len(conn.execute("SELECT value FROM generate_series(1, 1500)").fetchall())
    facts["psycopg_notices"] = notices

with psycopg2.connect(dsn) as conn:
    cursor = conn.cursor()
    cursor.execute(
        "SELECT count(DISTINCT \"user\") FROM visits WHERE platform <> 'unknown' AND day BETWEEN %s AND %s",
        ("2024-05-01", "2024-05-31"),
    )
    facts["psycopg2_active_users_may"] = cursor.fetchone()[0]

for driver in ["psycopg2", "psycopg"]:
    engine = sqlalchemy.create_engine(f"postgresql+{driver}://{user}:{password}@127.0.0.1:{port}/mxpulse")
    frame = pandas.read_sql(DAILY, engine)
    facts[f"pandas_{driver}_daily_messages"] = [
        [day.isoformat(), int(messages)] for day, messages in zip(frame["date"], frame["messages"])
    ]
    # What Superset and every SQLAlchemy-based tool runs when a database is added: the
    # inspector over every view (an exception fails the script).
    inspector = sqlalchemy.inspect(engine)
    views = {}
    for view in inspector.get_view_names():
        views[view] = {
            "columns": [column["name"] for column in inspector.get_columns(view)],
            "primary_key": inspector.get_pk_constraint(view)["constrained_columns"],
            "indexes": inspector.get_indexes(view),
            "unique": inspector.get_unique_constraints(view),
            "foreign_keys": inspector.get_foreign_keys(view),
        }
    facts[f"inspector_{driver}"] = {
        "schemas": inspector.get_schema_names(),
        "tables": inspector.get_table_names(),
        "views": views,
    }
    # The SQL Superset writes for a time series: PostgreSQL's date formats.
    with engine.connect() as conn:
        facts[f"superset_time_filter_{driver}"] = [
            str(value)
            for value in conn.execute(
                sqlalchemy.text(
                    "SELECT TO_DATE('2024-05-06', 'YYYY-MM-DD'),"
                    " TO_TIMESTAMP('2024-05-06 13:45:10', 'YYYY-MM-DD HH24:MI:SS')"
                )
            ).one()
        ]
    engine.dispose()

print(json.dumps(facts))
