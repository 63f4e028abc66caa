#include "base/quoted.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <string_view>

namespace cairn {
namespace {

// Reads the run at the start of `text`; `rest` gets what follows it.
std::optional<std::string> Read(std::string_view text, Backslash backslash, std::string_view* rest = nullptr) {
  size_t pos = 0;
  std::optional<std::string> s = ReadQuoted(text, &pos, backslash);
  if (rest != nullptr) *rest = text.substr(pos);
  return s;
}

TEST(ReadQuotedTest, StopsAfterTheClosingQuote) {
  std::string_view rest;
  EXPECT_EQ(Read("'abc' AND x", Backslash::kLiteral, &rest), "abc");
  EXPECT_EQ(rest, " AND x");
  EXPECT_EQ(Read("\"a'b\"", Backslash::kLiteral), "a'b");
  EXPECT_EQ(Read("`tag key`.x", Backslash::kLiteral, &rest), "tag key");
  EXPECT_EQ(rest, ".x");
  EXPECT_EQ(Read("''", Backslash::kLiteral), "");
}

TEST(ReadQuotedTest, ADoubledQuoteStandsForItself) {
  EXPECT_EQ(Read("'it''s'", Backslash::kLiteral), "it's");
  EXPECT_EQ(Read("''''", Backslash::kEscapes), "'");
  EXPECT_EQ(Read("`a``b`", Backslash::kLiteral), "a`b");
}

TEST(ReadQuotedTest, BackslashesEscapeOnlyWhenAsked) {
  EXPECT_EQ(Read(R"('a\'b')", Backslash::kEscapes), "a'b");
  EXPECT_EQ(Read(R"('a\\b')", Backslash::kEscapes), R"(a\b)");
  EXPECT_EQ(Read(R"('50\%')", Backslash::kEscapes), R"(50\%)");  // LIKE patterns stay escaped
  EXPECT_EQ(Read(R"('a\b')", Backslash::kLiteral), R"(a\b)");
  // Literal: the backslash does not protect the quote after it.
  std::string_view rest;
  EXPECT_EQ(Read(R"('a\'b')", Backslash::kLiteral, &rest), R"(a\)");
  EXPECT_EQ(rest, "b'");
}

TEST(ReadQuotedTest, AnUnclosedRunIsRefused) {
  EXPECT_EQ(Read("'abc", Backslash::kLiteral), std::nullopt);
  EXPECT_EQ(Read("'", Backslash::kEscapes), std::nullopt);
  EXPECT_EQ(Read(R"('abc\')", Backslash::kEscapes), std::nullopt);  // the last quote is escaped
  EXPECT_EQ(Read(R"('abc\)", Backslash::kEscapes), std::nullopt);
  EXPECT_EQ(Read("'it''", Backslash::kLiteral), std::nullopt);
}

}  // namespace
}  // namespace cairn
