// ConnectionPool: shares a bounded set of Connections to one Database among
// threads. Connections are opened lazily, on demand, up to max_connections;
// Acquire() blocks while all of them are leased.
//
// A Lease is the RAII handle of one connection: move-only, it gives
// Connection& and hands the connection back when destroyed, after
// Connection::ResetSession() (which rolls back a transaction the holder left
// open); a connection that fails that, or whose opening failed, is dropped and
// a later Acquire() opens a new one.
//
// Thread-safety: ConnectionPool is thread-safe. A Lease, like its Connection,
// is used by one thread at a time. The pool must outlive its leases, and the
// Database must outlive the pool. A thread that holds a lease and acquires
// another can deadlock once the pool is exhausted: take one at a time.
//
// Usage:
//   ASSIGN_OR_RETURN(auto pool, ConnectionPool::Create(*db, 8));
//   ASSIGN_OR_RETURN(ConnectionPool::Lease conn, pool->Acquire());
//   ASSIGN_OR_RETURN(Statement* st, conn->Cached("SELECT name FROM t WHERE id = ?"));
#ifndef CAIRN_DB_CONNECTION_POOL_H_
#define CAIRN_DB_CONNECTION_POOL_H_

#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/status.h"
#include "db/database.h"

namespace cairn::db {

class ConnectionPool {
 public:
  class Lease {
   public:
    Lease(Lease&& other) noexcept : pool_(other.pool_), conn_(std::move(other.conn_)) { other.pool_ = nullptr; }
    Lease& operator=(Lease&& other) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { Release(); }

    // REQUIRES: the lease has not been moved from.
    Connection& get() const { return *conn_; }
    Connection& operator*() const { return *conn_; }
    Connection* operator->() const { return conn_.get(); }

   private:
    friend class ConnectionPool;
    Lease(ConnectionPool* pool, std::unique_ptr<Connection> conn) : pool_(pool), conn_(std::move(conn)) {}
    void Release();

    ConnectionPool* pool_;
    std::unique_ptr<Connection> conn_;
  };

  // `db` is not owned and must outlive the pool. kInvalidArgument unless
  // max_connections >= 1. Opens no connection yet.
  static absl::StatusOr<std::unique_ptr<ConnectionPool>> Create(Database& db, int max_connections);
  // REQUIRES: no lease outstanding.
  ~ConnectionPool();
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  // An idle connection, a newly opened one if fewer than max_connections
  // exist, or else the next one returned (waits). Errors: those of
  // Database::Connect().
  absl::StatusOr<Lease> Acquire();

  int max_connections() const { return max_connections_; }
  // Connections open now (idle or leased).
  int open_connections() const;

 private:
  ConnectionPool(Database& db, int max_connections) : db_(db), max_connections_(max_connections) {}
  void Return(std::unique_ptr<Connection> conn);

  Database& db_;
  const int max_connections_;
  mutable absl::Mutex mu_;
  absl::CondVar returned_;  // signalled when a connection (or room for one) frees up
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;     // idle + leased + being opened
  int leased_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace cairn::db

#endif  // CAIRN_DB_CONNECTION_POOL_H_
