#include "db/database.h"

#include <chrono>
#include <string>

#include <fmt/format.h>

namespace cairn::db {

absl::Status Statement::Run() {
  for (;;) {
    absl::StatusOr<bool> row = Step();
    if (!row.ok()) {
      Reset();
      return row.status();
    }
    if (!*row) break;
  }
  Reset();
  return absl::OkStatus();
}

namespace {

// BIGINT: PostgreSQL's INTEGER is 32-bit and Unix milliseconds are not.
constexpr std::string_view kCreateMigrationsTable =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "component TEXT NOT NULL, "
    "version INTEGER NOT NULL, "
    "name TEXT NOT NULL, "
    "applied_at BIGINT NOT NULL, "
    "PRIMARY KEY (component, version))";

int64_t NowUnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

absl::StatusOr<int64_t> LatestRecordedVersion(Connection& conn, std::string_view component) {
  ASSIGN_OR_RETURN(auto st, conn.Prepare("SELECT MAX(version) FROM schema_migrations WHERE component = ?"));
  st->BindText(1, component);
  ASSIGN_OR_RETURN(bool row, st->Step());
  int64_t latest = (row && !st->IsNull(0)) ? st->ColumnInt(0) : 0;
  st->Reset();
  return latest;
}

}  // namespace

absl::Status ApplyMigrations(Connection& conn, std::string_view component,
                             std::span<const Migration> migrations) {
  for (size_t i = 0; i < migrations.size(); ++i) {
    if (migrations[i].version < 1) {
      return absl::InvalidArgumentError(fmt::format(
          "migrations of '{}': version {} is not >= 1", component, migrations[i].version));
    }
    if (i > 0 && migrations[i].version <= migrations[i - 1].version) {
      return absl::InvalidArgumentError(fmt::format(
          "migrations of '{}' must be listed in strictly increasing version order (v{} follows v{})",
          component, migrations[i].version, migrations[i - 1].version));
    }
  }
  RETURN_IF_ERROR(conn.Execute(kCreateMigrationsTable));

  const int64_t latest_known = migrations.empty() ? 0 : migrations.back().version;
  ASSIGN_OR_RETURN(int64_t recorded, LatestRecordedVersion(conn, component));
  if (recorded > latest_known) {
    return absl::FailedPreconditionError(fmt::format(
        "the database schema of '{}' is at version {}, newer than the latest this Cairn knows ({}); "
        "it was written by a newer Cairn: upgrade Cairn or restore a backup",
        component, recorded, latest_known));
  }

  ASSIGN_OR_RETURN(auto applied,
                   conn.Prepare("SELECT 1 FROM schema_migrations WHERE component = ? AND version = ?"));
  ASSIGN_OR_RETURN(auto record, conn.Prepare(
                                    "INSERT INTO schema_migrations (component, version, name, applied_at) "
                                    "VALUES (?, ?, ?, ?)"));
  for (const Migration& m : migrations) {
    const std::string what = fmt::format("migration '{}' v{} ({})", component, m.version, m.name);
    Transaction txn(conn);
    RETURN_IF_ERROR(Annotate(txn.Begin(), what));
    // Checked inside the transaction: another process may have applied it
    // while we waited for the write lock.
    applied->BindText(1, component);
    applied->BindInt(2, m.version);
    absl::StatusOr<bool> done = applied->Step();
    applied->Reset();
    RETURN_IF_ERROR(Annotate(done.status(), what));
    if (*done) continue;  // ~Transaction ends the (empty) transaction

    absl::Status s = conn.Execute(m.sql);
    if (s.ok()) {
      record->BindText(1, component);
      record->BindInt(2, m.version);
      record->BindText(3, m.name);
      record->BindInt(4, NowUnixMillis());
      s = record->Run();
    }
    if (s.ok()) s = txn.Commit();
    if (!s.ok()) return Annotate(s, what + " failed and was rolled back");
  }
  return absl::OkStatus();
}

}  // namespace cairn::db
