#include "db/group_commit.h"

#include <utility>
#include <vector>

namespace cairn::db {

struct GroupCommitter::Pending {
  Unit unit;
  absl::Status result;
  bool done = false;
};

absl::StatusOr<std::unique_ptr<GroupCommitter>> GroupCommitter::Create(Database& db, Options options) {
  ASSIGN_OR_RETURN(auto conn, db.Connect());
  return std::unique_ptr<GroupCommitter>(new GroupCommitter(std::move(conn), options));
}

GroupCommitter::GroupCommitter(std::unique_ptr<Connection> conn, Options options)
    : options_(options), conn_(std::move(conn)), thread_([this] { Loop(); }) {}

GroupCommitter::~GroupCommitter() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

absl::Status GroupCommitter::Submit(Unit unit) {
  Pending pending{std::move(unit), absl::OkStatus(), false};
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the database writer is shutting down");
  queue_.push_back(&pending);
  mu_.Await(absl::Condition(&pending.done));
  return pending.result;
}

GroupCommitter::Stats GroupCommitter::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void GroupCommitter::Loop() {
  std::vector<Pending*> batch;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // stopping and drained
      while (!queue_.empty() && static_cast<int>(batch.size()) < options_.max_units_per_commit) {
        batch.push_back(queue_.front());
        queue_.pop_front();
      }
    }

    // Each unit runs inside its own savepoint: a failing unit is rolled back
    // alone, the others still commit together.
    absl::Status txn = conn_->Begin();
    if (txn.ok()) {
      for (Pending* p : batch) {
        absl::Status s = conn_->Execute("SAVEPOINT unit");
        if (s.ok()) {
          p->result = p->unit(*conn_);
          s = p->result.ok() ? conn_->Execute("RELEASE unit")
                             : conn_->Execute("ROLLBACK TO unit; RELEASE unit");
        }
        if (!s.ok()) {  // the transaction itself is broken: fail everything
          txn = s;
          break;
        }
      }
    }
    if (txn.ok()) {
      txn = conn_->Commit();
    } else {
      (void)conn_->Rollback();
    }
    if (!txn.ok()) {
      txn = Annotate(txn, "commit failed; nothing of this write was stored");
      for (Pending* p : batch) p->result = txn;
    }

    absl::MutexLock lock(&mu_);
    ++stats_.commits;
    stats_.units += batch.size();
    for (Pending* p : batch) p->done = true;
    batch.clear();
  }
}

}  // namespace cairn::db
