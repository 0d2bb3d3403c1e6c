-- Catalog queries of BI tools, in the forms they send them (JDBC: extended protocol), one per
-- statement; `--` lines name the tool. Run by tests/clients/JdbcClient.java `queries`.

-- Metabase, sync: the schemas
SELECT nspname AS "TABLE_SCHEM", current_database() AS "TABLE_CATALOG" FROM pg_catalog.pg_namespace
WHERE nspname <> 'pg_toast' AND nspname !~ '^pg_temp_' ORDER BY "TABLE_SCHEM";

-- Metabase, sync: the tables, their kind, description and row estimate
SELECT n.nspname AS schema, c.relname AS name,
  CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW'
    WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS type,
  d.description AS description, stat.n_live_tup AS estimated_row_count
FROM pg_catalog.pg_class AS c
INNER JOIN pg_catalog.pg_namespace AS n ON c.relnamespace = n.oid
LEFT JOIN pg_catalog.pg_description AS d
  ON (c.oid = d.objoid) AND (d.objsubid = 0) AND (d.classoid = 'pg_class'::regclass)
LEFT JOIN pg_stat_user_tables AS stat ON (n.nspname = stat.schemaname) AND (c.relname = stat.relname)
WHERE c.relkind IN ('r', 'p', 'v', 'f', 'm') AND n.nspname !~ '^information_schema|catalog_history|pg_'
  AND has_schema_privilege(n.nspname, 'USAGE')
  AND (has_table_privilege(c.oid, 'SELECT') OR has_any_column_privilege(c.oid, 'SELECT'))
ORDER BY schema, name;

-- Metabase, sync: the fields, their PostgreSQL type, primary key, comment, required
SELECT "c"."column_name" AS "name",
  CASE WHEN "c"."udt_schema" IN ('public', 'pg_catalog') THEN FORMAT('%s', "c"."udt_name")
    ELSE FORMAT('"%s"."%s"', "c"."udt_schema", "c"."udt_name") END AS "database-type",
  "c"."ordinal_position" - 1 AS "database-position",
  "c"."table_schema" AS "table-schema", "c"."table_name" AS "table-name",
  "pk"."column_name" IS NOT NULL AS "pk?",
  COL_DESCRIPTION(CAST(CAST(FORMAT('%I.%I', CAST("c"."table_schema" AS TEXT), CAST("c"."table_name" AS TEXT)) AS REGCLASS) AS OID),
    "c"."ordinal_position") AS "field-comment",
  ("column_default" IS NULL) AND ("is_nullable" = 'NO') AND ("is_identity" = 'NO') AS "database-required"
FROM "information_schema"."columns" AS "c"
LEFT JOIN (SELECT "tc"."table_schema", "tc"."table_name", "kc"."column_name"
    FROM "information_schema"."table_constraints" AS "tc"
    INNER JOIN "information_schema"."key_column_usage" AS "kc"
      ON ("tc"."constraint_name" = "kc"."constraint_name") AND ("tc"."table_schema" = "kc"."table_schema")
     AND ("tc"."table_name" = "kc"."table_name")
    WHERE "tc"."constraint_type" = 'PRIMARY KEY') AS "pk"
  ON ("c"."table_schema" = "pk"."table_schema") AND ("c"."table_name" = "pk"."table_name")
 AND ("c"."column_name" = "pk"."column_name")
WHERE "c"."table_schema" !~ '^information_schema|catalog_history|pg_' AND ("c"."table_schema" = 'public')
ORDER BY "table-schema" ASC, "table-name" ASC, "database-position" ASC;

-- Metabase, sync: the fields of materialized views
SELECT "pa"."attname" AS "name", FORMAT('%s', "pt"."typname") AS "database-type",
  "pa"."attnum" - 1 AS "database-position", "pn"."nspname" AS "table-schema", "pc"."relname" AS "table-name"
FROM "pg_catalog"."pg_class" AS "pc"
INNER JOIN "pg_catalog"."pg_namespace" AS "pn" ON "pn"."oid" = "pc"."relnamespace"
INNER JOIN "pg_catalog"."pg_attribute" AS "pa" ON "pa"."attrelid" = "pc"."oid"
INNER JOIN "pg_catalog"."pg_type" AS "pt" ON "pt"."oid" = "pa"."atttypid"
WHERE ("pc"."relkind" = 'm') AND ("pa"."attnum" >= 1) AND ("pn"."nspname" = 'public')
ORDER BY "table-schema" ASC, "table-name" ASC, "database-position" ASC;

-- Metabase, sync: the foreign keys
SELECT "fk_table"."relname" AS "fk-table-name", "fk_column"."attname" AS "fk-column-name",
  "pk_table"."relname" AS "pk-table-name", "pk_column"."attname" AS "pk-column-name"
FROM "pg_constraint" AS "c"
INNER JOIN "pg_class" AS "fk_table" ON "c"."conrelid" = "fk_table"."oid"
INNER JOIN "pg_namespace" AS "fk_ns" ON "c"."connamespace" = "fk_ns"."oid"
INNER JOIN "pg_attribute" AS "fk_column" ON "c"."conrelid" = "fk_column"."attrelid"
INNER JOIN "pg_class" AS "pk_table" ON "c"."confrelid" = "pk_table"."oid"
INNER JOIN "pg_attribute" AS "pk_column" ON "c"."confrelid" = "pk_column"."attrelid"
WHERE ("c"."contype" = 'f'::char) AND ("fk_ns"."nspname" = 'public')
ORDER BY "fk-table-name" ASC;

-- Metabase, sync: may this user read the table
SELECT TRUE AS "_" FROM "public"."events" WHERE 1 <> 1 LIMIT 0;

-- Metabase, a question: messages by week, Paris time
SELECT DATE_TRUNC('week', ("public"."events"."ts" AT TIME ZONE 'Europe/Paris')) AS "ts", COUNT(*) AS "count"
FROM "public"."events" GROUP BY 1 ORDER BY 1 ASC;

-- Grafana, query editor: the tables
SELECT quote_ident(table_name) AS "table" FROM information_schema.tables
WHERE quote_ident(table_schema) NOT IN ('information_schema', 'pg_catalog') ORDER BY 1;

-- Grafana, query editor: the columns of a table and their types
SELECT column_name AS "column", data_type AS "type" FROM information_schema.columns
WHERE table_name = 'events' AND table_schema = 'public' ORDER BY ordinal_position;

-- Grafana, a panel: messages per day ($__timeGroupAlias, $__timeFilter expanded)
SELECT floor(extract(epoch from ts)/86400)*86400 AS "time", count(*) AS messages FROM events
WHERE ts BETWEEN '2024-05-01T00:00:00Z' AND '2024-05-31T23:59:59Z' GROUP BY 1 ORDER BY 1;
