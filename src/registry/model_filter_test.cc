#include "registry/model_filter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/testing.h"

namespace cairn::registry {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;

constexpr FilterTarget kModels = FilterTarget::kRegisteredModels;
constexpr FilterTarget kVersions = FilterTarget::kModelVersions;

bool ModelMatches(const std::string& filter, const std::string& name, const std::map<std::string, std::string>& tags) {
  auto f = ParseModelFilter(filter, kModels);
  EXPECT_THAT(f, IsOk()) << filter;
  return f.ok() && Matches(*f, {.name = name, .tags = &tags});
}

TEST(ModelFilterTest, EmptyFilterMatchesAll) {
  auto f = ParseModelFilter("  ", kModels);
  ASSERT_THAT(f, IsOk());
  EXPECT_TRUE(f->clauses.empty());
  EXPECT_TRUE(Matches(*f, {.name = "x"}));
}

TEST(ModelFilterTest, NameComparisons) {
  EXPECT_TRUE(ModelMatches("name = 'churn'", "churn", {}));
  EXPECT_FALSE(ModelMatches("name = 'churn'", "Churn", {}));
  EXPECT_TRUE(ModelMatches("name != 'churn'", "fraud", {}));
  EXPECT_TRUE(ModelMatches("name LIKE 'chu%'", "churn", {}));
  EXPECT_FALSE(ModelMatches("name LIKE 'CHU%'", "churn", {}));
  EXPECT_TRUE(ModelMatches("name ILIKE 'CHU%'", "churn", {}));
  EXPECT_TRUE(ModelMatches("name like \"c_urn\"", "churn", {}));
  EXPECT_FALSE(ModelMatches("name like 'c_rn'", "churn", {}));
}

TEST(ModelFilterTest, TagsAndConjunction) {
  std::map<std::string, std::string> tags{{"team", "risk"}, {"my key", "v"}};
  EXPECT_TRUE(ModelMatches("tags.team = 'risk' AND name LIKE '%'", "m", tags));
  EXPECT_FALSE(ModelMatches("tags.team = 'risk' and name = 'other'", "m", tags));
  EXPECT_TRUE(ModelMatches("tags.`my key` = 'v'", "m", tags));
  EXPECT_TRUE(ModelMatches("tag.\"my key\" != 'w'", "m", tags));
  // A tag clause needs the tag, even with !=.
  EXPECT_FALSE(ModelMatches("tags.owner != 'ana'", "m", tags));
}

TEST(ModelFilterTest, VersionFields) {
  auto f = ParseModelFilter("name = 'm' AND run_id IN ('r1', 'r2') AND version_number >= 2 AND "
                            "source_path LIKE 'runs:/%'",
                            kVersions);
  ASSERT_THAT(f, IsOk());
  ASSERT_EQ(f->clauses.size(), 4u);
  EXPECT_EQ(f->clauses[1].strings, (std::vector<std::string>{"r1", "r2"}));
  EXPECT_TRUE(Matches(*f, {.name = "m", .run_id = "r2", .source = "runs:/r2/model", .version = 2}));
  EXPECT_FALSE(Matches(*f, {.name = "m", .run_id = "r3", .source = "runs:/r3/model", .version = 2}));
  EXPECT_FALSE(Matches(*f, {.name = "m", .run_id = "r1", .source = "runs:/r1/model", .version = 1}));
  auto g = ParseModelFilter("run_id NOT IN ('r1') AND version_number = '3'", kVersions);
  ASSERT_THAT(g, IsOk());
  EXPECT_TRUE(Matches(*g, {.run_id = "r2", .version = 3}));
  EXPECT_FALSE(Matches(*g, {.run_id = "r1", .version = 3}));
}

TEST(ModelFilterTest, ErrorsCarryPosition) {
  EXPECT_THAT(ParseModelFilter("name = 'a' OR name = 'b'", kModels),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("position 11: OR is not supported")));
  EXPECT_THAT(ParseModelFilter("run_id = 'r'", kModels),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("position 0: invalid attribute key 'run_id'")));
  EXPECT_THAT(ParseModelFilter("name = 'abc", kModels),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("position 7: unterminated")));
  EXPECT_THAT(ParseModelFilter("name > 'a'", kModels),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("position 5")));
  EXPECT_THAT(ParseModelFilter("version_number = 'x'", kVersions),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected an integer")));
  EXPECT_THAT(ParseModelFilter("version_number LIKE '1'", kVersions), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseModelFilter("run_id IN ('a',", kVersions), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseModelFilter("name = 'a' AND", kModels), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseModelFilter("(name = 'a')", kModels), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseModelFilter("name = 7", kModels), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseModelFilter("tags. = 'x'", kModels), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseModelFilter(std::string("name = 'a\0'", 11), kModels), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ModelFilterTest, LikeSemantics) {
  EXPECT_TRUE(LikeMatch("abc", "%", false));
  EXPECT_TRUE(LikeMatch("", "%", false));
  EXPECT_FALSE(LikeMatch("", "_", false));
  EXPECT_TRUE(LikeMatch("a%c", "a\\%c", false));
  EXPECT_FALSE(LikeMatch("abc", "a\\%c", false));
  EXPECT_TRUE(LikeMatch("model-v2-final", "%v_-%al", false));
  EXPECT_TRUE(LikeMatch("héllo", "h_llo", false));  // _ is one character, not one byte
  EXPECT_TRUE(LikeMatch("ABC", "a%", true));
  EXPECT_FALSE(LikeMatch("aaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "%a%a%a%a%a%c", false));
}

TEST(ModelFilterTest, OrderBy) {
  auto keys = ParseModelOrderBy({"name DESC", "timestamp"}, kModels);
  ASSERT_THAT(keys, IsOk());
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].field, OrderField::kName);
  EXPECT_FALSE((*keys)[0].ascending);
  EXPECT_EQ((*keys)[1].field, OrderField::kLastUpdated);
  EXPECT_TRUE((*keys)[1].ascending);
  EXPECT_THAT(ParseModelOrderBy({"version_number"}, kModels), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseModelOrderBy({"version_number desc"}, kVersions), IsOk());
  EXPECT_THAT(ParseModelOrderBy({"name sideways"}, kModels), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseModelOrderBy({"name", "name DESC"}, kModels), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseModelOrderBy({""}, kModels), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ModelFilterTest, PageTokens) {
  for (int64_t offset : {0, 1, 99, 123456789}) {
    auto back = DecodePageToken(EncodePageToken(offset));
    ASSERT_THAT(back, IsOk());
    EXPECT_EQ(*back, offset);
  }
  auto empty = DecodePageToken("");
  ASSERT_THAT(empty, IsOk());
  EXPECT_EQ(*empty, 0);
  EXPECT_THAT(DecodePageToken("not a token"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(DecodePageToken("e30="), StatusIs(absl::StatusCode::kInvalidArgument));  // "{}"
  EXPECT_THAT(DecodePageToken("eyJvZmZzZXQiOi0xfQ=="), StatusIs(absl::StatusCode::kInvalidArgument));  // -1
}

}  // namespace
}  // namespace cairn::registry
