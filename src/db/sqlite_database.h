// SQLite implementation of Database: Cairn's embedded metadata store (one
// file, `cairn.db`, in WAL mode, in the data directory).
//
// Every connection is set up with: journal_mode=WAL (readers never block the
// writer nor the writer readers), synchronous=FULL when `durable` (a commit
// that returned OK survives kill -9 and power loss; NORMAL otherwise, which
// survives process crashes but may lose the last commits on power loss),
// foreign_keys=ON, the busy timeout, an 8 MiB page cache and
// temp_store=MEMORY. Begin() is BEGIN IMMEDIATE. SQLite allows one writer at
// a time: a second one waits up to busy_timeout_ms, then gets kUnavailable.
//
// Error codes: SQLITE_CONSTRAINT_UNIQUE/PRIMARYKEY/ROWID kAlreadyExists;
// other SQLITE_CONSTRAINT kFailedPrecondition; SQLITE_BUSY/LOCKED
// kUnavailable; SQLITE_FULL/NOMEM kResourceExhausted; SQLITE_CORRUPT/NOTADB
// kDataLoss; SQLITE_RANGE (bind index) kOutOfRange; SQLITE_TOOBIG
// kInvalidArgument; SQLITE_INTERRUPT kCancelled; anything else kInternal.
//
// Thread-safety: the Database is thread-safe (it holds only options); its
// connections follow database.h (one thread at a time).
//
// Usage:
//   ASSIGN_OR_RETURN(std::unique_ptr<Database> db,
//                    OpenSqliteDatabase({.path = home + "/cairn.db"}));
//   ASSIGN_OR_RETURN(auto conn, db->Connect());
//   ASSIGN_OR_RETURN(std::vector<std::string> problems, IntegrityCheck(*conn));
#ifndef CAIRN_DB_SQLITE_DATABASE_H_
#define CAIRN_DB_SQLITE_DATABASE_H_

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "db/database.h"

namespace cairn::db {

struct SqliteOptions {
  // The database file; created if missing (its directory must exist).
  // In-memory databases (":memory:", "" or "file::memory:") are refused with
  // kInvalidArgument: every connection would see a different database. Tests
  // use a file in a temporary directory.
  std::string path;
  // synchronous=FULL (fsync at every commit) rather than NORMAL.
  bool durable = true;
  // How long a connection waits for a lock another one holds.
  int busy_timeout_ms = 10000;
};

// Opens (creating if needed) the database at `options.path`, switches it to
// WAL mode and checks that a connection can be set up. Errors: as above, e.g.
// kDataLoss when the file is not a SQLite database; kInvalidArgument for
// in-memory paths.
absl::StatusOr<std::unique_ptr<Database>> OpenSqliteDatabase(const SqliteOptions& options);

// Runs PRAGMA integrity_check on `conn` and returns the problems it reports;
// empty when the database is sound. For `cairn fsck`.
// REQUIRES: `conn` comes from a SQLite Database (OpenSqliteDatabase).
absl::StatusOr<std::vector<std::string>> IntegrityCheck(Connection& conn);

}  // namespace cairn::db

#endif  // CAIRN_DB_SQLITE_DATABASE_H_
