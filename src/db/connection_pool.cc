#include "db/connection_pool.h"

#include <cassert>
#include <utility>

#include <fmt/format.h>

namespace cairn::db {

ConnectionPool::Lease& ConnectionPool::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    pool_ = other.pool_;
    conn_ = std::move(other.conn_);
    other.pool_ = nullptr;
  }
  return *this;
}

void ConnectionPool::Lease::Release() {
  if (pool_ != nullptr) pool_->Return(std::move(conn_));
  pool_ = nullptr;
}

absl::StatusOr<std::unique_ptr<ConnectionPool>> ConnectionPool::Create(Database& db, int max_connections) {
  if (max_connections < 1) {
    return absl::InvalidArgumentError(
        fmt::format("connection pool size must be at least 1, not {}", max_connections));
  }
  return std::unique_ptr<ConnectionPool>(new ConnectionPool(db, max_connections));
}

ConnectionPool::~ConnectionPool() {
  absl::MutexLock lock(&mu_);
  assert(leased_ == 0 && "ConnectionPool destroyed while connections are leased");
}

absl::StatusOr<ConnectionPool::Lease> ConnectionPool::Acquire() {
  {
    absl::MutexLock lock(&mu_);
    while (idle_.empty() && open_ >= max_connections_) returned_.Wait(&mu_);
    if (!idle_.empty()) {
      // Most recently used first: its caches are warm.
      std::unique_ptr<Connection> conn = std::move(idle_.back());
      idle_.pop_back();
      ++leased_;
      return Lease(this, std::move(conn));
    }
    ++open_;  // reserve the slot; open outside the lock
  }
  absl::StatusOr<std::unique_ptr<Connection>> conn = db_.Connect();
  absl::MutexLock lock(&mu_);
  if (!conn.ok()) {
    --open_;
    returned_.Signal();
    return conn.status();
  }
  ++leased_;
  return Lease(this, *std::move(conn));
}

void ConnectionPool::Return(std::unique_ptr<Connection> conn) {
  absl::Status reset = conn->ResetSession();
  if (!reset.ok()) conn.reset();  // closed outside the lock
  absl::MutexLock lock(&mu_);
  --leased_;
  if (conn) {
    idle_.push_back(std::move(conn));
  } else {
    --open_;
  }
  returned_.Signal();
}

int ConnectionPool::open_connections() const {
  absl::MutexLock lock(&mu_);
  return open_;
}

}  // namespace cairn::db
