#include "base/status.h"

#include "base/testing.h"

namespace cairn {
namespace {

using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;

absl::Status Fail(bool fail) { return fail ? absl::NotFoundError("gone") : absl::OkStatus(); }
absl::StatusOr<int> Value(bool fail) {
  if (fail) return absl::InvalidArgumentError("bad");
  return 7;
}

int after_return_if_error = 0;
absl::Status UsesReturnIfError(bool fail) {
  RETURN_IF_ERROR(Fail(fail));
  ++after_return_if_error;
  return absl::OkStatus();
}

absl::StatusOr<int> UsesAssignOrReturn(bool fail) {
  ASSIGN_OR_RETURN(int v, Value(fail));
  ASSIGN_OR_RETURN(auto w, Value(false));  // Twice in one function: unique temporaries.
  return v + w;
}

absl::StatusOr<std::unique_ptr<int>> MoveOnly() { return std::make_unique<int>(5); }
absl::StatusOr<int> UsesMoveOnly() {
  std::unique_ptr<int> p;
  ASSIGN_OR_RETURN(p, MoveOnly());  // Assignment to an existing variable.
  return *p;
}

TEST(StatusMacrosTest, ReturnIfError) {
  after_return_if_error = 0;
  EXPECT_THAT(UsesReturnIfError(true), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(after_return_if_error, 0);
  EXPECT_OK(UsesReturnIfError(false));
  EXPECT_EQ(after_return_if_error, 1);
}

TEST(StatusMacrosTest, AssignOrReturn) {
  EXPECT_THAT(UsesAssignOrReturn(true), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad")));
  ASSERT_OK_AND_ASSIGN(int v, UsesAssignOrReturn(false));
  EXPECT_EQ(v, 14);
  ASSERT_OK_AND_ASSIGN(int m, UsesMoveOnly());
  EXPECT_EQ(m, 5);
}

TEST(ErrorCodeTest, AttachAndRead) {
  absl::Status s = WithErrorCode(absl::NotFoundError("no run"), "RESOURCE_DOES_NOT_EXIST");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "no run");
  EXPECT_EQ(ErrorCodeOf(s), "RESOURCE_DOES_NOT_EXIST");
  EXPECT_EQ(ErrorCodeOf(absl::NotFoundError("x")), std::nullopt);
  // The code survives propagation through the macros.
  auto f = [&]() -> absl::Status {
    RETURN_IF_ERROR(s);
    return absl::OkStatus();
  };
  EXPECT_EQ(ErrorCodeOf(f()), "RESOURCE_DOES_NOT_EXIST");
}

TEST(AnnotateTest, PrefixesMessageKeepsCodeAndPayload) {
  absl::Status s = WithErrorCode(absl::InvalidArgumentError("bad key"), "INVALID_PARAMETER_VALUE");
  absl::Status a = Annotate(s, "log-batch");
  EXPECT_EQ(a.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.message(), "log-batch: bad key");
  EXPECT_EQ(ErrorCodeOf(a), "INVALID_PARAMETER_VALUE");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "ctx").ok());
}

}  // namespace
}  // namespace cairn
