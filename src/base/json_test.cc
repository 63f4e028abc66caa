#include "base/json.h"

#include <cmath>
#include <limits>

#include "base/testing.h"

namespace cairn {
namespace {

using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;
constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

TEST(ParseJsonTest, ParsesValidText) {
  ASSERT_OK_AND_ASSIGN(Json j, ParseJson(R"({"a": 1, "b": [true, null], "c": "x"})"));
  EXPECT_EQ(j["a"], 1);
  EXPECT_EQ(j["c"], "x");
  EXPECT_EQ(j.dump(), R"({"a":1,"b":[true,null],"c":"x"})");
}

TEST(ParseJsonTest, ErrorsNameTheBytePosition) {
  EXPECT_THAT(ParseJson(R"({"a": 1,})"), StatusIs(kInvalid, HasSubstr("at byte 9")));
  EXPECT_THAT(ParseJson(""), StatusIs(kInvalid, HasSubstr("byte")));
  EXPECT_THAT(ParseJson("[1] trailing"), StatusIs(kInvalid));
  EXPECT_THAT(ParseJson("\"\xff\""), StatusIs(kInvalid));
}

TEST(ParseJsonTest, RejectsExcessiveNesting) {
  std::string deep(100000, '[');
  EXPECT_THAT(ParseJson(deep), StatusIs(kInvalid, HasSubstr("nesting")));
  std::string ok = std::string(500, '[') + std::string(500, ']');
  EXPECT_TRUE(ParseJson(ok).ok());
  // Brackets inside strings do not count.
  std::string in_string = "\"" + std::string(1000, '[') + "\\\"\"";
  EXPECT_TRUE(ParseJson(in_string).ok());
}

TEST(JsonFieldTest, Strings) {
  Json j = {{"s", "v"}, {"n", 1}, {"z", nullptr}};
  ASSERT_OK_AND_ASSIGN(std::string s, GetString(j, "s"));
  EXPECT_EQ(s, "v");
  EXPECT_THAT(GetString(j, "missing"), StatusIs(kInvalid, HasSubstr("'missing'")));
  EXPECT_THAT(GetString(j, "z"), StatusIs(kInvalid, HasSubstr("missing required field 'z'")));
  EXPECT_THAT(GetString(j, "n"), StatusIs(kInvalid, HasSubstr("'n' must be a string")));
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> o, GetOptionalString(j, "missing"));
  EXPECT_FALSE(o.has_value());
  ASSERT_OK_AND_ASSIGN(o, GetOptionalString(j, "s"));
  EXPECT_EQ(o, "v");
  EXPECT_THAT(GetString(Json::array(), "s"), StatusIs(kInvalid, HasSubstr("object")));
}

TEST(JsonFieldTest, Ints) {
  Json j = {{"i", 42},      {"neg", -7},         {"str", "1234567890123"}, {"bad", "12x"},
            {"f", 3.0},     {"frac", 1.5},       {"big", 18446744073709551615ull},
            {"b", true},    {"sneg", "-5"},      {"empty", ""}};
  EXPECT_EQ(*GetInt(j, "i"), 42);
  EXPECT_EQ(*GetInt(j, "neg"), -7);
  EXPECT_EQ(*GetInt(j, "str"), 1234567890123);
  EXPECT_EQ(*GetInt(j, "sneg"), -5);
  EXPECT_EQ(*GetInt(j, "f"), 3);
  EXPECT_THAT(GetInt(j, "bad"), StatusIs(kInvalid, HasSubstr("'bad'")));
  EXPECT_THAT(GetInt(j, "frac"), StatusIs(kInvalid));
  EXPECT_THAT(GetInt(j, "big"), StatusIs(kInvalid, HasSubstr("range")));
  EXPECT_THAT(GetInt(j, "b"), StatusIs(kInvalid, HasSubstr("boolean")));
  EXPECT_THAT(GetInt(j, "empty"), StatusIs(kInvalid));
  EXPECT_THAT(GetInt(j, "missing"), StatusIs(kInvalid));
  ASSERT_OK_AND_ASSIGN(std::optional<int64_t> o, GetOptionalInt(j, "missing"));
  EXPECT_FALSE(o.has_value());
  ASSERT_OK_AND_ASSIGN(o, GetOptionalInt(j, "str"));
  EXPECT_EQ(o, 1234567890123);
}

TEST(JsonFieldTest, Doubles) {
  Json j = {{"d", 1.5}, {"i", 2}, {"nan", "NaN"}, {"inf", "Infinity"}, {"ninf", "-Infinity"},
            {"s", "2.25"}, {"bad", "x"}, {"arr", Json::array()}};
  EXPECT_EQ(*GetDouble(j, "d"), 1.5);
  EXPECT_EQ(*GetDouble(j, "i"), 2.0);
  EXPECT_TRUE(std::isnan(*GetDouble(j, "nan")));
  EXPECT_EQ(*GetDouble(j, "inf"), std::numeric_limits<double>::infinity());
  EXPECT_EQ(*GetDouble(j, "ninf"), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(*GetDouble(j, "s"), 2.25);
  EXPECT_THAT(GetDouble(j, "bad"), StatusIs(kInvalid, HasSubstr("'bad'")));
  EXPECT_THAT(GetDouble(j, "arr"), StatusIs(kInvalid));
  EXPECT_THAT(GetDouble(j, "missing"), StatusIs(kInvalid));
}

TEST(JsonFieldTest, BoolsAndArrays) {
  Json j = {{"t", true}, {"s", "true"}, {"a", {1, 2}}, {"o", {{"k", 1}}}, {"null", nullptr}};
  EXPECT_EQ(*GetOptionalBool(j, "t"), true);
  EXPECT_FALSE(GetOptionalBool(j, "missing")->has_value());
  EXPECT_THAT(GetOptionalBool(j, "s"), StatusIs(kInvalid));
  ASSERT_OK_AND_ASSIGN(std::vector<Json> a, GetOptionalArray(j, "a"));
  EXPECT_EQ(a.size(), 2u);
  ASSERT_OK_AND_ASSIGN(a, GetOptionalArray(j, "null"));
  EXPECT_TRUE(a.empty());
  EXPECT_THAT(GetOptionalArray(j, "o"), StatusIs(kInvalid, HasSubstr("array")));
}

TEST(JsonDoubleTest, NonFiniteBecomeStrings) {
  EXPECT_EQ(JsonDouble(1.25).dump(), "1.25");
  EXPECT_EQ(JsonDouble(std::nan("")).dump(), "\"NaN\"");
  EXPECT_EQ(JsonDouble(std::numeric_limits<double>::infinity()).dump(), "\"Infinity\"");
  EXPECT_EQ(JsonDouble(-std::numeric_limits<double>::infinity()).dump(), "\"-Infinity\"");
  // And they round-trip through GetDouble.
  Json j = {{"v", JsonDouble(-std::numeric_limits<double>::infinity())}};
  EXPECT_EQ(*GetDouble(j, "v"), -std::numeric_limits<double>::infinity());
}

}  // namespace
}  // namespace cairn
