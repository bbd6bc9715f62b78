import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.io.StringReader;
import java.io.StringWriter;
import java.net.URLDecoder;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.postgresql.PGConnection;
import org.postgresql.PGStatement;
import org.postgresql.copy.CopyManager;

/**
 * PgJDBC, driven by tests/explore/drivers.py through racebench's proxy: one command a line on
 * stdin (id, op, args; tab-separated, each field URL-encoded), one answer a line on stdout (id,
 * "ok", fields... or id, "err", sqlstate, message). Commands run in order on a worker thread,
 * except "cancel", which cancels the running statement at once (Statement.cancel()).
 */
public final class DriverAgent {
  private static final PrintStream OUT =
      new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
  private static Connection conn;
  private static volatile Statement running;

  public static void main(String[] args) throws Exception {
    ExecutorService worker = Executors.newSingleThreadExecutor();
    BufferedReader in =
        new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    String line;
    while ((line = in.readLine()) != null) {
      String[] fields = line.split("\t", -1);
      String id = fields[0];
      String op = decode(fields[1]);
      List<String> a = new ArrayList<>();
      for (int i = 2; i < fields.length; i++) {
        a.add(decode(fields[i]));
      }
      if (op.equals("cancel")) {
        answer(id, cancel());
      } else {
        worker.submit(() -> answer(id, run(op, a)));
      }
    }
    worker.shutdown();
    worker.awaitTermination(60, TimeUnit.SECONDS);
    System.exit(0);
  }

  private static List<String> run(String op, List<String> a) {
    try {
      switch (op) {
        case "connect":
          conn = DriverManager.getConnection(a.get(0));
          return ok(List.of(query("SELECT pg_backend_pid()", List.of()).get(1)));
        case "simple":
          return ok(simple(a.get(0)));
        case "query":
          return ok(query(a.get(0), a.subList(1, a.size())));
        case "prepared":
          return ok(prepared(a.get(0), a.subList(1, a.size())));
        case "batch":
          return ok(batch(a.get(0), a.subList(1, a.size())));
        case "begin":
          conn.setAutoCommit(false);
          return ok(List.of());
        case "commit":
          conn.commit();
          conn.setAutoCommit(true);
          return ok(List.of());
        case "rollback":
          conn.rollback();
          conn.setAutoCommit(true);
          return ok(List.of());
        case "copy_in":
          return ok(List.of(String.valueOf(copy().copyIn(a.get(0), new StringReader(a.get(1))))));
        case "copy_out":
          StringWriter out = new StringWriter();
          copy().copyOut(a.get(0), out);
          return ok(List.of(out.toString()));
        case "close":
          conn.close();
          return ok(List.of());
        default:
          return List.of("err", "", "unknown op " + op);
      }
    } catch (SQLException e) {
      return List.of("err", nz(e.getSQLState()), nz(e.getMessage()));
    } catch (Exception e) {
      return List.of("err", "", e.toString());
    }
  }

  private static CopyManager copy() throws SQLException {
    return conn.unwrap(PGConnection.class).getCopyAPI();
  }

  /** A Statement (which PgJDBC sends with the extended protocol unless preferQueryMode=simple). */
  private static List<String> simple(String sql) throws SQLException {
    try (Statement st = conn.createStatement()) {
      running = st;
      return List.of(String.valueOf(outcome(st, st.execute(sql)).get(0)));
    } finally {
      running = null;
    }
  }

  /** A PreparedStatement with $1, $2... as ?: the row count, then each row's cells, a,b. */
  private static List<String> query(String sql, List<String> params) throws SQLException {
    try (PreparedStatement ps = conn.prepareStatement(placeholders(sql))) {
      bind(ps, params);
      running = ps;
      return outcome(ps, ps.execute());
    } finally {
      running = null;
    }
  }

  /** One server-side prepared statement (prepareThreshold 1), run once per run of params. */
  private static List<String> prepared(String sql, List<String> runs) throws SQLException {
    List<String> counts = new ArrayList<>();
    try (PreparedStatement ps = conn.prepareStatement(placeholders(sql))) {
      ps.unwrap(PGStatement.class).setPrepareThreshold(1);
      for (String run : runs) {
        bind(ps, List.of(run.split(",")));
        counts.add(outcome(ps, ps.execute()).get(0));
      }
    }
    return counts;
  }

  private static List<String> batch(String sql, List<String> runs) throws SQLException {
    List<String> counts = new ArrayList<>();
    try (PreparedStatement ps = conn.prepareStatement(placeholders(sql))) {
      for (String run : runs) {
        bind(ps, List.of(run.split(",")));
        ps.addBatch();
      }
      for (int count : ps.executeBatch()) {
        counts.add(String.valueOf(count));
      }
    }
    return counts;
  }

  private static List<String> outcome(Statement st, boolean hasRows) throws SQLException {
    List<String> fields = new ArrayList<>();
    if (!hasRows) {
      fields.add(String.valueOf(st.getUpdateCount()));
      return fields;
    }
    fields.add("");
    try (ResultSet rs = st.getResultSet()) {
      int columns = rs.getMetaData().getColumnCount();
      while (rs.next()) {
        List<String> row = new ArrayList<>();
        for (int c = 1; c <= columns; c++) {
          row.add(rs.getString(c));
        }
        fields.add(String.join(",", row));
      }
    }
    fields.set(0, String.valueOf(fields.size() - 1));
    return fields;
  }

  private static void bind(PreparedStatement ps, List<String> params) throws SQLException {
    for (int i = 0; i < params.size(); i++) {
      ps.setInt(i + 1, Integer.parseInt(params.get(i)));
    }
  }

  private static String placeholders(String sql) {
    return sql.replaceAll("\\$\\d+", "?");
  }

  private static List<String> cancel() {
    Statement st = running;
    if (st == null) {
      return List.of("err", "", "nothing is running");
    }
    try {
      st.cancel();
      return List.of("ok");
    } catch (SQLException e) {
      return List.of("err", nz(e.getSQLState()), nz(e.getMessage()));
    }
  }

  private static List<String> ok(List<String> fields) {
    List<String> all = new ArrayList<>();
    all.add("ok");
    all.addAll(fields);
    return all;
  }

  private static synchronized void answer(String id, List<String> fields) {
    StringBuilder line = new StringBuilder(id);
    for (String field : fields) {
      line.append('\t').append(URLEncoder.encode(field, StandardCharsets.UTF_8));
    }
    OUT.println(line);
  }

  private static String decode(String field) {
    return URLDecoder.decode(field, StandardCharsets.UTF_8);
  }

  private static String nz(String text) {
    return text == null ? "" : text;
  }
}
