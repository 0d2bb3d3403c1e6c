"""Apache Superset against mxpulse's PostgreSQL endpoint, through Superset's own REST API, as
an analyst sets it up: add the database, create a dataset from `visits`, save a monthly time
series chart of distinct users, read the chart's data back. Prints one JSON object for the
Rust test (tests/superset.rs) to check; asserts nothing itself.

    python superset_flow.py SUPERSET_URL PG_PORT USER PASSWORD ADMIN_PASSWORD
"""

import json
import os
import sys

import requests

base, pg_port, user, password, admin_password = sys.argv[1:6]
out = {}
http = requests.Session()


def call(method, path, **kwargs):
    response = http.request(method, f"{base}{path}", timeout=120, **kwargs)
    try:
        body = response.json()
    except ValueError:
        body = response.text[:2000]
    return response.status_code, body


status, body = call(
    "POST",
    "/api/v1/security/login",
    json={"username": "admin", "password": admin_password, "provider": "db", "refresh": True},
)
out["login"] = status
http.headers["Authorization"] = f"Bearer {body['access_token']}"

uri = f"postgresql+psycopg2://{user}:{password}@127.0.0.1:{pg_port}/mxpulse"
name = f"mxpulse {os.getpid()}"
status, body = call(
    "POST", "/api/v1/database/test_connection/", json={"sqlalchemy_uri": uri, "database_name": name}
)
out["test_connection"] = [status, body]
status, body = call(
    "POST",
    "/api/v1/database/",
    json={"database_name": name, "sqlalchemy_uri": uri, "expose_in_sqllab": True},
)
out["database"] = [status, body if status >= 300 else None]
database = body.get("id") if isinstance(body, dict) else None

status, body = call("GET", f"/api/v1/database/{database}/schemas/")
out["schemas"] = body.get("result") if isinstance(body, dict) else body
status, body = call("GET", f"/api/v1/database/{database}/tables/?q=(schema_name:public)")
out["tables"] = sorted(t["value"] for t in body.get("result", [])) if isinstance(body, dict) else body

status, body = call(
    "POST", "/api/v1/dataset/", json={"database": database, "schema": "public", "table_name": "visits"}
)
out["dataset"] = [status, body if status >= 300 else None]
dataset = body.get("id") if isinstance(body, dict) else None
status, body = call("GET", f"/api/v1/dataset/{dataset}")
columns = body.get("result", {}).get("columns", []) if isinstance(body, dict) else []
out["dataset_columns"] = {c["column_name"]: [c.get("type"), c.get("is_dttm")] for c in columns}

# A monthly time series of distinct users, as Explore builds it (time grain P1M on `day`).
query_context = {
    "datasource": {"id": dataset, "type": "table"},
    "force": True,
    "queries": [
        {
            "columns": [
                {
                    "timeGrain": "P1M",
                    "columnType": "BASE_AXIS",
                    "sqlExpression": "day",
                    "label": "day",
                    "expressionType": "SQL",
                }
            ],
            "metrics": [
                {
                    "expressionType": "SQL",
                    "sqlExpression": 'COUNT(DISTINCT "user")',
                    "label": "users",
                }
            ],
            "filters": [
                {"col": "day", "op": "TEMPORAL_RANGE", "val": "2024-01-01 : 2024-12-31"}
            ],
            "orderby": [],
            "row_limit": 1000,
        }
    ],
    "result_format": "json",
    "result_type": "full",
}
params = {
    "viz_type": "echarts_timeseries_line",
    "datasource": f"{dataset}__table",
    "x_axis": "day",
    "time_grain_sqla": "P1M",
    "metrics": query_context["queries"][0]["metrics"],
    "adhoc_filters": [],
    "row_limit": 1000,
}
status, body = call(
    "POST",
    "/api/v1/chart/",
    json={
        "slice_name": "Utilisateurs par mois",
        "viz_type": "echarts_timeseries_line",
        "datasource_id": dataset,
        "datasource_type": "table",
        "params": json.dumps(params),
        "query_context": json.dumps(query_context),
    },
)
out["chart"] = [status, body if status >= 300 else None]
chart = body.get("id") if isinstance(body, dict) else None
status, body = call("GET", f"/api/v1/chart/{chart}/data/?format=json&force=true")
out["chart_data_status"] = status
if isinstance(body, dict) and body.get("result"):
    result = body["result"][0]
    out["chart_query"] = result.get("query")
    out["chart_error"] = result.get("error")
    out["chart_rows"] = [[row.get("day"), row.get("users")] for row in result.get("data", [])]
else:
    out["chart_error"] = body
# The inspector of Superset's own SQLAlchemy (1.4) over every table and view.
import sqlalchemy  # noqa: E402

engine = sqlalchemy.create_engine(uri)
inspector = sqlalchemy.inspect(engine)
out["sqlalchemy_version"] = sqlalchemy.__version__
inspected = {}
for relation in sorted(set(inspector.get_table_names()) | set(inspector.get_view_names())):
    try:
        inspected[relation] = {
            "columns": [column["name"] for column in inspector.get_columns(relation)],
            "primary_key": inspector.get_pk_constraint(relation)["constrained_columns"],
            "indexes": inspector.get_indexes(relation),
            "unique": inspector.get_unique_constraints(relation),
            "foreign_keys": inspector.get_foreign_keys(relation),
        }
    except Exception as error:  # noqa: BLE001 - reported for the Rust test to show
        inspected[relation] = {"error": str(error)[:500]}
out["inspector"] = inspected
print(json.dumps(out, default=str))
