"""Reads the mxpulse lake with DuckDB's delta extension and prints what it sees, as JSON.

Usage: duckdb_counts.py LAKE_DIR
Proves the lake is readable as it is by another engine than DataFusion (tests/lake_readers.rs
compares these numbers with DataFusion's).
"""

import json
import pathlib
import sys

import duckdb
import duckdb_ext

extension = next(pathlib.Path(duckdb_ext.__path__[0]).glob("extensions/v*/*/delta.duckdb_extension"))
lake = pathlib.Path(sys.argv[1])
con = duckdb.connect()
con.execute(f"LOAD '{extension}'")


def one(sql):
    return con.execute(sql).fetchone()[0]


print(
    json.dumps(
        {
            "events": one(f"SELECT count(*) FROM delta_scan('{lake / 'events'}')"),
            "event_senders": one(f"SELECT count(DISTINCT sender) FROM delta_scan('{lake / 'events'}')"),
            "event_days": one(f"SELECT count(DISTINCT date) FROM delta_scan('{lake / 'events'}')"),
            "visits": one(f"SELECT count(*) FROM delta_scan('{lake / 'visits'}')"),
            "accounts": one(f"SELECT count(*) FROM delta_scan('{lake / 'accounts'}')"),
            "max_event_ts_ms": one(f"SELECT epoch_ms(max(ts)) FROM delta_scan('{lake / 'events'}')"),
        }
    )
)
