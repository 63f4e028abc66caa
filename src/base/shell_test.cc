#include "base/shell.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace cairn {
namespace {

TEST(ShellQuoteTest, QuotesEveryByteAsOneWord) {
  EXPECT_EQ(ShellQuote(""), "''");
  EXPECT_EQ(ShellQuote("a b"), "'a b'");
  EXPECT_EQ(ShellQuote("it's"), "'it'\\''s'");
  // The shell reads it back unchanged, whatever it holds.
  const std::string nasty = "x'; echo $HOME `id` \"q\" \\ *";
  FILE* pipe = ::popen(("printf %s " + ShellQuote(nasty)).c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buffer[256];
  while (size_t n = std::fread(buffer, 1, sizeof(buffer), pipe)) out.append(buffer, n);
  EXPECT_EQ(::pclose(pipe), 0);
  EXPECT_EQ(out, nasty);
}

}  // namespace
}  // namespace cairn
