#include "db/group_commit.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "base/testing.h"
#include "db/sqlite_database.h"

namespace cairn::db {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::StatusIs;

class GroupCommitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = OpenSqliteDatabase({.path = tmp_.path() + "/t.db"});
    ASSERT_THAT(db, IsOk());
    db_ = std::move(db).value();
    auto conn = db_->Connect();
    ASSERT_THAT(conn, IsOk());
    ASSERT_THAT((*conn)->Execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"), IsOk());
    auto committer = GroupCommitter::Create(*db_);
    ASSERT_THAT(committer, IsOk());
    committer_ = std::move(committer).value();
  }

  absl::Status Insert(int64_t k) {
    return committer_->Submit([k](Connection& conn) -> absl::Status {
      ASSIGN_OR_RETURN(Statement * st, conn.Cached("INSERT INTO t (k, v) VALUES (?, 'x')"));
      st->BindInt(1, k);
      return st->Run();
    });
  }

  int64_t Count() {
    auto conn = db_->Connect();
    auto st = (*conn)->Prepare("SELECT COUNT(*) FROM t");
    EXPECT_THAT((*st)->Step(), IsOk());
    return (*st)->ColumnInt(0);
  }

  cairn::testing::ScopedTempDir tmp_;
  std::unique_ptr<Database> db_;
  std::unique_ptr<GroupCommitter> committer_;
};

TEST_F(GroupCommitTest, CommittedUnitIsVisibleToOtherConnections) {
  ASSERT_THAT(Insert(1), IsOk());
  EXPECT_EQ(Count(), 1);
}

TEST_F(GroupCommitTest, FailingUnitIsUndoneAloneAndReported) {
  ASSERT_THAT(Insert(1), IsOk());
  EXPECT_THAT(Insert(1), StatusIs(absl::StatusCode::kAlreadyExists));
  // A unit that writes and then fails leaves nothing behind.
  absl::Status s = committer_->Submit([](Connection& conn) -> absl::Status {
    ASSIGN_OR_RETURN(Statement * st, conn.Cached("INSERT INTO t (k, v) VALUES (?, 'x')"));
    st->BindInt(1, 2);
    RETURN_IF_ERROR(st->Run());
    return absl::InvalidArgumentError("changed my mind");
  });
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(Count(), 1);
  ASSERT_THAT(Insert(3), IsOk());
  EXPECT_EQ(Count(), 2);
}

TEST_F(GroupCommitTest, ConcurrentSubmittersShareTransactions) {
  constexpr int kThreads = 16, kEach = 50;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  ASSERT_THAT(Insert(0), IsOk());
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        // Every 10th unit fails; its neighbours in the same transaction must still commit.
        absl::Status s = (i % 10 == 9) ? Insert(0) : Insert(1000 + t * kEach + i);
        if (!s.ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), kThreads * kEach / 10);
  EXPECT_EQ(Count(), 1 + kThreads * kEach * 9 / 10);
  GroupCommitter::Stats stats = committer_->stats();
  EXPECT_EQ(stats.units, static_cast<uint64_t>(kThreads * kEach + 1));
}

TEST_F(GroupCommitTest, DestructionDrainsQueuedWork) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] { EXPECT_THAT(Insert(t), IsOk()); });
  }
  for (auto& th : threads) th.join();
  committer_.reset();
  EXPECT_EQ(Count(), 4);
}

}  // namespace
}  // namespace cairn::db
