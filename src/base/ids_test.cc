#include "base/ids.h"

#include <set>

#include "base/testing.h"

namespace cairn {
namespace {

TEST(IdsTest, RunIdsAreUuid4Hex) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewRunId();
    ASSERT_EQ(id.size(), 32u);
    EXPECT_TRUE(IsValidRunId(id)) << id;
    EXPECT_EQ(id[12], '4') << id;                              // Version nibble.
    EXPECT_NE(std::string("89ab").find(id[16]), std::string::npos) << id;  // Variant.
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(IdsTest, IsValidRunId) {
  EXPECT_TRUE(IsValidRunId("0123456789abcdef0123456789abcdef"));
  EXPECT_FALSE(IsValidRunId("0123456789ABCDEF0123456789abcdef"));
  EXPECT_FALSE(IsValidRunId("0123456789abcdef0123456789abcde"));
  EXPECT_FALSE(IsValidRunId("0123456789abcdef0123456789abcdef0"));
  EXPECT_FALSE(IsValidRunId("0123456789abcdef0123456789abcdeg"));
  EXPECT_FALSE(IsValidRunId(""));
}

TEST(IdsTest, NewRandomHex) {
  EXPECT_EQ(NewRandomHex(0), "");
  std::string a = NewRandomHex(8), b = NewRandomHex(8);
  EXPECT_EQ(a.size(), 16u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
}

}  // namespace
}  // namespace cairn
