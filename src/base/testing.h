// Test-only helpers shared by every module's tests (include from *_test.cc
// only; needs gmock): Status matchers, ASSERT_OK-style macros, a scoped
// temporary directory, and a TaskQueue whose tasks run when the test says.
//
// Thread-safety: the matchers are stateless; a ScopedTempDir belongs to one
// test; a ManualTaskQueue takes posts from any thread.
//
// Usage:
//   EXPECT_THAT(store.Get(d), StatusIs(absl::StatusCode::kNotFound));
//   EXPECT_THAT(ParseJson("{"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("byte")));
//   ASSERT_OK(env->CreateDirs(dir));
//   ASSERT_OK_AND_ASSIGN(std::string s, env->ReadFileToString(path));
//   ScopedTempDir tmp;   // removed with its contents at scope exit
//   std::string path = tmp.path() + "/x";
//   ManualTaskQueue queue;   // this thread's TaskQueue until destroyed
//   ... queue.RunPosted();
#ifndef CAIRN_BASE_TESTING_H_
#define CAIRN_BASE_TESTING_H_

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/synchronization/mutex.h"
#include "base/status.h"
#include "base/task_queue.h"

namespace cairn::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = ::cairn::testing::GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s.ToString();
  return s.ok();
}

MATCHER_P(StatusIs, code, "has status code " + absl::StatusCodeToString(code)) {
  const absl::Status& s = ::cairn::testing::GetStatus(arg);
  *result_listener << "status is " << s.ToString();
  return s.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher, "has status code " + absl::StatusCodeToString(code)) {
  const absl::Status& s = ::cairn::testing::GetStatus(arg);
  *result_listener << "status is " << s.ToString();
  return s.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(s.message()), result_listener);
}

// The bytes of the file at `path`; empty when it cannot be read.
inline std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A fresh directory under $TMPDIR (or /tmp), removed recursively on destruction.
class ScopedTempDir {
 public:
  ScopedTempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/cairn-test-XXXXXX";
    char* made = ::mkdtemp(tmpl.data());
    if (made == nullptr) std::abort();
    path_ = tmpl;
  }
  ~ScopedTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The TaskQueue of the thread that creates it (until destroyed). Posted
// tasks wait until that thread calls RunPosted, as an event loop runs them
// between its passes; the destructor runs what is left.
class ManualTaskQueue : public TaskQueue {
 public:
  ManualTaskQueue() { SetCurrent(this); }
  ~ManualTaskQueue() override {
    while (RunPosted()) {
    }
    SetCurrent(nullptr);
  }
  ManualTaskQueue(const ManualTaskQueue&) = delete;
  ManualTaskQueue& operator=(const ManualTaskQueue&) = delete;

  void Post(std::function<void()> task) override {
    absl::MutexLock lock(&mu_);
    tasks_.push_back(std::move(task));
  }
  // Runs the tasks posted so far; false when there were none.
  bool RunPosted() {
    std::vector<std::function<void()>> now;
    {
      absl::MutexLock lock(&mu_);
      now.swap(tasks_);
    }
    for (auto& task : now) task();
    return !now.empty();
  }
  // Waits up to 10 s until `n` tasks wait to run; false if they did not come.
  bool AwaitPosted(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return tasks_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10));
  }

 private:
  absl::Mutex mu_;
  std::vector<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cairn::testing

#define CAIRN_TESTING_CONCAT_INNER_(a, b) a##b
#define CAIRN_TESTING_CONCAT_(a, b) CAIRN_TESTING_CONCAT_INNER_(a, b)

#define ASSERT_OK(expr) ASSERT_THAT((expr), ::cairn::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::cairn::testing::IsOk())

// Asserts that `expr` (a StatusOr) is OK and assigns its value to `lhs`.
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  CAIRN_ASSERT_OK_AND_ASSIGN_IMPL_(CAIRN_TESTING_CONCAT_(cairn_test_statusor_, __LINE__), lhs, expr)
#define CAIRN_ASSERT_OK_AND_ASSIGN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                     \
  ASSERT_THAT(tmp.status(), ::cairn::testing::IsOk());   \
  lhs = std::move(tmp).value()

#endif  // CAIRN_BASE_TESTING_H_
