// MariaDB Connector/J (DBeaver's MariaDB driver) through airlock, with its
// default settings: see README.md in this directory. Run as a single-file
// program:
//   java -cp /usr/share/java/mariadb-java-client.jar MariadbJdbcCheck.java host port user password database
//
// At login it sends `set autocommit=1, sql_mode =
// concat(@@sql_mode,',STRICT_TRANS_TABLES')` (jdbcCompliantTruncation).

import java.sql.*;
import java.util.*;

public class MariadbJdbcCheck {
    static void check(String name, boolean ok, Object detail) {
        if (!ok) {
            System.err.println("FAILED: " + name + " " + detail);
            System.exit(1);
        }
        System.out.println("pass: " + name);
    }

    public static void main(String[] a) throws Exception {
        try {
            Class.forName("org.mariadb.jdbc.Driver");
        } catch (ClassNotFoundException e) {
            System.out.println("skip: MariaDB Connector/J is not on the class path");
            System.exit(3);
        }
        for (String extra : new String[] {"", "&useServerPrepStmts=true"}) {
            String url = "jdbc:mariadb://" + a[0] + ":" + a[1] + "/" + a[4] + "?connectTimeout=10000" + extra;
            String how = extra.isEmpty() ? "client-side prepare" : "server-side prepare";
            try (Connection c = DriverManager.getConnection(url, a[2], a[3])) {
                try (PreparedStatement ps = c.prepareStatement("SELECT email, ssn, name FROM customers WHERE id = ?")) {
                    for (int i = 0; i < 6; i++) {
                        ps.setInt(1, 1);
                        try (ResultSet rs = ps.executeQuery()) {
                            rs.next();
                            String got = rs.getString(1) + "|" + rs.getString(2) + "|" + rs.getString(3);
                            check("masked, " + how + " run " + i, got.equals("****@example.com|****|Alice"), got);
                        }
                    }
                }
                try (Statement s = c.createStatement()) {
                    s.executeQuery("SELECT * FROM secrets");
                    check("refused (" + how + ")", false, "it ran");
                } catch (SQLException e) {
                    check("refused (" + how + ")", e.getMessage().contains("agent-rw.deny-tables"), e.getMessage());
                }
                DatabaseMetaData md = c.getMetaData();
                Set<String> tables = new TreeSet<>();
                try (ResultSet rs = md.getTables(c.getCatalog(), null, "%", null)) {
                    while (rs.next()) tables.add(rs.getString("TABLE_NAME"));
                }
                check("getTables (" + how + ")", tables.containsAll(List.of("customers", "notes")), tables);
                List<String> cols = new ArrayList<>();
                try (ResultSet rs = md.getColumns(c.getCatalog(), null, "customers", "%")) {
                    while (rs.next()) cols.add(rs.getString("COLUMN_NAME"));
                }
                check("getColumns (" + how + ")", cols.contains("email"), cols);
                c.setAutoCommit(false);
                try (PreparedStatement ps = c.prepareStatement("INSERT INTO notes (customer_id, body) VALUES (?, ?)")) {
                    for (int i = 0; i < 10; i++) {
                        ps.setInt(1, 1);
                        ps.setString(2, "batch " + i);
                        ps.addBatch();
                    }
                    ps.executeBatch();
                }
                c.commit();
                c.setAutoCommit(true);
                try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT 1")) {
                    check("usable (" + how + ")", rs.next() && rs.getInt(1) == 1, "");
                }
            }
        }
        System.out.println("ok");
    }
}
