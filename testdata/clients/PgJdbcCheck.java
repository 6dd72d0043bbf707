// pgjdbc (what DBeaver and most Java applications use) through airlock:
// see README.md in this directory. Run as a single-file program:
//   java -cp /usr/share/java/postgresql.jar PgJdbcCheck.java host port user password database
//
// pgjdbc sends every statement through Parse/Bind/Execute, unnamed until
// a statement has run prepareThreshold (5) times, then as a named
// statement prepared on the server, whose results it then reads in binary.

import java.math.BigDecimal;
import java.sql.*;
import java.util.*;

public class PgJdbcCheck {
    static void check(String name, boolean ok, Object detail) {
        if (!ok) {
            System.err.println("FAILED: " + name + " " + detail);
            System.exit(1);
        }
        System.out.println("pass: " + name);
    }

    static void refused(Connection c, String sql, String rule) throws SQLException {
        try (Statement s = c.createStatement()) {
            s.execute(sql);
        } catch (SQLException e) {
            check("refused " + sql, "42501".equals(e.getSQLState()) && e.getMessage().contains(rule),
                  e.getSQLState() + " " + e.getMessage());
            return;
        }
        check("refused " + sql, false, "it ran");
    }

    public static void main(String[] a) throws Exception {
        try {
            Class.forName("org.postgresql.Driver");
        } catch (ClassNotFoundException e) {
            System.out.println("skip: pgjdbc is not on the class path");
            System.exit(3);
        }
        String url = "jdbc:postgresql://" + a[0] + ":" + a[1] + "/" + a[4] + "?connectTimeout=10";
        try (Connection c = DriverManager.getConnection(url, a[2], a[3])) {
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT id, name, balance, created, tags, meta, mood, photo, uid FROM customers WHERE id = ?")) {
                ps.setInt(1, 1);
                try (ResultSet rs = ps.executeQuery()) {
                    check("a row", rs.next(), "");
                    Array tags = rs.getArray(5);
                    check("typed read",
                        rs.getInt(1) == 1 && rs.getString(2).equals("Alice")
                            && rs.getBigDecimal(3).compareTo(new BigDecimal("1234.50")) == 0
                            && rs.getTimestamp(4).toInstant().toString().equals("2024-01-02T03:04:05Z")
                            && Arrays.equals((String[]) tags.getArray(), new String[] {"a", "b"})
                            && rs.getString(6).equals("{\"k\": 1}") && rs.getString(7).equals("calm")
                            && Arrays.equals(rs.getBytes(8), new byte[] {1, 2})
                            && rs.getObject(9).toString().equals("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                        rs.getString(4) + " " + rs.getString(6));
                }
            }
            // Past prepareThreshold: a statement prepared on the server, read in binary.
            try (PreparedStatement ps = c.prepareStatement("SELECT email, ssn, name, id FROM customers WHERE id = ?")) {
                for (int i = 0; i < 10; i++) {
                    ps.setInt(1, 1);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        String got = rs.getString(1) + "|" + rs.getString(2) + "|" + rs.getString(3) + "|" + rs.getInt(4);
                        check("masked, prepared run " + i, got.equals("****@example.com|****|Alice|1"), got);
                    }
                }
            }
            refused(c, "SELECT * FROM secrets", "agent-rw.deny-tables");
            refused(c, "DELETE FROM notes", "builtin.unbounded-write");
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT 1")) {
                check("usable after refusals", rs.next() && rs.getInt(1) == 1, "");
            }

            // What GUI tools call first: metadata.
            DatabaseMetaData md = c.getMetaData();
            Set<String> tables = new TreeSet<>();
            try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_NAME"));
            }
            check("getTables", tables.containsAll(List.of("customers", "notes")), tables);
            List<String> cols = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "public", "customers", "%")) {
                while (rs.next()) cols.add(rs.getString("COLUMN_NAME"));
            }
            check("getColumns", cols.size() == 11 && cols.get(2).equals("email"), cols);
            try (ResultSet rs = md.getPrimaryKeys(null, "public", "customers")) {
                check("getPrimaryKeys", rs.next() && rs.getString("COLUMN_NAME").equals("id"), "");
            }
            try (ResultSet rs = md.getIndexInfo(null, "public", "customers", false, false)) {
                check("getIndexInfo", rs.next(), "");
            }
            try (ResultSet rs = md.getTypeInfo()) {
                check("getTypeInfo", rs.next(), "");
            }
            try (ResultSet rs = md.getSchemas()) {
                check("getSchemas", rs.next(), "");
            }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT * FROM customers ORDER BY id")) {
                ResultSetMetaData rm = rs.getMetaData();
                check("ResultSetMetaData", rm.getColumnCount() == 11 && rm.getColumnName(3).equals("email")
                    && rm.getTableName(3).equals("customers"), rm.getColumnName(3));
                rs.next();
                check("masked, SELECT *", rs.getString("email").equals("****@example.com"), rs.getString("email"));
            }

            // Batches and transactions.
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO notes (customer_id, body) VALUES (?, ?)")) {
                for (int i = 0; i < 20; i++) {
                    ps.setInt(1, 1);
                    ps.setString(2, "batch " + i);
                    ps.addBatch();
                }
                ps.executeBatch();
            }
            c.commit();
            try (Statement s = c.createStatement()) {
                s.execute("INSERT INTO notes (body) VALUES ('rolled back')");
                try {
                    s.execute("SELECT * FROM secrets");
                } catch (SQLException e) {
                    c.rollback();
                }
            }
            c.setAutoCommit(true);
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM notes")) {
                rs.next();
                check("batch committed, refusal rolled back", rs.getInt(1) == 20, rs.getInt(1));
            }

            // A cursor (setFetchSize in a transaction) over masked data.
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.setFetchSize(1);
                try (ResultSet rs = s.executeQuery("SELECT email FROM customers ORDER BY id")) {
                    List<String> got = new ArrayList<>();
                    while (rs.next()) got.add(rs.getString(1));
                    check("fetch size 1", got.equals(List.of("****@example.com", "****@example.org")), got);
                }
            }
            c.commit();
            c.setAutoCommit(true);

            // Cancel: setQueryTimeout sends a cancel request through airlock.
            try (Statement s = c.createStatement()) {
                s.setQueryTimeout(1);
                s.executeQuery("SELECT count(*) FROM generate_series(1, 3000000000)");
                check("cancel", false, "the slow query finished");
            } catch (SQLException e) {
                check("cancel", "57014".equals(e.getSQLState()), e.getSQLState() + " " + e.getMessage());
            }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT 2")) {
                check("usable after cancel", rs.next() && rs.getInt(1) == 2, "");
            }
        }
        System.out.println("ok");
    }
}
