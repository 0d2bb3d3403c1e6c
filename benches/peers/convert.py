"""The conversion stage by DuckDB: the same records as JSON lines into one Parquet file with
DuckDB's defaults, as an engineer would do without mxpulse:

    COPY (SELECT * FROM read_json('RECORDS.jsonl')) TO 'OUT.parquet' (FORMAT parquet)

    python convert.py RECORDS_JSONL OUT_PARQUET

Prints one JSON object: the seconds the COPY took (in a fresh in-memory database, the import
of the module not counted), the rows written and the file's bytes.
"""

import json
import os
import sys
import time

import duckdb


def main():
    records, out = sys.argv[1], sys.argv[2]
    connection = duckdb.connect()
    started = time.perf_counter()
    connection.execute(
        f"COPY (SELECT * FROM read_json('{records}')) TO '{out}' (FORMAT parquet)"
    )
    seconds = time.perf_counter() - started
    rows = connection.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
    print(json.dumps({"seconds": seconds, "rows": rows, "bytes": os.path.getsize(out),
                      "threads": connection.execute("SELECT current_setting('threads')").fetchone()[0]}))


if __name__ == "__main__":
    main()
