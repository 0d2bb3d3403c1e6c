// A JDBC client doing what Metabase, DBeaver and other JDBC tools do over the PostgreSQL
// driver (pgjdbc, the extended query protocol): connect (the driver's own SETs), read the
// catalog through DatabaseMetaData, run prepared statements with bound parameters (more than
// pgjdbc's prepareThreshold times, so named server-side statements and binary results too),
// manual commit, and hostile statements. It prints one `key=value` line per fact; the Rust
// test (tests/serve.rs) holds the expectations.
//
// Usage: java -cp /usr/share/java/postgresql.jar JdbcClient.java PORT USER PASSWORD SERVER [all|scope]
// (`scope` runs the prepared statements and the transaction only), or
// ... JdbcClient.java PORT USER PASSWORD queries FILE: each `;`-terminated statement of FILE
// prepared and run, `query_N_rows=` and `query_N_first=` (its first column) or `query_N_error=`.
import java.sql.*;
import java.util.ArrayList;
import java.util.List;

public class JdbcClient {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/mxpulse";
        String server = args[3];
        boolean all = args.length < 5 || args[4].equals("all");
        try (Connection c = DriverManager.getConnection(url, args[1], args[2])) {
            if (server.equals("queries")) {
                queries(c, java.nio.file.Files.readString(java.nio.file.Path.of(args[4])));
                return;
            }
            fact("version", c.getMetaData().getDatabaseProductVersion());
            fact("isolation", c.getTransactionIsolation());
            if (all) {
                catalog(c);
            }
            preparedAndTransaction(c, server);
            if (all) {
                hostile(c);
            }
        } catch (SQLException e) {
            fact("error", e.getSQLState() + " " + e.getMessage().replace('\n', ' '));
        }
    }

    static void catalog(Connection c) throws SQLException {
        List<String> names = new ArrayList<>();
        try (ResultSet r = c.getMetaData().getTables(null, "public", "%", new String[] {"VIEW"})) {
            while (r.next()) names.add(r.getString("TABLE_NAME"));
        }
        fact("views", String.join(",", names));
        names.clear();
        try (ResultSet r = c.getMetaData().getColumns(null, "public", "visits", "%")) {
            while (r.next()) names.add(r.getString("COLUMN_NAME") + ":" + r.getString("TYPE_NAME"));
        }
        fact("visits_columns", String.join(",", names));
    }

    static void preparedAndTransaction(Connection c, String server) throws SQLException {
        List<String> counts = new ArrayList<>();
        try (PreparedStatement s = c.prepareStatement("SELECT count(*) AS n FROM events WHERE server = ?")) {
            for (int i = 0; i < 7; i++) {
                s.setString(1, server);
                try (ResultSet r = s.executeQuery()) {
                    r.next();
                    counts.add(Long.toString(r.getLong("n")));
                }
            }
        }
        fact("events_of_server", String.join(",", counts));
        try (PreparedStatement s = c.prepareStatement(
                "SELECT count(DISTINCT \"user\") AS users, min(day) AS first_day FROM visits"
                + " WHERE platform <> 'unknown' AND day BETWEEN ? AND ?")) {
            s.setDate(1, Date.valueOf("2024-05-01"));
            s.setDate(2, Date.valueOf("2024-05-31"));
            try (ResultSet r = s.executeQuery()) {
                r.next();
                fact("active_users_may", r.getLong("users"));
                fact("first_day", r.getDate("first_day"));
            }
        }

        c.setAutoCommit(false);
        try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT count(*) FROM visits")) {
            r.next();
            fact("visits_in_transaction", r.getLong(1));
        }
        c.commit();
        c.setAutoCommit(true);
        try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT count(*) FROM events")) {
            r.next();
            fact("events", r.getLong(1));
        }
    }

    static void hostile(Connection c) throws SQLException {
        String[] hostile = {
            "DELETE FROM events",
            "CREATE TABLE t AS SELECT 1",
            "COPY (SELECT 1) TO '/tmp/mxpulse-jdbc-stolen.csv'",
            "CREATE EXTERNAL TABLE p (line VARCHAR) STORED AS CSV LOCATION '/etc/passwd'",
            "SET datafusion.execution.batch_size = 1",
            "SELECT * FROM 'file:///etc/passwd'",
            "SELECT count(*) FROM generate_series(1, 5000000000) WHERE value % 7 = 3",
        };
        for (int i = 0; i < hostile.length; i++) {
            try (PreparedStatement s = c.prepareStatement(hostile[i])) {
                s.execute();
                fact("hostile_" + i, "accepted");
            } catch (SQLException e) {
                fact("hostile_" + i, e.getSQLState());
            }
            try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT count(*) FROM events")) {
                r.next();
                fact("events_after_" + i, r.getLong(1));
            }
        }
    }

    static void queries(Connection c, String file) {
        StringBuilder text = new StringBuilder();
        for (String line : file.split("\n")) {
            if (!line.startsWith("--")) text.append(line).append("\n");
        }
        int n = 0;
        for (String sql : text.toString().split(";\\s*\n")) {
            if (sql.isBlank()) continue;
            try (PreparedStatement s = c.prepareStatement(sql); ResultSet r = s.executeQuery()) {
                List<String> first = new ArrayList<>();
                while (r.next()) first.add(String.valueOf(r.getObject(1)));
                fact("query_" + n + "_rows", first.size());
                fact("query_" + n + "_first", String.join(",", first));
            } catch (SQLException e) {
                fact("query_" + n + "_error", e.getSQLState() + " " + e.getMessage().replace('\n', ' '));
            }
            n++;
        }
    }

    static void fact(String key, Object value) {
        System.out.println(key + "=" + value);
    }
}
