// The shared Database suite: every implementation must pass it. To add one,
// write a DatabaseBackend (a fresh, empty database per call) and add it to
// INSTANTIATE_TEST_SUITE_P below.
#include "base/testing.h"
#include "db/database.h"

#include <stdlib.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "db/connection_pool.h"
#include "db/sqlite_database.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn::db {
namespace {

using ::testing::HasSubstr;


struct DatabaseBackend {
  std::string name;
  // Opens a fresh, empty database; `scratch_dir` is an empty directory the
  // test removes afterwards.
  std::function<absl::StatusOr<std::unique_ptr<Database>>(const std::string& scratch_dir)> open;
};

void PrintTo(const DatabaseBackend& backend, std::ostream* os) { *os << backend.name; }

std::string PrintBackend(const ::testing::TestParamInfo<DatabaseBackend>& info) { return info.param.name; }

class DatabaseTest : public ::testing::TestWithParam<DatabaseBackend> {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "cairn-db-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    ASSERT_OK_AND_ASSIGN(db_, GetParam().open(dir_));
    ASSERT_OK_AND_ASSIGN(conn_, db_->Connect());
  }
  void TearDown() override {
    conn_.reset();
    db_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // The single int64 a query returns.
  int64_t QueryInt(Connection& conn, std::string_view sql) {
    auto st = conn.Prepare(sql);
    EXPECT_TRUE(st.ok()) << st.status();
    if (!st.ok()) return -999;
    auto row = (*st)->Step();
    EXPECT_TRUE(row.ok() && *row) << sql;
    if (!row.ok() || !*row) return -999;
    return (*st)->ColumnInt(0);
  }
  int64_t Count(Connection& conn, std::string_view table) {
    return QueryInt(conn, "SELECT COUNT(*) FROM " + std::string(table));
  }

  std::string dir_;
  std::unique_ptr<Database> db_;
  std::unique_ptr<Connection> conn_;
};

TEST_P(DatabaseTest, DdlCreatesAndDropsTables) {
  ASSERT_OK(conn_->Execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
                           "CREATE INDEX t_name ON t (name);"));
  EXPECT_EQ(Count(*conn_, "t"), 0);
  ASSERT_OK(conn_->Execute("DROP TABLE t"));
  EXPECT_FALSE(conn_->Prepare("SELECT * FROM t").ok());
}

TEST_P(DatabaseTest, SyntaxErrorNamesTheSql) {
  auto st = conn_->Prepare("SELEKT 1 FROM nowhere");
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("SELEKT 1"));
  absl::Status s = conn_->Execute("CREATE TABLE ok1 (a INTEGER); CREATE TABLE (");
  EXPECT_FALSE(s.ok());
}

TEST_P(DatabaseTest, PrepareRefusesSeveralStatements) {
  auto st = conn_->Prepare("SELECT 1; SELECT 2");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  // A trailing semicolon is fine.
  EXPECT_TRUE(conn_->Prepare("SELECT 1;").ok());
}

TEST_P(DatabaseTest, BindsAndReadsEveryType) {
  const std::string blob_type = db_->dialect() == Dialect::kSqlite ? "BLOB" : "BYTEA";
  ASSERT_OK(conn_->Execute(
      "CREATE TABLE v (id INTEGER PRIMARY KEY, i BIGINT, d DOUBLE PRECISION, t TEXT, b " + blob_type + ")"));
  ASSERT_OK_AND_ASSIGN(auto ins, conn_->Prepare("INSERT INTO v (id, i, d, t, b) VALUES (?, ?, ?, ?, ?)"));

  std::string all_bytes;
  for (int c = 0; c < 256; ++c) all_bytes.push_back(static_cast<char>(c));
  const std::string unicode = "h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x99\x82";  // héllo 世界 🙂
  struct Row {
    int64_t i;
    double d;
    std::string t;
    std::string b;
  };
  const std::vector<Row> rows = {
      {std::numeric_limits<int64_t>::min(), -1.5, "", std::string()},
      {std::numeric_limits<int64_t>::max(), std::numeric_limits<double>::max(), unicode, all_bytes},
      {0, std::numeric_limits<double>::denorm_min(), "plain", std::string("a\0b", 3)},
      {-1, 0.1, std::string(100000, 'x'), std::string(1, '\0')},
      {42, std::numeric_limits<double>::infinity(), "'; DROP TABLE v; --", "z"},
      {7, -std::numeric_limits<double>::infinity(), "tab\tnewline\n", "y"},
  };
  for (size_t k = 0; k < rows.size(); ++k) {
    ins->BindInt(1, static_cast<int64_t>(k));
    ins->BindInt(2, rows[k].i);
    ins->BindDouble(3, rows[k].d);
    ins->BindText(4, rows[k].t);
    ins->BindBlob(5, rows[k].b);
    ASSERT_OK(ins->Run());
    EXPECT_EQ(ins->ChangedRows(), 1);
  }
  ins->BindInt(1, 100);
  ins->BindNull(2);
  ins->BindNull(3);
  ins->BindNull(4);
  ins->BindNull(5);
  ASSERT_OK(ins->Run());

  ASSERT_OK_AND_ASSIGN(auto sel, conn_->Prepare("SELECT i, d, t, b FROM v WHERE id = ?"));
  EXPECT_EQ(sel->ColumnCount(), 4);
  for (size_t k = 0; k < rows.size(); ++k) {
    SCOPED_TRACE(k);
    sel->BindInt(1, static_cast<int64_t>(k));
    ASSERT_OK_AND_ASSIGN(bool row, sel->Step());
    ASSERT_TRUE(row);
    for (int c = 0; c < 4; ++c) EXPECT_FALSE(sel->IsNull(c));
    EXPECT_EQ(sel->ColumnInt(0), rows[k].i);
    double d = sel->ColumnDouble(1);
    EXPECT_EQ(std::memcmp(&d, &rows[k].d, sizeof d), 0) << d << " vs " << rows[k].d;  // bit-exact
    EXPECT_EQ(sel->ColumnText(2), rows[k].t);
    EXPECT_EQ(sel->ColumnBlob(3), rows[k].b);
    ASSERT_OK_AND_ASSIGN(bool more, sel->Step());
    EXPECT_FALSE(more);
    sel->Reset();
  }
  sel->BindInt(1, 100);
  ASSERT_OK_AND_ASSIGN(bool row, sel->Step());
  ASSERT_TRUE(row);
  for (int c = 0; c < 4; ++c) EXPECT_TRUE(sel->IsNull(c)) << c;
  EXPECT_EQ(sel->ColumnText(2), "");
  EXPECT_EQ(sel->ColumnBlob(3), "");
}

TEST_P(DatabaseTest, EmptyTextIsNotNull) {
  ASSERT_OK(conn_->Execute(db_->dialect() == Dialect::kSqlite ? "CREATE TABLE e (t TEXT, b BLOB)"
                                                               : "CREATE TABLE e (t TEXT, b BYTEA)"));
  ASSERT_OK_AND_ASSIGN(auto ins, conn_->Prepare("INSERT INTO e (t, b) VALUES (?, ?)"));
  ins->BindText(1, std::string_view());  // null data pointer
  ins->BindBlob(2, std::string_view());
  ASSERT_OK(ins->Run());
  EXPECT_EQ(QueryInt(*conn_, "SELECT COUNT(*) FROM e WHERE t = '' AND b IS NOT NULL"), 1);
}

TEST_P(DatabaseTest, NanIsStoredAsTheDialectAllows) {
  ASSERT_OK(conn_->Execute("CREATE TABLE n (d DOUBLE PRECISION)"));
  ASSERT_OK_AND_ASSIGN(auto ins, conn_->Prepare("INSERT INTO n (d) VALUES (?)"));
  ins->BindDouble(1, std::nan(""));
  ASSERT_OK(ins->Run());
  ASSERT_OK_AND_ASSIGN(auto sel, conn_->Prepare("SELECT d FROM n"));
  ASSERT_OK_AND_ASSIGN(bool row, sel->Step());
  ASSERT_TRUE(row);
  if (db_->dialect() == Dialect::kSqlite) {
    EXPECT_TRUE(sel->IsNull(0));  // documented: SQLite has no NaN
  } else {
    EXPECT_TRUE(std::isnan(sel->ColumnDouble(0)));
  }
}

TEST_P(DatabaseTest, NegativeZeroReadsBackAsZero) {
  // Documented: the sign of -0.0 is not guaranteed to survive (SQLite stores
  // integral reals as integers).
  ASSERT_OK(conn_->Execute("CREATE TABLE z (d DOUBLE PRECISION)"));
  ASSERT_OK_AND_ASSIGN(auto ins, conn_->Prepare("INSERT INTO z (d) VALUES (?)"));
  ins->BindDouble(1, -0.0);
  ASSERT_OK(ins->Run());
  ASSERT_OK_AND_ASSIGN(auto sel, conn_->Prepare("SELECT d FROM z"));
  ASSERT_OK_AND_ASSIGN(bool row, sel->Step());
  ASSERT_TRUE(row);
  EXPECT_FALSE(sel->IsNull(0));
  EXPECT_EQ(sel->ColumnDouble(0), 0.0);
}

TEST_P(DatabaseTest, BindErrorsSurfaceAtStep) {
  ASSERT_OK(conn_->Execute("CREATE TABLE b (a INTEGER)"));
  ASSERT_OK_AND_ASSIGN(auto ins, conn_->Prepare("INSERT INTO b (a) VALUES (?)"));
  ins->BindInt(2, 1);  // no such parameter
  absl::Status s = ins->Run();
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange) << s;
  EXPECT_EQ(Count(*conn_, "b"), 0);
  // Reset clears the error.
  ins->BindInt(1, 1);
  ASSERT_OK(ins->Run());
  EXPECT_EQ(Count(*conn_, "b"), 1);
}

TEST_P(DatabaseTest, CachedStatementsAreReusedAndReset) {
  ASSERT_OK(conn_->Execute("CREATE TABLE c (a INTEGER, b TEXT)"));
  const std::string sql = "INSERT INTO c (a, b) VALUES (?, ?)";
  ASSERT_OK_AND_ASSIGN(Statement * first, conn_->Cached(sql));
  for (int k = 0; k < 100; ++k) {
    ASSERT_OK_AND_ASSIGN(Statement * st, conn_->Cached(std::string(sql)));  // equal text, other buffer
    EXPECT_EQ(st, first);
    st->BindInt(1, k);
    st->BindText(2, "row");
    ASSERT_OK(st->Run());
  }
  EXPECT_EQ(Count(*conn_, "c"), 100);

  // A statement left mid-rows comes back reset, with bindings cleared.
  ASSERT_OK_AND_ASSIGN(Statement * sel, conn_->Cached("SELECT a FROM c WHERE a >= ? ORDER BY a"));
  sel->BindInt(1, 10);
  ASSERT_OK_AND_ASSIGN(bool row, sel->Step());
  ASSERT_TRUE(row);
  EXPECT_EQ(sel->ColumnInt(0), 10);
  ASSERT_OK_AND_ASSIGN(Statement * again, conn_->Cached("SELECT a FROM c WHERE a >= ? ORDER BY a"));
  EXPECT_EQ(again, sel);
  ASSERT_OK_AND_ASSIGN(row, again->Step());
  EXPECT_FALSE(row);  // `a >= NULL` matches nothing
  again->Reset();
  again->BindInt(1, 0);
  ASSERT_OK_AND_ASSIGN(row, again->Step());
  ASSERT_TRUE(row);
  EXPECT_EQ(again->ColumnInt(0), 0);

  // A different statement is a different object.
  ASSERT_OK_AND_ASSIGN(Statement * other, conn_->Cached("SELECT b FROM c"));
  EXPECT_NE(other, sel);
  // Errors are not cached.
  EXPECT_FALSE(conn_->Cached("SELECT nope FROM c").ok());
}

TEST_P(DatabaseTest, ExecuteRunsRepeatedStatements) {
  ASSERT_OK(conn_->Execute("CREATE TABLE x (a INTEGER)"));
  for (int k = 0; k < 5; ++k) ASSERT_OK(conn_->Execute("INSERT INTO x (a) VALUES (1)"));
  ASSERT_OK(conn_->Execute("INSERT INTO x (a) VALUES (2); INSERT INTO x (a) VALUES (3);"));
  EXPECT_EQ(Count(*conn_, "x"), 7);
  ASSERT_OK(conn_->Execute(""));
  ASSERT_OK(conn_->Execute("-- only a comment"));
}

TEST_P(DatabaseTest, CommitMakesChangesVisible) {
  ASSERT_OK(conn_->Execute("CREATE TABLE t (a INTEGER)"));
  ASSERT_OK_AND_ASSIGN(auto other, db_->Connect());
  ASSERT_OK(conn_->Begin());
  ASSERT_OK(conn_->Execute("INSERT INTO t (a) VALUES (1)"));
  EXPECT_EQ(Count(*conn_, "t"), 1);   // own writes
  EXPECT_EQ(Count(*other, "t"), 0);   // not committed yet
  ASSERT_OK(conn_->Commit());
  EXPECT_EQ(Count(*other, "t"), 1);
}

TEST_P(DatabaseTest, RollbackDiscardsChanges) {
  ASSERT_OK(conn_->Execute("CREATE TABLE t (a INTEGER)"));
  ASSERT_OK(conn_->Begin());
  ASSERT_OK(conn_->Execute("INSERT INTO t (a) VALUES (1)"));
  ASSERT_OK(conn_->Rollback());
  EXPECT_EQ(Count(*conn_, "t"), 0);
  // Rollback without a transaction is harmless; Commit is an error.
  ASSERT_OK(conn_->Rollback());
  EXPECT_EQ(conn_->Commit().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(DatabaseTest, NestedBeginIsRefused) {
  ASSERT_OK(conn_->Begin());
  EXPECT_EQ(conn_->Begin().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_OK(conn_->Rollback());
  ASSERT_OK(conn_->Begin());
  ASSERT_OK(conn_->Commit());
}

TEST_P(DatabaseTest, TransactionRollsBackUnlessCommitted) {
  ASSERT_OK(conn_->Execute("CREATE TABLE t (a INTEGER)"));
  {
    Transaction txn(*conn_);
    ASSERT_OK(txn.Begin());
    ASSERT_OK(conn_->Execute("INSERT INTO t (a) VALUES (1)"));
  }  // abandoned, e.g. by an early return
  EXPECT_EQ(Count(*conn_, "t"), 0);
  {
    Transaction txn(*conn_);
    ASSERT_OK(txn.Begin());
    ASSERT_OK(conn_->Execute("INSERT INTO t (a) VALUES (2)"));
    ASSERT_OK(txn.Commit());
  }
  EXPECT_EQ(Count(*conn_, "t"), 1);
  {
    Transaction txn(*conn_);
    ASSERT_OK(txn.Begin());
    ASSERT_OK(conn_->Execute("INSERT INTO t (a) VALUES (3)"));
    ASSERT_OK(txn.Rollback());
  }
  EXPECT_EQ(Count(*conn_, "t"), 1);
  // The connection is usable for a new transaction afterwards.
  ASSERT_OK(conn_->Begin());
  ASSERT_OK(conn_->Commit());
}

TEST_P(DatabaseTest, ConstraintViolationsHaveSpecificCodes) {
  ASSERT_OK(conn_->Execute(
      "CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
      "CREATE TABLE ch (id INTEGER PRIMARY KEY, p_id INTEGER NOT NULL REFERENCES p (id), "
      "  n INTEGER CHECK (n > 0))"));
  ASSERT_OK(conn_->Execute("INSERT INTO p (id, name) VALUES (1, 'a')"));

  absl::Status s = conn_->Execute("INSERT INTO p (id, name) VALUES (2, 'a')");
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("INSERT INTO p"));
  s = conn_->Execute("INSERT INTO p (id, name) VALUES (1, 'b')");
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
  s = conn_->Execute("INSERT INTO p (id, name) VALUES (3, NULL)");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  s = conn_->Execute("INSERT INTO ch (id, p_id, n) VALUES (1, 99, 1)");  // foreign keys are enforced
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  s = conn_->Execute("INSERT INTO ch (id, p_id, n) VALUES (1, 1, 0)");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;

  // Through a cached statement too, and the statement stays usable.
  ASSERT_OK_AND_ASSIGN(Statement * ins, conn_->Cached("INSERT INTO p (id, name) VALUES (?, ?)"));
  ins->BindInt(1, 5);
  ins->BindText(2, "a");
  EXPECT_EQ(ins->Run().code(), absl::StatusCode::kAlreadyExists);
  ASSERT_OK_AND_ASSIGN(ins, conn_->Cached("INSERT INTO p (id, name) VALUES (?, ?)"));
  ins->BindInt(1, 5);
  ins->BindText(2, "e");
  ASSERT_OK(ins->Run());
  EXPECT_EQ(Count(*conn_, "p"), 2);
}

TEST_P(DatabaseTest, ViolationInsideTransactionKeepsEarlierWork) {
  ASSERT_OK(conn_->Execute("CREATE TABLE u (k TEXT PRIMARY KEY)"));
  Transaction txn(*conn_);
  ASSERT_OK(txn.Begin());
  ASSERT_OK(conn_->Execute("INSERT INTO u (k) VALUES ('a')"));
  EXPECT_EQ(conn_->Execute("INSERT INTO u (k) VALUES ('a')").code(), absl::StatusCode::kAlreadyExists);
  ASSERT_OK(conn_->Execute("INSERT INTO u (k) VALUES ('b')"));
  ASSERT_OK(txn.Commit());
  EXPECT_EQ(Count(*conn_, "u"), 2);
}

TEST_P(DatabaseTest, ReturningGivesGeneratedValues) {
  ASSERT_OK(conn_->Execute("CREATE TABLE r (id INTEGER PRIMARY KEY, name TEXT)"));
  ASSERT_OK_AND_ASSIGN(Statement * ins, conn_->Cached("INSERT INTO r (name) VALUES (?) RETURNING id, name"));
  std::vector<int64_t> ids;
  for (const char* name : {"x", "y"}) {
    ins = *conn_->Cached("INSERT INTO r (name) VALUES (?) RETURNING id, name");
    ins->BindText(1, name);
    ASSERT_OK_AND_ASSIGN(bool row, ins->Step());
    ASSERT_TRUE(row);
    ids.push_back(ins->ColumnInt(0));
    EXPECT_EQ(ins->ColumnText(1), name);
    ASSERT_OK_AND_ASSIGN(row, ins->Step());
    EXPECT_FALSE(row);
  }
  EXPECT_NE(ids[0], ids[1]);
  ASSERT_OK_AND_ASSIGN(auto del, conn_->Prepare("DELETE FROM r WHERE id = ? RETURNING name"));
  del->BindInt(1, ids[1]);
  ASSERT_OK_AND_ASSIGN(bool row, del->Step());
  ASSERT_TRUE(row);
  EXPECT_EQ(del->ColumnText(0), "y");
  EXPECT_EQ(Count(*conn_, "r"), 1);
}

TEST_P(DatabaseTest, UpsertUpdatesOnConflict) {
  ASSERT_OK(conn_->Execute("CREATE TABLE tags (run TEXT, k TEXT, v TEXT, PRIMARY KEY (run, k))"));
  const char* sql =
      "INSERT INTO tags (run, k, v) VALUES (?, ?, ?) "
      "ON CONFLICT (run, k) DO UPDATE SET v = excluded.v";
  for (const char* v : {"1", "2", "3"}) {
    ASSERT_OK_AND_ASSIGN(Statement * st, conn_->Cached(sql));
    st->BindText(1, "r1");
    st->BindText(2, "lr");
    st->BindText(3, v);
    ASSERT_OK(st->Run());
    EXPECT_EQ(st->ChangedRows(), 1);
  }
  EXPECT_EQ(Count(*conn_, "tags"), 1);
  ASSERT_OK_AND_ASSIGN(auto sel, conn_->Prepare("SELECT v FROM tags WHERE run = 'r1' AND k = 'lr'"));
  ASSERT_OK_AND_ASSIGN(bool row, sel->Step());
  ASSERT_TRUE(row);
  EXPECT_EQ(sel->ColumnText(0), "3");

  ASSERT_OK(conn_->Execute("INSERT INTO tags (run, k, v) VALUES ('r1', 'lr', '9') ON CONFLICT DO NOTHING"));
  EXPECT_EQ(QueryInt(*conn_, "SELECT COUNT(*) FROM tags WHERE v = '3'"), 1);
}

TEST_P(DatabaseTest, ChangedRowsCountsUpdates) {
  ASSERT_OK(conn_->Execute("CREATE TABLE m (a INTEGER); INSERT INTO m VALUES (1), (2), (3)"));
  ASSERT_OK_AND_ASSIGN(auto upd, conn_->Prepare("UPDATE m SET a = a + 10 WHERE a >= ?"));
  upd->BindInt(1, 2);
  ASSERT_OK(upd->Run());
  EXPECT_EQ(upd->ChangedRows(), 2);
}

// ---- Migrations ------------------------------------------------------------

constexpr Migration kV1{1, "create runs", "CREATE TABLE runs (id TEXT PRIMARY KEY)"};
constexpr Migration kV2{2, "add tags",
                        "CREATE TABLE tags (run_id TEXT NOT NULL REFERENCES runs (id), k TEXT, v TEXT);"
                        "CREATE INDEX tags_run ON tags (run_id)"};
constexpr Migration kV3{3, "add metrics", "CREATE TABLE metrics (run_id TEXT, v DOUBLE PRECISION)"};

TEST_P(DatabaseTest, MigrationsApplyOnceAndRecordThemselves) {
  const Migration two[] = {kV1, kV2};
  ASSERT_OK(db_->Migrate("tracking", two));
  ASSERT_OK(conn_->Execute("INSERT INTO runs (id) VALUES ('r')"));
  EXPECT_EQ(QueryInt(*conn_, "SELECT COUNT(*) FROM schema_migrations WHERE component = 'tracking'"), 2);
  EXPECT_EQ(QueryInt(*conn_, "SELECT MAX(version) FROM schema_migrations WHERE component = 'tracking'"), 2);
  ASSERT_OK_AND_ASSIGN(auto st, conn_->Prepare(
                                    "SELECT name, applied_at FROM schema_migrations "
                                    "WHERE component = 'tracking' AND version = 2"));
  ASSERT_OK_AND_ASSIGN(bool row, st->Step());
  ASSERT_TRUE(row);
  EXPECT_EQ(st->ColumnText(0), "add tags");
  EXPECT_GT(st->ColumnInt(1), int64_t{1600000000000});  // Unix milliseconds
  st.reset();

  // Re-running is a no-op (re-applying v1 would fail: the table exists) and
  // keeps the data.
  ASSERT_OK(db_->Migrate("tracking", two));
  ASSERT_OK(db_->Migrate("tracking", two));
  EXPECT_EQ(Count(*conn_, "runs"), 1);
  EXPECT_EQ(QueryInt(*conn_, "SELECT COUNT(*) FROM schema_migrations"), 2);

  // A newer Cairn adds v3: only v3 runs.
  const Migration three[] = {kV1, kV2, kV3};
  ASSERT_OK(db_->Migrate("tracking", three));
  EXPECT_EQ(Count(*conn_, "metrics"), 0);
  EXPECT_EQ(QueryInt(*conn_, "SELECT COUNT(*) FROM schema_migrations"), 3);

  // Components are independent.
  const Migration other[] = {{1, "other", "CREATE TABLE other_t (a INTEGER)"}};
  ASSERT_OK(db_->Migrate("registry", other));
  EXPECT_EQ(QueryInt(*conn_, "SELECT COUNT(*) FROM schema_migrations WHERE component = 'registry'"), 1);
  ASSERT_OK(db_->Migrate("empty", {}));
}

TEST_P(DatabaseTest, FailedMigrationRollsBackAndIsNamed) {
  const Migration bad[] = {
      kV1,
      {2, "half broken", "CREATE TABLE half (a INTEGER); INSERT INTO nonexistent VALUES (1)"},
      kV3,
  };
  absl::Status s = db_->Migrate("tracking", bad);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("v2"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("half broken"));
  // v1 stays; v2's first statement was rolled back with it; v3 never ran.
  EXPECT_EQ(QueryInt(*conn_, "SELECT MAX(version) FROM schema_migrations"), 1);
  EXPECT_FALSE(conn_->Prepare("SELECT * FROM half").ok());
  EXPECT_FALSE(conn_->Prepare("SELECT * FROM metrics").ok());
  EXPECT_TRUE(conn_->Prepare("SELECT * FROM runs").ok());

  // The fixed release applies the rest.
  const Migration fixed[] = {kV1, kV2, kV3};
  ASSERT_OK(db_->Migrate("tracking", fixed));
  EXPECT_EQ(QueryInt(*conn_, "SELECT MAX(version) FROM schema_migrations"), 3);
}

TEST_P(DatabaseTest, MigrationsNewerThanKnownAreRefused) {
  const Migration three[] = {kV1, kV2, kV3};
  ASSERT_OK(db_->Migrate("tracking", three));
  const Migration two[] = {kV1, kV2};
  absl::Status s = db_->Migrate("tracking", two);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("newer"));
  EXPECT_EQ(db_->Migrate("tracking", {}).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(DatabaseTest, MigrationsMustBeOrdered) {
  const Migration unordered[] = {kV2, kV1};
  EXPECT_EQ(db_->Migrate("tracking", unordered).code(), absl::StatusCode::kInvalidArgument);
  const Migration duplicate[] = {kV1, kV1};
  EXPECT_EQ(db_->Migrate("tracking", duplicate).code(), absl::StatusCode::kInvalidArgument);
  const Migration zero[] = {{0, "zero", "SELECT 1"}};
  EXPECT_EQ(db_->Migrate("tracking", zero).code(), absl::StatusCode::kInvalidArgument);
  // Nothing ran.
  EXPECT_FALSE(conn_->Prepare("SELECT * FROM runs").ok());
}

TEST_P(DatabaseTest, ConcurrentMigratorsApplyEachStepOnce) {
  const Migration three[] = {kV1, kV2, kV3};
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      if (!db_->Migrate("tracking", three).ok()) ++failures;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(QueryInt(*conn_, "SELECT COUNT(*) FROM schema_migrations"), 3);
}

// ---- Concurrency -----------------------------------------------------------

TEST_P(DatabaseTest, ReaderSeesOnlyCommittedData) {
  ASSERT_OK(conn_->Execute("CREATE TABLE w (a INTEGER)"));
  ASSERT_OK_AND_ASSIGN(auto reader, db_->Connect());
  ASSERT_OK(conn_->Begin());
  for (int k = 0; k < 100; ++k) {
    ASSERT_OK_AND_ASSIGN(Statement * st, conn_->Cached("INSERT INTO w (a) VALUES (?)"));
    st->BindInt(1, k);
    ASSERT_OK(st->Run());
    // The reader is not blocked by the open write transaction, and does not
    // see it.
    EXPECT_EQ(Count(*reader, "w"), 0);
  }
  ASSERT_OK(conn_->Commit());
  EXPECT_EQ(Count(*reader, "w"), 100);

  // A reader inside its own transaction keeps its snapshot (repeatable read)
  // while the writer commits more.
  ASSERT_OK_AND_ASSIGN(auto snap, reader->Prepare("SELECT COUNT(*) FROM w"));
  ASSERT_OK(reader->Execute(db_->dialect() == Dialect::kSqlite ? "BEGIN DEFERRED"
                                                               : "BEGIN ISOLATION LEVEL REPEATABLE READ"));
  ASSERT_OK_AND_ASSIGN(bool row, snap->Step());
  ASSERT_TRUE(row);
  EXPECT_EQ(snap->ColumnInt(0), 100);
  snap->Reset();
  ASSERT_OK(conn_->Execute("INSERT INTO w (a) VALUES (1000)"));
  ASSERT_OK_AND_ASSIGN(row, snap->Step());
  EXPECT_EQ(snap->ColumnInt(0), 100);
  snap->Reset();
  ASSERT_OK(reader->Rollback());
  EXPECT_EQ(Count(*reader, "w"), 101);
}

TEST_P(DatabaseTest, ConcurrentWritersAndReadersLoseNothing) {
  ASSERT_OK(conn_->Execute("CREATE TABLE cw (writer INTEGER, seq INTEGER, PRIMARY KEY (writer, seq))"));
  constexpr int kWriters = 2;
  constexpr int kPerWriter = 200;
  std::atomic<bool> done{false};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      auto conn = db_->Connect();
      if (!conn.ok()) {
        ++errors;
        return;
      }
      for (int k = 0; k < kPerWriter; ++k) {
        Transaction txn(**conn);
        auto st = (*conn)->Cached("INSERT INTO cw (writer, seq) VALUES (?, ?)");
        if (!txn.Begin().ok() || !st.ok()) {
          ++errors;
          return;
        }
        (*st)->BindInt(1, w);
        (*st)->BindInt(2, k);
        if (!(*st)->Run().ok() || !txn.Commit().ok()) ++errors;
      }
    });
  }
  std::thread reader([&] {
    auto conn = db_->Connect();
    if (!conn.ok()) {
      ++errors;
      return;
    }
    int64_t last = 0;
    while (!done.load()) {
      auto st = (*conn)->Cached("SELECT COUNT(*) FROM cw");
      if (!st.ok() || !(*st)->Step().ok()) {
        ++errors;
        return;
      }
      int64_t n = (*st)->ColumnInt(0);
      if (n < last) ++errors;  // committed rows never disappear
      last = n;
    }
  });
  for (auto& th : threads) th.join();
  done = true;
  reader.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(Count(*conn_, "cw"), kWriters * kPerWriter);
}

TEST_P(DatabaseTest, ConnectionPoolSharesConnectionsAmongThreads) {
  ASSERT_OK(conn_->Execute("CREATE TABLE pool (thread INTEGER, seq INTEGER, PRIMARY KEY (thread, seq))"));
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100;
  constexpr int kMaxConnections = 3;
  ASSERT_OK_AND_ASSIGN(auto pool, ConnectionPool::Create(*db_, kMaxConnections));
  EXPECT_EQ(pool->open_connections(), 0);  // lazy

  std::atomic<int> in_use{0};
  std::atomic<int> max_in_use{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < kPerThread; ++k) {
        auto lease = pool->Acquire();
        if (!lease.ok()) {
          ++errors;
          continue;
        }
        int now = ++in_use;
        int seen = max_in_use.load();
        while (now > seen && !max_in_use.compare_exchange_weak(seen, now)) {
        }
        Connection& conn = **lease;
        Transaction txn(conn);
        absl::Status s = txn.Begin();
        auto st = conn.Cached("INSERT INTO pool (thread, seq) VALUES (?, ?)");
        if (s.ok() && st.ok()) {
          (*st)->BindInt(1, t);
          (*st)->BindInt(2, k);
          s = (*st)->Run();
        }
        if (s.ok()) s = txn.Commit();
        if (!s.ok()) ++errors;
        --in_use;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_LE(max_in_use.load(), kMaxConnections);
  EXPECT_GE(pool->open_connections(), 1);
  EXPECT_LE(pool->open_connections(), kMaxConnections);
  EXPECT_EQ(Count(*conn_, "pool"), kThreads * kPerThread);
}

TEST_P(DatabaseTest, PoolRollsBackWhatALeaseLeftOpen) {
  ASSERT_OK(conn_->Execute("CREATE TABLE lo (a INTEGER)"));
  ASSERT_OK_AND_ASSIGN(auto pool, ConnectionPool::Create(*db_, 1));
  {
    ASSERT_OK_AND_ASSIGN(ConnectionPool::Lease lease, pool->Acquire());
    ASSERT_OK(lease->Begin());
    ASSERT_OK(lease->Execute("INSERT INTO lo (a) VALUES (1)"));
    // A part-way read too: it must not pin an old snapshot for the next user.
    ASSERT_OK_AND_ASSIGN(Statement * st, lease->Cached("SELECT a FROM lo"));
    ASSERT_OK_AND_ASSIGN(bool row, st->Step());
    EXPECT_TRUE(row);
  }
  ASSERT_OK_AND_ASSIGN(ConnectionPool::Lease lease, pool->Acquire());
  EXPECT_EQ(Count(*lease, "lo"), 0);
  ASSERT_OK(conn_->Execute("INSERT INTO lo (a) VALUES (2)"));
  EXPECT_EQ(Count(*lease, "lo"), 1);
  ASSERT_OK(lease->Begin());  // no transaction was left behind
  ASSERT_OK(lease->Commit());
  EXPECT_EQ(pool->open_connections(), 1);

  // Moving a lease moves the connection.
  ConnectionPool::Lease moved = std::move(lease);
  EXPECT_EQ(Count(*moved, "lo"), 1);
}

TEST_P(DatabaseTest, PoolRejectsZeroSize) {
  EXPECT_EQ(ConnectionPool::Create(*db_, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

absl::StatusOr<std::unique_ptr<Database>> OpenTestSqlite(const std::string& dir) {
  // Not durable: fsync per commit only slows the suite; durability has its
  // own test in sqlite_database_test.cc.
  return OpenSqliteDatabase({.path = dir + "/test.db", .durable = false, .busy_timeout_ms = 30000});
}

INSTANTIATE_TEST_SUITE_P(Sqlite, DatabaseTest, ::testing::Values(DatabaseBackend{"sqlite", OpenTestSqlite}),
                         PrintBackend);

}  // namespace
}  // namespace cairn::db
