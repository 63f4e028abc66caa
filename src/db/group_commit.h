// GroupCommitter: makes concurrent writers share durable transactions.
//
// Every write the API acknowledges must be durable (fsync) before the answer,
// and an fsync costs milliseconds. Instead of one transaction per request,
// writers Submit() their work; one writer thread takes everything queued,
// runs it in a single transaction (each unit in its own SAVEPOINT, so a unit
// that fails is undone alone and reported to its submitter) and commits
// once. Submit() returns only after that commit is durable.
//
// Thread-safety: thread-safe. Units run on the committer's own thread, one at
// a time, with exclusive use of its connection.
//
// Usage:
//   ASSIGN_OR_RETURN(auto committer, GroupCommitter::Create(db));
//   absl::Status s = committer->Submit([&](Connection& conn) -> absl::Status {
//     ASSIGN_OR_RETURN(Statement* st, conn.Cached("INSERT ..."));
//     ...
//     return st->Run();
//   });
#ifndef CAIRN_DB_GROUP_COMMIT_H_
#define CAIRN_DB_GROUP_COMMIT_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "base/status.h"
#include "db/database.h"

namespace cairn::db {

class GroupCommitter {
 public:
  using Unit = std::function<absl::Status(Connection&)>;

  struct Options {
    // Units per transaction at most; more wait for the next one.
    int max_units_per_commit = 4096;
  };

  // Opens the committer's connection to `db` (not owned; must outlive it).
  static absl::StatusOr<std::unique_ptr<GroupCommitter>> Create(Database& db, Options options);
  static absl::StatusOr<std::unique_ptr<GroupCommitter>> Create(Database& db) { return Create(db, Options{}); }
  ~GroupCommitter();
  GroupCommitter(const GroupCommitter&) = delete;
  GroupCommitter& operator=(const GroupCommitter&) = delete;

  // Runs `unit` in a shared transaction and waits until it is committed.
  // Returns the unit's own error (its changes undone), or the commit's error
  // (then nothing of the transaction was stored), or OK once durable.
  // `unit` must not call Begin/Commit/Rollback and must not block.
  absl::Status Submit(Unit unit);

  // Statistics for benchmarks and /metrics.
  struct Stats {
    uint64_t commits = 0;
    uint64_t units = 0;
  };
  Stats stats() const;

 private:
  struct Pending;
  GroupCommitter(std::unique_ptr<Connection> conn, Options options);
  void Loop();

  const Options options_;
  std::unique_ptr<Connection> conn_;  // used only by the committer thread
  mutable absl::Mutex mu_;
  std::deque<Pending*> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace cairn::db

#endif  // CAIRN_DB_GROUP_COMMIT_H_
