#include "base/deferred.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace cairn {
namespace {

TEST(DeferredTasksTest, RunsTasksInOrderIncludingTheyAdd) {
  EXPECT_EQ(DeferredTasks::Current(), nullptr);
  std::vector<int> ran;
  {
    DeferredTasks later;
    ASSERT_EQ(DeferredTasks::Current(), &later);
    later.Add([&] {
      ran.push_back(1);
      DeferredTasks::Current()->Add([&] { ran.push_back(3); });
    });
    later.Add([&] { ran.push_back(2); });
    EXPECT_TRUE(ran.empty());
    later.RunAll();
    EXPECT_EQ(ran, (std::vector<int>{1, 2, 3}));
    later.Add([&] { ran.push_back(4); });
  }  // the destructor runs what is left
  EXPECT_EQ(ran, (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(DeferredTasks::Current(), nullptr);
}

TEST(DeferredTasksTest, BelongsToOneThread) {
  DeferredTasks later;
  DeferredTasks* seen = &later;
  std::thread([&] { seen = DeferredTasks::Current(); }).join();
  EXPECT_EQ(seen, nullptr);
  {
    DeferredTasks inner;
    EXPECT_EQ(DeferredTasks::Current(), &inner);
  }
  EXPECT_EQ(DeferredTasks::Current(), &later);
}

}  // namespace
}  // namespace cairn
