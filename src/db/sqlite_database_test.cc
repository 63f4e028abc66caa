// SQLite-specific behaviour: connection settings, open errors, lock
// contention, integrity checking and crash durability. The behaviour every
// Database shares is tested in database_test.cc.
#include "base/testing.h"
#include "db/sqlite_database.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn::db {
namespace {


class SqliteDatabaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "cairn-sqlite-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/cairn.db";
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  static std::string QueryText(Connection& conn, std::string_view sql) {
    auto st = conn.Prepare(sql);
    if (!st.ok()) return "error: " + st.status().ToString();
    auto row = (*st)->Step();
    if (!row.ok()) return "error: " + row.status().ToString();
    if (!*row) return "no row";
    return std::string((*st)->ColumnText(0));
  }

  std::string dir_;
  std::string path_;
};

TEST_F(SqliteDatabaseTest, ConnectionsAreConfigured) {
  for (bool durable : {true, false}) {
    SCOPED_TRACE(durable);
    ASSERT_OK_AND_ASSIGN(auto db, OpenSqliteDatabase({.path = path_, .durable = durable, .busy_timeout_ms = 1234}));
    EXPECT_EQ(db->dialect(), Dialect::kSqlite);
    ASSERT_OK_AND_ASSIGN(auto conn, db->Connect());
    EXPECT_EQ(QueryText(*conn, "PRAGMA journal_mode"), "wal");
    EXPECT_EQ(QueryText(*conn, "PRAGMA synchronous"), durable ? "2" : "1");  // FULL : NORMAL
    EXPECT_EQ(QueryText(*conn, "PRAGMA foreign_keys"), "1");
    EXPECT_EQ(QueryText(*conn, "PRAGMA busy_timeout"), "1234");
    EXPECT_EQ(QueryText(*conn, "PRAGMA temp_store"), "2");  // MEMORY
    EXPECT_EQ(QueryText(*conn, "PRAGMA cache_size"), "-8192");
  }
}

TEST_F(SqliteDatabaseTest, DataPersistsAcrossReopen) {
  {
    ASSERT_OK_AND_ASSIGN(auto db, OpenSqliteDatabase({.path = path_}));
    ASSERT_OK_AND_ASSIGN(auto conn, db->Connect());
    ASSERT_OK(conn->Execute("CREATE TABLE t (a TEXT); INSERT INTO t VALUES ('kept')"));
  }
  ASSERT_OK_AND_ASSIGN(auto db, OpenSqliteDatabase({.path = path_}));
  ASSERT_OK_AND_ASSIGN(auto conn, db->Connect());
  EXPECT_EQ(QueryText(*conn, "SELECT a FROM t"), "kept");
}

TEST_F(SqliteDatabaseTest, InMemoryPathsAreRefused) {
  for (const char* path : {"", ":memory:", "file::memory:?cache=shared"}) {
    EXPECT_EQ(OpenSqliteDatabase({.path = path}).status().code(), absl::StatusCode::kInvalidArgument) << path;
  }
}

TEST_F(SqliteDatabaseTest, MissingDirectoryFailsWithThePath) {
  auto db = OpenSqliteDatabase({.path = dir_ + "/no/such/dir/cairn.db"});
  ASSERT_FALSE(db.ok());
  EXPECT_THAT(std::string(db.status().message()), ::testing::HasSubstr("no/such/dir"));
}

TEST_F(SqliteDatabaseTest, NotADatabaseIsDataLoss) {
  {
    std::ofstream out(path_, std::ios::binary);
    out << std::string(8192, 'x');
  }
  EXPECT_EQ(OpenSqliteDatabase({.path = path_}).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(SqliteDatabaseTest, SecondWriterTimesOutAsUnavailable) {
  ASSERT_OK_AND_ASSIGN(auto db, OpenSqliteDatabase({.path = path_, .durable = false, .busy_timeout_ms = 50}));
  ASSERT_OK_AND_ASSIGN(auto a, db->Connect());
  ASSERT_OK_AND_ASSIGN(auto b, db->Connect());
  ASSERT_OK(a->Execute("CREATE TABLE t (x INTEGER)"));
  ASSERT_OK(a->Begin());  // IMMEDIATE: holds the write lock from here
  absl::Status s = b->Begin();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_EQ(b->Execute("INSERT INTO t VALUES (1)").code(), absl::StatusCode::kUnavailable);
  // Readers are not blocked.
  EXPECT_EQ(QueryText(*b, "SELECT COUNT(*) FROM t"), "0");
  ASSERT_OK(a->Commit());
  ASSERT_OK(b->Begin());
  ASSERT_OK(b->Commit());
}

TEST_F(SqliteDatabaseTest, IntegrityCheckOfSoundDatabaseIsEmpty) {
  ASSERT_OK_AND_ASSIGN(auto db, OpenSqliteDatabase({.path = path_}));
  ASSERT_OK_AND_ASSIGN(auto conn, db->Connect());
  ASSERT_OK(conn->Execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT); CREATE INDEX tb ON t (b);"
                          "INSERT INTO t (b) VALUES ('x'), ('y')"));
  ASSERT_OK_AND_ASSIGN(auto problems, IntegrityCheck(*conn));
  EXPECT_THAT(problems, ::testing::IsEmpty());
}

TEST_F(SqliteDatabaseTest, IntegrityCheckFindsCorruption) {
  {
    ASSERT_OK_AND_ASSIGN(auto db, OpenSqliteDatabase({.path = path_, .durable = false}));
    ASSERT_OK_AND_ASSIGN(auto conn, db->Connect());
    ASSERT_OK(conn->Execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT); CREATE INDEX tb ON t (b);"));
    ASSERT_OK(conn->Begin());
    for (int i = 0; i < 2000; ++i) {
      ASSERT_OK_AND_ASSIGN(Statement * st, conn->Cached("INSERT INTO t (b) VALUES (?)"));
      st->BindText(1, "value number " + std::to_string(i * 7919));
      ASSERT_OK(st->Run());
    }
    ASSERT_OK(conn->Commit());
  }  // the last connection closing checkpoints the WAL into the file
  const auto size = std::filesystem::file_size(path_);
  ASSERT_GT(size, 8 * 4096u);
  {
    // Scribble over pages in the middle, leaving the header (page 1) intact.
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(size / 2));
    std::string junk(3 * 4096, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  ASSERT_OK_AND_ASSIGN(auto db, OpenSqliteDatabase({.path = path_}));
  ASSERT_OK_AND_ASSIGN(auto conn, db->Connect());
  auto problems = IntegrityCheck(*conn);
  if (problems.ok()) {
    EXPECT_THAT(*problems, ::testing::Not(::testing::IsEmpty()));
  } else {
    EXPECT_EQ(problems.status().code(), absl::StatusCode::kDataLoss) << problems.status();
  }
}

// The child: commits rows 0, 1, 2, ... one durable transaction each, and
// after each Commit() returns writes the row's number to `ack_fd`. Never
// returns.
[[noreturn]] void CommitForever(const std::string& path, int ack_fd) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  auto db = OpenSqliteDatabase({.path = path, .durable = true});
  if (!db.ok()) _exit(2);
  auto conn = (*db)->Connect();
  if (!conn.ok()) _exit(3);
  if (!(*conn)->Execute("CREATE TABLE IF NOT EXISTS acked (id INTEGER PRIMARY KEY, payload TEXT)").ok()) _exit(4);
  const std::string payload(300, 'p');
  for (int32_t i = 0; i < 1000000; ++i) {
    Transaction txn(**conn);
    if (!txn.Begin().ok()) _exit(5);
    auto st = (*conn)->Cached("INSERT INTO acked (id, payload) VALUES (?, ?)");
    if (!st.ok()) _exit(6);
    (*st)->BindInt(1, i);
    (*st)->BindText(2, payload);
    if (!(*st)->Run().ok()) _exit(7);
    if (!txn.Commit().ok()) _exit(8);
    if (write(ack_fd, &i, sizeof i) != sizeof i) _exit(9);
  }
  _exit(0);
}

TEST_F(SqliteDatabaseTest, AcknowledgedCommitsSurviveKill9) {
  std::random_device seed_source;
  const unsigned seed = seed_source();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE(::testing::Message() << "round " << round);
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    fflush(nullptr);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      CommitForever(path_, fds[1]);
    }
    close(fds[1]);

    // Kill after a random number of acknowledgements plus a random delay, so
    // that the kill lands anywhere in the commit cycle.
    const int kill_after = std::uniform_int_distribution<int>(1, 60)(rng);
    const int delay_us = std::uniform_int_distribution<int>(0, 5000)(rng);
    int32_t last_acked = -1;
    int acks = 0;
    int32_t v;
    while (acks < kill_after && read(fds[0], &v, sizeof v) == sizeof v) {
      EXPECT_EQ(v, last_acked + 1);
      last_acked = v;
      ++acks;
    }
    usleep(delay_us);
    kill(pid, SIGKILL);
    // Acknowledgements written before the kill still count.
    while (read(fds[0], &v, sizeof v) == sizeof v) {
      EXPECT_EQ(v, last_acked + 1);
      last_acked = v;
    }
    close(fds[0]);
    int wstatus = 0;
    ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(wstatus)) << "child exited with " << WEXITSTATUS(wstatus);
    ASSERT_GE(last_acked, 0);

    ASSERT_OK_AND_ASSIGN(auto db, OpenSqliteDatabase({.path = path_}));
    ASSERT_OK_AND_ASSIGN(auto conn, db->Connect());
    ASSERT_OK_AND_ASSIGN(auto problems, IntegrityCheck(*conn));
    EXPECT_THAT(problems, ::testing::IsEmpty());
    ASSERT_OK_AND_ASSIGN(auto st, conn->Prepare("SELECT COUNT(*), COALESCE(MAX(id), -1) FROM acked"));
    ASSERT_OK_AND_ASSIGN(bool row, st->Step());
    ASSERT_TRUE(row);
    const int64_t count = st->ColumnInt(0);
    const int64_t max_id = st->ColumnInt(1);
    // Every acknowledged row is there; at most one more (committed, killed
    // before it could say so); and no holes.
    EXPECT_GE(max_id, last_acked);
    EXPECT_LE(max_id, last_acked + 1);
    EXPECT_EQ(count, max_id + 1);
    st.reset();
    // Next round continues on the same file: start from an empty table.
    ASSERT_OK(conn->Execute("DELETE FROM acked"));
  }
}

}  // namespace
}  // namespace cairn::db
