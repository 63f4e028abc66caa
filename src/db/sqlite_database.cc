#include "db/sqlite_database.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>

namespace cairn::db {
namespace {

// Page cache per connection, in KiB (negative cache_size means KiB).
constexpr int64_t kMmapBytes = int64_t{1} << 30;
constexpr int kCacheKiB = 8 * 1024;
// Execute() keeps single statements it has run prepared, up to this many.
constexpr size_t kMaxExecuteCache = 64;
constexpr size_t kMaxExecuteCachedSql = 256;

absl::StatusCode CodeFor(int rc) {
  switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_ROWID:
      return absl::StatusCode::kAlreadyExists;
    default:
      break;
  }
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      return absl::StatusCode::kFailedPrecondition;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::StatusCode::kUnavailable;
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    case SQLITE_RANGE:
      return absl::StatusCode::kOutOfRange;
    case SQLITE_TOOBIG:
      return absl::StatusCode::kInvalidArgument;
    case SQLITE_INTERRUPT:
      return absl::StatusCode::kCancelled;
    default:
      return absl::StatusCode::kInternal;
  }
}

// The start of `sql` on one line, for error messages.
std::string Excerpt(std::string_view sql) {
  constexpr size_t kMax = 80;
  std::string out;
  bool space = false;
  for (char c : sql) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    if (out.size() >= kMax) {
      out += "...";
      break;
    }
    out += c;
  }
  return out;
}

// `db` may be null (then only the code's generic text is used); `errmsg`
// overrides sqlite3_errmsg(db) when given.
absl::Status SqliteError(int rc, sqlite3* db, std::string_view context, const char* errmsg = nullptr) {
  const char* msg = errmsg ? errmsg : (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  return absl::Status(CodeFor(rc), fmt::format("{}: sqlite: {} (code {})", context, msg, rc));
}

bool OnlySeparators(const char* p, const char* end) {
  for (; p < end; ++p) {
    if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r' && *p != ';') return false;
  }
  return true;
}

class SqliteStatement final : public Statement {
 public:
  SqliteStatement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~SqliteStatement() override { sqlite3_finalize(stmt_); }
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  void BindNull(int i) override { Check(sqlite3_bind_null(stmt_, i), i); }
  void BindInt(int i, int64_t v) override { Check(sqlite3_bind_int64(stmt_, i, v), i); }
  void BindDouble(int i, double v) override { Check(sqlite3_bind_double(stmt_, i, v), i); }
  void BindText(int i, std::string_view v) override {
    // A null pointer would bind NULL; an empty view must bind ''.
    const char* data = v.data() ? v.data() : "";
    Check(sqlite3_bind_text64(stmt_, i, data, v.size(), SQLITE_TRANSIENT, SQLITE_UTF8), i);
  }
  void BindBlob(int i, std::string_view v) override {
    const char* data = v.data() ? v.data() : "";
    Check(sqlite3_bind_blob64(stmt_, i, data, v.size(), SQLITE_TRANSIENT), i);
  }

  absl::StatusOr<bool> Step() override {
    dirty_ = true;
    if (bind_rc_ != SQLITE_OK) {
      return SqliteError(bind_rc_, nullptr,
                         fmt::format("binding parameter {} of \"{}\"", bind_index_, Excerpt(sqlite3_sql(stmt_))));
    }
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(rc, db_, fmt::format("running \"{}\"", Excerpt(sqlite3_sql(stmt_))));
  }

  bool IsNull(int i) override { return sqlite3_column_type(stmt_, i) == SQLITE_NULL; }
  int64_t ColumnInt(int i) override { return sqlite3_column_int64(stmt_, i); }
  double ColumnDouble(int i) override { return sqlite3_column_double(stmt_, i); }
  std::string_view ColumnText(int i) override {
    const unsigned char* p = sqlite3_column_text(stmt_, i);
    if (p == nullptr) return {};
    return {reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, i))};
  }
  std::string_view ColumnBlob(int i) override {
    const void* p = sqlite3_column_blob(stmt_, i);
    if (p == nullptr) return {};
    return {static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, i))};
  }
  int ColumnCount() override { return sqlite3_column_count(stmt_); }

  int64_t ChangedRows() override { return sqlite3_changes64(db_); }

  void Reset() override {
    // Cached() resets every statement it hands out, usually one that Run()
    // has just reset: skip the work then.
    if (!dirty_) return;
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    bind_rc_ = SQLITE_OK;
    dirty_ = false;
  }

 private:
  void Check(int rc, int i) {
    dirty_ = true;
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) {
      bind_rc_ = rc;
      bind_index_ = i;
    }
  }

  sqlite3* const db_;
  sqlite3_stmt* const stmt_;
  int bind_rc_ = SQLITE_OK;  // first failed bind since the last Reset()
  int bind_index_ = 0;
  bool dirty_ = false;  // bound or stepped since the last Reset()
};

// Heterogeneous lookup, so that finding a std::string_view allocates nothing.
struct SqlHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StatementMap =
    std::unordered_map<std::string, std::unique_ptr<SqliteStatement>, SqlHash, std::equal_to<>>;

class SqliteConnection final : public Connection {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteConnection>> Open(const SqliteOptions& options) {
    sqlite3* db = nullptr;
    const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
    int rc = sqlite3_open_v2(options.path.c_str(), &db, flags, nullptr);
    if (rc != SQLITE_OK) {
      absl::Status s = SqliteError(rc, db, fmt::format("opening SQLite database {}", options.path));
      sqlite3_close_v2(db);
      return s;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, options.busy_timeout_ms);
    std::unique_ptr<SqliteConnection> conn(new SqliteConnection(db));
    RETURN_IF_ERROR(Annotate(conn->Configure(options), fmt::format("opening SQLite database {}", options.path)));
    return conn;
  }

  ~SqliteConnection() override {
    // Statements first: sqlite3_close_v2 would otherwise linger as a zombie.
    cached_.clear();
    exec_cache_.clear();
    begin_.reset();
    commit_.reset();
    rollback_.reset();
    sqlite3_close_v2(db_);
  }

  absl::Status Execute(std::string_view sql) override {
    if (auto it = exec_cache_.find(sql); it != exec_cache_.end()) return it->second->Run();
    const char* p = sql.data();
    const char* const end = p + sql.size();
    while (p < end) {
      sqlite3_stmt* raw = nullptr;
      const char* tail = nullptr;
      int rc = sqlite3_prepare_v3(db_, p, static_cast<int>(end - p), 0, &raw, &tail);
      if (rc != SQLITE_OK) {
        return SqliteError(rc, db_, fmt::format("preparing \"{}\"", Excerpt({p, static_cast<size_t>(end - p)})));
      }
      if (raw == nullptr) break;  // only comments or whitespace left
      auto st = std::make_unique<SqliteStatement>(db_, raw);
      RETURN_IF_ERROR(st->Run());
      // Keep short single statements (SAVEPOINT, PRAGMA, ...) prepared: the
      // group committer runs some per unit.
      if (p == sql.data() && OnlySeparators(tail, end) && sql.size() <= kMaxExecuteCachedSql) {
        if (exec_cache_.size() >= kMaxExecuteCache) exec_cache_.clear();
        exec_cache_.emplace(std::string(sql), std::move(st));
      }
      p = tail;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Statement>> Prepare(std::string_view sql) override {
    ASSIGN_OR_RETURN(auto st, PrepareOne(sql, 0));
    return std::unique_ptr<Statement>(std::move(st));
  }

  absl::StatusOr<Statement*> Cached(std::string_view sql) override {
    if (auto it = cached_.find(sql); it != cached_.end()) {
      it->second->Reset();
      return it->second.get();
    }
    ASSIGN_OR_RETURN(auto st, PrepareOne(sql, SQLITE_PREPARE_PERSISTENT));
    Statement* out = st.get();
    cached_.emplace(std::string(sql), std::move(st));
    return out;
  }

  absl::Status Begin() override {
    if (!sqlite3_get_autocommit(db_)) {
      return absl::FailedPreconditionError("BEGIN: a transaction is already active on this connection");
    }
    return begin_->Run();
  }

  absl::Status Commit() override {
    if (sqlite3_get_autocommit(db_)) {
      return absl::FailedPreconditionError(
          "COMMIT: no transaction is active (an earlier error may have rolled it back)");
    }
    absl::Status s = commit_->Run();
    // A failed COMMIT (e.g. SQLITE_BUSY) can leave the transaction open;
    // callers are promised it is gone.
    if (!s.ok() && !sqlite3_get_autocommit(db_)) (void)rollback_->Run();
    return s;
  }

  absl::Status Rollback() override {
    if (sqlite3_get_autocommit(db_)) return absl::OkStatus();
    return rollback_->Run();
  }

  absl::Status ResetSession() override {
    for (sqlite3_stmt* st = sqlite3_next_stmt(db_, nullptr); st != nullptr; st = sqlite3_next_stmt(db_, st)) {
      if (sqlite3_stmt_busy(st)) sqlite3_reset(st);
    }
    return Rollback();
  }

 private:
  explicit SqliteConnection(sqlite3* db) : db_(db) {}

  absl::Status Configure(const SqliteOptions& options) {
    // journal_mode answers with the mode in force: "wal" unless the file
    // system cannot support it.
    ASSIGN_OR_RETURN(auto mode, PrepareOne("PRAGMA journal_mode=WAL", 0));
    ASSIGN_OR_RETURN(bool row, mode->Step());
    std::string got = row ? std::string(mode->ColumnText(0)) : std::string();
    mode->Reset();
    if (got != "wal") {
      return absl::FailedPreconditionError(
          fmt::format("cannot switch to WAL mode (journal_mode is '{}'); is the file on a network file system?", got));
    }
    RETURN_IF_ERROR(Execute(fmt::format(
        "PRAGMA synchronous={}; PRAGMA foreign_keys=ON; PRAGMA cache_size=-{}; PRAGMA temp_store=MEMORY; "
        // Reads through a memory map skip a read() per page: searches over
        // large databases spend most of their time fetching pages otherwise.
        "PRAGMA mmap_size={};",
        options.durable ? "FULL" : "NORMAL", kCacheKiB, kMmapBytes)));
    exec_cache_.clear();
    ASSIGN_OR_RETURN(begin_, PrepareOne("BEGIN IMMEDIATE", SQLITE_PREPARE_PERSISTENT));
    ASSIGN_OR_RETURN(commit_, PrepareOne("COMMIT", SQLITE_PREPARE_PERSISTENT));
    ASSIGN_OR_RETURN(rollback_, PrepareOne("ROLLBACK", SQLITE_PREPARE_PERSISTENT));
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<SqliteStatement>> PrepareOne(std::string_view sql, unsigned flags) {
    sqlite3_stmt* raw = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), flags, &raw, &tail);
    if (rc != SQLITE_OK) return SqliteError(rc, db_, fmt::format("preparing \"{}\"", Excerpt(sql)));
    if (raw == nullptr) {
      return absl::InvalidArgumentError(fmt::format("preparing \"{}\": no SQL statement", Excerpt(sql)));
    }
    auto st = std::make_unique<SqliteStatement>(db_, raw);
    const char* end = sql.data() + sql.size();
    if (!OnlySeparators(tail, end)) {
      // Something follows: an error unless it is only comments.
      sqlite3_stmt* next = nullptr;
      rc = sqlite3_prepare_v3(db_, tail, static_cast<int>(end - tail), 0, &next, nullptr);
      sqlite3_finalize(next);
      if (rc != SQLITE_OK || next != nullptr) {
        return absl::InvalidArgumentError(fmt::format(
            "preparing \"{}\": only one statement allowed (use Execute for several)", Excerpt(sql)));
      }
    }
    return st;
  }

  sqlite3* const db_;
  StatementMap cached_;
  StatementMap exec_cache_;
  std::unique_ptr<SqliteStatement> begin_;
  std::unique_ptr<SqliteStatement> commit_;
  std::unique_ptr<SqliteStatement> rollback_;
};

class SqliteDatabase final : public Database {
 public:
  explicit SqliteDatabase(SqliteOptions options) : options_(std::move(options)) {}

  Dialect dialect() const override { return Dialect::kSqlite; }

  absl::StatusOr<std::unique_ptr<Connection>> Connect() override {
    ASSIGN_OR_RETURN(auto conn, SqliteConnection::Open(options_));
    return std::unique_ptr<Connection>(std::move(conn));
  }

  absl::Status Migrate(std::string_view component, std::span<const Migration> migrations) override {
    ASSIGN_OR_RETURN(auto conn, Connect());
    return ApplyMigrations(*conn, component, migrations);
  }

 private:
  const SqliteOptions options_;
};

bool IsInMemory(const std::string& path) {
  return path.empty() || path == ":memory:" || path.rfind("file::memory:", 0) == 0 ||
         path.find("mode=memory") != std::string::npos;
}

// Makes the directory entry of a newly created database file durable
// (SQLite syncs the directory for its journals, not for the main file).
absl::Status SyncParentDirectory(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return absl::OkStatus();  // best effort: the file itself is fine
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return absl::InternalError(fmt::format("fsync of directory {} failed", dir.string()));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Database>> OpenSqliteDatabase(const SqliteOptions& options) {
  if (IsInMemory(options.path)) {
    return absl::InvalidArgumentError(fmt::format(
        "SQLite path '{}': in-memory databases are not supported (each connection would get its own); "
        "use a file",
        options.path));
  }
  if (options.busy_timeout_ms < 0) return absl::InvalidArgumentError("SQLite busy_timeout_ms must be >= 0");
  auto db = std::make_unique<SqliteDatabase>(options);
  {
    // Sets up WAL mode once (it is persistent) and surfaces errors now.
    ASSIGN_OR_RETURN(auto conn, db->Connect());
  }
  if (options.durable) RETURN_IF_ERROR(SyncParentDirectory(options.path));
  return std::unique_ptr<Database>(std::move(db));
}

absl::StatusOr<std::vector<std::string>> IntegrityCheck(Connection& conn) {
  ASSIGN_OR_RETURN(auto st, conn.Prepare("PRAGMA integrity_check"));
  std::vector<std::string> problems;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    std::string line(st->ColumnText(0));
    if (line != "ok") problems.push_back(std::move(line));
  }
  return problems;
}

}  // namespace cairn::db
