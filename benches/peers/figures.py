"""The figures of a month's report and of the 24-month overview, computed by DuckDB and by chDB
(ClickHouse in a process) with SQL equivalent to mxpulse's definitions (docs/design.md §5),
over the raw Parquet files of the same lake: what an analyst would run without mxpulse.

Each engine runs in a process of its own (this script, once per engine): the first run of a
query is its cold time (fresh engine, the files in the OS cache as for mxpulse), the median of
the next runs its warm time. The headline values are printed for the caller to check against
mxpulse's answers: equal values are what makes the SQL equivalent.

    python figures.py ENGINE LAKE_ROOT FILES_JSON MONTH OVERVIEW_FROM TZ RUNS

ENGINE: duckdb (read_parquet over the tables' current files, listed in FILES_JSON) or chdb
(deltaLakeLocal over the tables). Prints one JSON object.
"""

import json
import os
import statistics
import sys
import time


def months_back(month, n):
    year, mon = (int(x) for x in month.split("-"))
    index = year * 12 + (mon - 1) - n
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_end(month):
    import calendar

    year, mon = (int(x) for x in month.split("-"))
    return f"{month}-{calendar.monthrange(year, mon)[1]:02d}"


class Dialect:
    def __init__(self, engine, tz):
        self.engine = engine
        self.tz = tz

    def local(self, column):
        if self.engine == "duckdb":
            return f"timezone('{self.tz}', {column})"
        return f"toTimeZone({column}, '{self.tz}')"

    def fmt(self, expr, pattern):
        if self.engine == "duckdb":
            return f"strftime({expr}, '{pattern}')"
        return f"formatDateTime({expr}, '{pattern}')"

    def date(self, text):
        return f"CAST('{text}' AS DATE)"

    def day_number(self, expr):
        if self.engine == "duckdb":
            return f"(CAST({expr} AS DATE) - DATE '1970-01-01')"
        return f"toRelativeDayNum({expr})"

    def minus_days(self, date_expr, days):
        if self.engine == "duckdb":
            return f"({date_expr} - INTERVAL {days} DAY)"
        return f"({date_expr} - toIntervalDay({days}))"

    def settings(self):
        return "" if self.engine == "duckdb" else " SETTINGS group_by_use_nulls = 1"


def rooms_view(d):
    """The rooms of mxpulse's `rooms` view: kinds from each room's state over all events."""
    return f"""
WITH created AS (
  SELECT room, server, domain, sender AS creator, ts AS created_at, room_type
  FROM events WHERE type = 'm.room.create'
), facts AS (
  SELECT room,
    max(CASE WHEN is_direct THEN 1 ELSE 0 END) AS is_direct,
    max(CASE WHEN type = 'm.room.encryption' THEN 1 ELSE 0 END) AS encrypted,
    argMin(join_rule, ts) AS join_rule,
    argMin(access_rule, ts) AS access_rule
  FROM (SELECT room, is_direct, type, ts,
          CASE WHEN type = 'm.room.join_rules' THEN join_rule END AS join_rule,
          CASE WHEN type = 'im.vector.room.access_rules' THEN access_rule END AS access_rule
        FROM events) AS e
  GROUP BY room
), members AS (
  SELECT room, count(*) AS members FROM (
    SELECT room, target, argMax(membership, ts) AS membership
    FROM events WHERE type = 'm.room.member' GROUP BY room, target
  ) AS last WHERE membership = 'join' GROUP BY room
)
SELECT c.room AS room, c.server AS server, c.domain AS domain, c.creator AS creator,
  c.created_at AS created_at,
  CASE
    WHEN c.room_type = 'm.space' THEN 'space'
    WHEN coalesce(f.is_direct, 0) = 1 THEN 'direct'
    WHEN f.join_rule = 'public' AND coalesce(f.encrypted, 0) = 0 THEN 'forum'
    WHEN coalesce(f.encrypted, 0) = 1 AND f.access_rule = 'unrestricted' THEN 'external'
    ELSE 'private'
  END AS kind,
  coalesce(m.members, 0) AS members
FROM created c LEFT JOIN facts f ON f.room = c.room LEFT JOIN members m ON m.room = c.room
""".replace("argMin(join_rule, ts)", d.arg_min("join_rule")).replace(
        "argMin(access_rule, ts)", d.arg_min("access_rule")
    ).replace("argMax(membership, ts)", d.arg_max("membership"))


def arg_min(self, column):
    # The value at the earliest time among rows where it is set (first_value ORDER BY ts).
    if self.engine == "duckdb":
        return f"arg_min({column}, ts) FILTER (WHERE {column} IS NOT NULL)"
    return f"argMinIf({column}, ts, {column} IS NOT NULL)"


def arg_max(self, column):
    if self.engine == "duckdb":
        return f"arg_max({column}, ts)"
    return f"argMax({column}, ts)"


Dialect.arg_min = arg_min
Dialect.arg_max = arg_max

EVENT_FIGURES = [
    ("messages", "type IN ('m.room.message', 'm.room.encrypted') AND (rel_type IS NULL OR rel_type NOT IN ('m.annotation', 'm.replace'))", None),
    ("threads", "type IN ('m.room.message', 'm.room.encrypted') AND rel_type = 'm.thread'", None),
    ("reactions", "type = 'm.reaction'", None),
    ("calls_started", "type = 'm.call.invite' OR (type = 'm.call.member' AND call = 'join')", "calls"),
    ("call_participants", "(type = 'm.call.member' AND call = 'join') OR type IN ('m.call.invite', 'm.call.answer')", "sender"),
    ("live_location_shares", "type = 'm.beacon_info' AND live", None),
]

ROOM_FIGURES = [
    ("rooms_created", "true"),
    ("rooms_created_direct", "kind = 'direct'"),
    ("rooms_created_private", "kind = 'private'"),
    ("rooms_created_external", "kind = 'external'"),
    ("rooms_created_forum", "kind = 'forum'"),
    ("rooms_created_space", "kind = 'space'"),
]


def grouped(d, table, time_expr, user, figures, months, dims, where, daily_month):
    """One scan: each figure by month in total and by each dim, and by day of `daily_month`."""
    period = d.fmt(time_expr, "%Y-%m")
    day = d.fmt(time_expr, "%Y-%m-%d")
    sets = ["(p)"] + [f"(p, {x})" for x in dims] + ["(p, dd)"]
    aggregates = []
    for name, condition, value in figures:
        if value is None:
            v = f"count(*) FILTER (WHERE {condition})"
        elif value == "calls":
            key = f"CASE WHEN type = 'm.call.invite' THEN hex(event) ELSE concat(CAST(room AS VARCHAR), ' ', {day}) END"
            v = f"count(DISTINCT {key}) FILTER (WHERE {condition})"
        else:
            v = f"count(DISTINCT {value}) FILTER (WHERE {condition})"
        aggregates.append(f"{v} AS {name}_value, count(DISTINCT {user}) FILTER (WHERE {condition}) AS {name}_users")
    month_list = ", ".join(f"'{m}'" for m in months)
    dims_select = "".join(f", {x}" for x in dims)
    return (
        f"SELECT p, dd{dims_select}, {', '.join(aggregates)} FROM ("
        f"  SELECT *, {period} AS p, CASE WHEN {period} = '{daily_month}' THEN {day} END AS dd FROM {table}"
        f"  WHERE {where}) AS x WHERE p IN ({month_list}) "
        f"GROUP BY GROUPING SETS ({', '.join(sets)})" + d.settings()
    )


def date_ranges(d, months, column):
    parts = []
    for m in months:
        start, end = f"{m}-01", month_end(m)
        parts.append(
            f"({column} >= {d.minus_days(d.date(start), 1)} AND {column} <= {d.date(end)} + INTERVAL 1 DAY)"
        )
    return "(" + " OR ".join(parts) + ")"


def report_queries(d, month):
    """The month's report: every figure in total and by breakdown for the month, the month
    before (MoM) and a year before (YoY), the days of the month (peak), r30 and the total of
    accounts at the three months' ends, the top forums."""
    months = [months_back(month, 12), months_back(month, 1), month]
    queries = {}
    queries["visits"] = grouped(
        d, "visits", "day", "\"user\"",
        [("active_users", "platform <> 'unknown'", "\"user\"")],
        months, ["server", "domain", "platform"],
        f"platform <> 'unknown' AND {date_ranges(d, months, 'day')}", month,
    )
    queries["events"] = grouped(
        d, "events", d.local("ts"), "sender", EVENT_FIGURES, months, ["server", "domain"],
        "(" + " OR ".join(f"({c})" for _, c, _ in EVENT_FIGURES) + f") AND {date_ranges(d, months, 'date')}",
        month,
    )
    queries["rooms"] = grouped(
        d, f"({rooms_view(d)}) AS rooms_view", d.local("created_at"), "creator",
        [(n, c, None) for n, c in ROOM_FIGURES], months, ["server", "domain"], "true", month,
    )
    queries["accounts"] = grouped(
        d, "accounts", d.local("ts"), "\"user\"",
        [("accounts_created", "change = 'created' AND user_type = 'regular'", None)],
        months, ["server", "domain"],
        f"change = 'created' AND user_type = 'regular' AND {date_ranges(d, months, 'date')}", month,
    )
    ends = " UNION ALL ".join(
        f"SELECT '{m}' AS period, {d.date(month_end(m))} AS end_day" for m in months
    )
    queries["total_active_accounts"] = (
        f"SELECT e.period, server, domain, sum(CASE change WHEN 'created' THEN 1 WHEN 'reactivated' THEN 1 "
        f"WHEN 'deactivated' THEN -1 ELSE 0 END) AS total "
        f"FROM accounts AS a CROSS JOIN ({ends}) AS e "
        f"WHERE user_type = 'regular' AND {d.fmt(d.local('a.ts'), '%Y-%m')} <= e.period "
        f"GROUP BY GROUPING SETS ((e.period), (e.period, server), (e.period, domain))" + d.settings()
    )
    queries["r30_users"] = (
        f"SELECT period, server, domain, count(DISTINCT \"user\") AS r30 FROM ("
        f"  SELECT e.period AS period, v.\"user\" AS \"user\", v.server AS server, v.domain AS domain, "
        f"    min({d.day_number('v.day')}) AS first_day, max({d.day_number('v.day')}) AS last_day "
        f"  FROM visits AS v CROSS JOIN ({ends}) AS e "
        f"  WHERE v.platform <> 'unknown' AND v.day > {d.minus_days('e.end_day', 60)} AND v.day <= e.end_day "
        f"  GROUP BY e.period, v.\"user\", v.server, v.domain) AS seen "
        f"WHERE last_day - first_day > 30 "
        f"GROUP BY GROUPING SETS ((period), (period, server), (period, domain))" + d.settings()
    )
    queries["forums"] = (
        f"SELECT server, members, {d.fmt(d.local('created_at'), '%Y-%m')} AS created FROM ({rooms_view(d)}) AS r "
        f"WHERE kind = 'forum' AND members >= 3 ORDER BY members DESC, created_at LIMIT 10"
    )
    return queries


def overview_queries(d, first, month):
    """24 months of the headline figures, totals only (and the year before for YoY)."""
    start = months_back(first, 12)
    return {
        "active_users": f"SELECT {d.fmt('day', '%Y-%m')} AS p, count(DISTINCT \"user\") FROM visits "
        f"WHERE platform <> 'unknown' AND day >= {d.date(start + '-01')} AND day <= {d.date(month_end(month))} GROUP BY p",
        "messages": f"SELECT {d.fmt(d.local('ts'), '%Y-%m')} AS p, count(*) FROM events "
        f"WHERE type IN ('m.room.message', 'm.room.encrypted') AND (rel_type IS NULL OR rel_type NOT IN ('m.annotation', 'm.replace')) "
        f"AND date >= {d.minus_days(d.date(start + '-01'), 1)} GROUP BY p",
        "rooms_created": f"SELECT {d.fmt(d.local('created_at'), '%Y-%m')} AS p, count(*) FROM ({rooms_view(d)}) AS r GROUP BY p",
        "accounts": f"SELECT {d.fmt(d.local('ts'), '%Y-%m')} AS p, count(*) FILTER (WHERE change = 'created'), "
        f"sum(CASE change WHEN 'created' THEN 1 WHEN 'reactivated' THEN 1 WHEN 'deactivated' THEN -1 ELSE 0 END) "
        f"FROM accounts WHERE user_type = 'regular' GROUP BY p",
    }


def connect(engine, root, files):
    if engine == "duckdb":
        import duckdb

        con = duckdb.connect()
        for table, paths in files.items():
            listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{listed}], hive_partitioning = true)"
            )
        return lambda sql: con.execute(sql).fetchall()
    import chdb

    # chDB reads files under its working directory only.
    os.chdir(root)
    con = chdb.connect(":memory:")
    for table in files:
        con.query(
            f"CREATE VIEW {table} AS SELECT * FROM deltaLakeLocal('{os.path.join(root, table)}')"
        )

    def run(sql):
        return [line.split(",") for line in con.query(sql, "CSV").bytes().decode().splitlines()]

    return run


def timed(run, queries, runs):
    """Cold (first) and warm (median of the rest) seconds of running every query in turn."""
    times, results = [], None
    for _ in range(runs):
        started = time.perf_counter()
        results = {name: run(sql) for name, sql in queries.items()}
        times.append(time.perf_counter() - started)
    warm = statistics.median(times[1:]) if len(times) > 1 else times[0]
    return {"cold_s": times[0], "warm_s": warm, "runs": len(times)}, results


def as_number(value):
    try:
        return float(str(value).strip('"'))
    except ValueError:
        return None


def main():
    engine, root, files_json, month, first, tz, runs = sys.argv[1:8]
    files = json.load(open(files_json))
    d = Dialect(engine, tz)
    run = connect(engine, root, files)
    report_time, report = timed(run, report_queries(d, month), int(runs))
    overview_time, overview = timed(run, overview_queries(d, first, month), int(runs))
    # Headline values of the month, in total, for the caller's check against mxpulse.
    def total(rows, column, period_index=0, key_indexes=()):
        for row in rows:
            if str(row[period_index]).strip('"') == month and all(
                row[i] in (None, "\\N", "NULL") for i in key_indexes
            ):
                return as_number(row[column])
        return None

    visits_rows = report["visits"]
    events_rows = report["events"]
    headline = {
        # visits: p, dd, server, domain, platform, value, users
        "active_users": total(visits_rows, 5, 0, (1, 2, 3, 4)),
        # events: p, dd, server, domain, then (value, users) per figure; messages first
        "messages": total(events_rows, 4, 0, (1, 2, 3)),
        "rooms_created": total(report["rooms"], 4, 0, (1, 2, 3)),
        "accounts_created": total(report["accounts"], 4, 0, (1, 2, 3)),
        "total_active_accounts": total(report["total_active_accounts"], 3, 0, (1, 2)),
        "r30_users": total(report["r30_users"], 3, 0, (1, 2)),
        "forums": len(report["forums"]),
    }
    print(
        json.dumps(
            {
                "engine": engine,
                "report": report_time,
                "overview": overview_time,
                "headline": headline,
            }
        )
    )


if __name__ == "__main__":
    main()
