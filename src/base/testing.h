// Test-only helpers shared by every module's tests (include from *_test.cc
// only; needs gmock): Status matchers, ASSERT_OK-style macros and a scoped
// temporary directory.
//
// Thread-safety: the matchers are stateless; a ScopedTempDir belongs to one test.
//
// Usage:
//   EXPECT_THAT(store.Get(d), StatusIs(absl::StatusCode::kNotFound));
//   EXPECT_THAT(ParseJson("{"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("byte")));
//   ASSERT_OK(env->CreateDirs(dir));
//   ASSERT_OK_AND_ASSIGN(std::string s, env->ReadFileToString(path));
//   ScopedTempDir tmp;   // removed with its contents at scope exit
//   std::string path = tmp.path() + "/x";
#ifndef CAIRN_BASE_TESTING_H_
#define CAIRN_BASE_TESTING_H_

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/status.h"

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
