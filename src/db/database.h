// Database: Cairn's metadata store behind one interface, so that the embedded
// SQLite implementation and a PostgreSQL implementation pass the same test
// suite (db/database_test.cc is parameterised over implementations).
//
// SQL written against this interface uses `?` placeholders (implementations
// that need `$1`-style placeholders rewrite them), and only syntax both
// SQLite >= 3.35 and PostgreSQL >= 13 accept (e.g. `INSERT ... ON CONFLICT
// (...) DO UPDATE SET ...`, `RETURNING`). Column indexes are 0-based;
// parameter indexes are 1-based, as in SQL.
//
// Thread-safety: Database is thread-safe. A Connection and its Statements are
// not: one thread at a time. Use ConnectionPool to share connections.
//
// Ownership: Statements returned by Prepare are owned by the caller and must
// not outlive their Connection; Statements returned by Cached are owned by the
// Connection.
//
// Usage:
//   ASSIGN_OR_RETURN(auto db, OpenSqliteDatabase({.path = dir + "/cairn.db"}));
//   RETURN_IF_ERROR(db->Migrate("tracking", kTrackingMigrations));
//   ASSIGN_OR_RETURN(auto conn, db->Connect());
//   Transaction txn(*conn);
//   RETURN_IF_ERROR(txn.Begin());
//   ASSIGN_OR_RETURN(Statement* st, conn->Cached("INSERT INTO t(a, b) VALUES (?, ?)"));
//   st->BindInt(1, 42);
//   st->BindText(2, "x");
//   RETURN_IF_ERROR(st->Run());
//   RETURN_IF_ERROR(txn.Commit());
//
// Values: integers are int64; doubles are IEEE binary64 and round-trip
// exactly, including +-infinity, except that SQLite stores NaN as NULL
// (encode NaN yourself where it matters) and -0.0 as 0.0; text must be valid
// UTF-8 without NUL bytes (use blobs for arbitrary bytes). A statement
// stepped part-way (not until Step() returns false, and not Reset()) keeps
// its read snapshot open: Reset() it, or use Run(), before relying on seeing
// newer commits.
//
// Errors (all implementations): unique/primary-key violation kAlreadyExists;
// other constraint violations kFailedPrecondition; lock contention that
// outlasted the busy timeout kUnavailable; disk full kResourceExhausted;
// corruption kDataLoss; anything else kInternal. Messages name the SQL.
#ifndef CAIRN_DB_DATABASE_H_
#define CAIRN_DB_DATABASE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"

namespace cairn::db {

// A prepared statement.
class Statement {
 public:
  virtual ~Statement() = default;

  // Binding. `i` is 1-based. Text and blobs are copied. A bind error (index
  // out of range, statement not reset) is reported by the next Step().
  virtual void BindNull(int i) = 0;
  virtual void BindInt(int i, int64_t v) = 0;
  virtual void BindDouble(int i, double v) = 0;
  virtual void BindText(int i, std::string_view v) = 0;
  virtual void BindBlob(int i, std::string_view v) = 0;

  // Advances to the next result row: true when a row is available, false
  // when the statement is done. Constraint violations are
  // kAlreadyExists (unique/primary key) or kFailedPrecondition (others).
  virtual absl::StatusOr<bool> Step() = 0;
  // Steps until done, ignoring rows; then Reset()s.
  absl::Status Run();

  // Column access on the current row; `i` is 0-based. Views stay valid until
  // the next Step() or Reset().
  virtual bool IsNull(int i) = 0;
  virtual int64_t ColumnInt(int i) = 0;
  virtual double ColumnDouble(int i) = 0;
  virtual std::string_view ColumnText(int i) = 0;
  virtual std::string_view ColumnBlob(int i) = 0;
  virtual int ColumnCount() = 0;

  // Rows changed by the last completed INSERT/UPDATE/DELETE.
  virtual int64_t ChangedRows() = 0;

  // Makes the statement ready to run again; clears bindings.
  virtual void Reset() = 0;
};

class Connection {
 public:
  virtual ~Connection() = default;

  // Runs one or more statements without parameters or results (DDL, PRAGMA).
  virtual absl::Status Execute(std::string_view sql) = 0;
  virtual absl::StatusOr<std::unique_ptr<Statement>> Prepare(std::string_view sql) = 0;
  // A statement prepared once per connection and reused; it is Reset() before
  // being returned. The cache is never evicted: use it for a bounded set of
  // SQL texts (constants), not for SQL built from input.
  virtual absl::StatusOr<Statement*> Cached(std::string_view sql) = 0;

  // BEGIN (IMMEDIATE for SQLite: takes the write lock now, so a transaction
  // never fails half-way for lack of it). kFailedPrecondition if a
  // transaction is already active.
  virtual absl::Status Begin() = 0;
  // On failure the transaction is rolled back (nothing of it is stored).
  // kFailedPrecondition if no transaction is active (e.g. an earlier error
  // already rolled it back).
  virtual absl::Status Commit() = 0;
  // OK when no transaction is active.
  virtual absl::Status Rollback() = 0;

  // Makes the connection fit for its next user: resets statements left
  // part-way (releasing their read snapshot) and rolls back an open
  // transaction. ConnectionPool calls it when a lease ends; a connection that
  // fails it is discarded.
  virtual absl::Status ResetSession() { return Rollback(); }
};

// Rolls back on destruction unless committed.
class Transaction {
 public:
  explicit Transaction(Connection& conn) : conn_(conn) {}
  ~Transaction() {
    if (active_) (void)conn_.Rollback();
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  absl::Status Begin() {
    RETURN_IF_ERROR(conn_.Begin());
    active_ = true;
    return absl::OkStatus();
  }
  absl::Status Commit() {
    active_ = false;
    return conn_.Commit();
  }
  absl::Status Rollback() {
    active_ = false;
    return conn_.Rollback();
  }

 private:
  Connection& conn_;
  bool active_ = false;
};

// One versioned step of a component's schema.
struct Migration {
  int version;              // 1, 2, 3, ... within a component
  std::string_view name;    // short description, recorded when applied
  std::string_view sql;     // one or more statements; no BEGIN/COMMIT
};

enum class Dialect { kSqlite, kPostgres };

class Database {
 public:
  virtual ~Database() = default;
  virtual Dialect dialect() const = 0;

  // A new connection, owned by the caller.
  virtual absl::StatusOr<std::unique_ptr<Connection>> Connect() = 0;

  // Applies, in order and each in its own transaction, the migrations of
  // `component` not yet recorded in table `schema_migrations`. Fails with
  // kFailedPrecondition if the database records a version of `component`
  // newer than any in `migrations` (a newer Cairn wrote it), and with
  // kInvalidArgument unless versions are >= 1 and strictly increasing. A
  // failing migration is rolled back (earlier ones stay applied) and its
  // error names it.
  virtual absl::Status Migrate(std::string_view component, std::span<const Migration> migrations) = 0;
};

// For implementations of Database::Migrate: the dialect-neutral algorithm,
// run on `conn`. Table schema_migrations(component TEXT, version INTEGER,
// name TEXT, applied_at BIGINT (Unix ms), PRIMARY KEY(component, version)).
// Concurrent migrators are safe where Begin() takes the write lock (SQLite).
absl::Status ApplyMigrations(Connection& conn, std::string_view component,
                             std::span<const Migration> migrations);

}  // namespace cairn::db

#endif  // CAIRN_DB_DATABASE_H_
