#include "data/glob.h"

#include <string>

#include "base/testing.h"

namespace cairn::data {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;

struct GlobCase {
  const char* pattern;
  const char* path;
  bool match;
};

class MatchGlobTest : public ::testing::TestWithParam<GlobCase> {};

TEST_P(MatchGlobTest, Matches) {
  const GlobCase& c = GetParam();
  ASSERT_OK(ValidateGlob(c.pattern));
  EXPECT_EQ(MatchGlob(c.pattern, c.path), c.match) << "pattern '" << c.pattern << "' path '" << c.path << "'";
}

INSTANTIATE_TEST_SUITE_P(
    Literals, MatchGlobTest,
    ::testing::Values(GlobCase{"a.csv", "a.csv", true}, GlobCase{"a.csv", "b.csv", false},
                      GlobCase{"a.csv", "a.csvx", false}, GlobCase{"a.csv", "xa.csv", false},
                      GlobCase{"dir/a", "dir/a", true}, GlobCase{"dir/a", "dir/b", false},
                      // Whole-path semantics: no basename matching anywhere.
                      GlobCase{"a.csv", "dir/a.csv", false}, GlobCase{"dir", "dir/a", false},
                      GlobCase{"dir/a", "dir", false}, GlobCase{"caf\xc3\xa9", "caf\xc3\xa9", true}));

INSTANTIATE_TEST_SUITE_P(
    Star, MatchGlobTest,
    ::testing::Values(GlobCase{"*", "a", true}, GlobCase{"*", "abc.txt", true}, GlobCase{"*", "a/b", false},
                      GlobCase{"*.csv", "a.csv", true}, GlobCase{"*.csv", ".csv", true},
                      GlobCase{"*.csv", "dir/a.csv", false}, GlobCase{"*.csv", "a.csv.gz", false},
                      GlobCase{"*", ".hidden", true}, GlobCase{"a*", "a", true}, GlobCase{"a*b", "ab", true},
                      GlobCase{"a*b", "axxb", true}, GlobCase{"a*b", "axxbx", false},
                      GlobCase{"a*b*c", "abbbcbc", true}, GlobCase{"a*b*c", "abbbcbd", false},
                      GlobCase{"*a*a*a*", "aaa", true}, GlobCase{"*a*a*a*", "aa", false},
                      GlobCase{"dir/*", "dir/x", true}, GlobCase{"dir/*", "dir/x/y", false},
                      GlobCase{"*/*", "a/b", true}, GlobCase{"*/*", "a", false},
                      GlobCase{"a**b", "axxb", true},  // `**` inside a segment is two `*`
                      GlobCase{"a**b", "ax/xb", false}));

INSTANTIATE_TEST_SUITE_P(
    QuestionMark, MatchGlobTest,
    ::testing::Values(GlobCase{"?", "a", true}, GlobCase{"?", "", false}, GlobCase{"?", "ab", false},
                      GlobCase{"a?c", "abc", true}, GlobCase{"a?c", "a/c", false},
                      // One code point, not one byte.
                      GlobCase{"caf?", "caf\xc3\xa9", true}, GlobCase{"caf??", "caf\xc3\xa9", false},
                      GlobCase{"?*", "\xe2\x82\xac", true}));

INSTANTIATE_TEST_SUITE_P(
    Classes, MatchGlobTest,
    ::testing::Values(GlobCase{"[abc]", "b", true}, GlobCase{"[abc]", "d", false},
                      GlobCase{"[a-z].txt", "q.txt", true}, GlobCase{"[a-z].txt", "Q.txt", false},
                      GlobCase{"[!a-z]", "Q", true}, GlobCase{"[!a-z]", "q", false},
                      GlobCase{"[]]", "]", true}, GlobCase{"[!]]", "]", false}, GlobCase{"[!]]", "x", true},
                      GlobCase{"[-a]", "-", true}, GlobCase{"[a-]", "-", true}, GlobCase{"[a-]", "b", false},
                      GlobCase{"[0-9][0-9]", "42", true}, GlobCase{"[0-9][0-9]", "4x", false},
                      GlobCase{"[\\]]", "]", true}, GlobCase{"[\xc3\xa9]", "\xc3\xa9", true},
                      GlobCase{"[a-\xc3\xbf]", "\xc3\xa9", true}, GlobCase{"shard-[0-4]*.bin", "shard-3x.bin", true},
                      GlobCase{"shard-[0-4]*.bin", "shard-5x.bin", false}, GlobCase{"[abc]", "ab", false}));

INSTANTIATE_TEST_SUITE_P(
    Escapes, MatchGlobTest,
    ::testing::Values(GlobCase{"\\*", "*", true}, GlobCase{"\\*", "a", false}, GlobCase{"a\\?", "a?", true},
                      GlobCase{"a\\?", "ab", false}, GlobCase{"\\[x]", "[x]", true}, GlobCase{"\\[x]", "x", false}));

INSTANTIATE_TEST_SUITE_P(
    DoubleStar, MatchGlobTest,
    ::testing::Values(
        GlobCase{"**", "a", true}, GlobCase{"**", "a/b/c", true}, GlobCase{"**/*.csv", "a.csv", true},
        GlobCase{"**/*.csv", "x/y/a.csv", true}, GlobCase{"**/*.csv", "x/y/a.txt", false},
        GlobCase{"a/**/b", "a/b", true}, GlobCase{"a/**/b", "a/x/b", true}, GlobCase{"a/**/b", "a/x/y/b", true},
        GlobCase{"a/**/b", "a/x/y/c", false}, GlobCase{"a/**/b", "a/b/c", false}, GlobCase{"a/**/b", "b", false},
        GlobCase{"a/**/b", "a/b/b", true},
        // A trailing `/**` is everything under the directory, not the directory name itself.
        GlobCase{"dir/**", "dir/a", true}, GlobCase{"dir/**", "dir/a/b/c", true}, GlobCase{"dir/**", "dir", false},
        GlobCase{"dir/**", "dirx/a", false}, GlobCase{"dir/**", "x/dir/a", false},
        GlobCase{"**/test/**", "test/a", true}, GlobCase{"**/test/**", "x/y/test/a/b", true},
        GlobCase{"**/test/**", "x/test", false}, GlobCase{"**/**/a", "a", true}, GlobCase{"**/**/a", "x/y/a", true},
        GlobCase{"a/**/**/b", "a/b", true}, GlobCase{"**/b/**/c", "x/b/y/b/z/c", true},
        GlobCase{"**/b/**/c", "x/b/y/z", false}, GlobCase{"x/**/y*/z", "x/a/yy/b/y1/z", true},
        GlobCase{"x/**/y*/z", "x/a/yy/b/y1/q", false}));

TEST(MatchGlobTest, NoExponentialBlowUp) {
  // Naive recursive matchers take exponential time on these.
  std::string long_a(2000, 'a');
  std::string segments;
  for (int i = 0; i < 200; ++i) segments += "a/";
  segments += "b";
  std::string star_pattern;
  for (int i = 0; i < 30; ++i) star_pattern += "*a";
  star_pattern += "b";
  std::string dstar_pattern;
  for (int i = 0; i < 30; ++i) dstar_pattern += "**/a/";
  dstar_pattern += "c";
  ASSERT_OK(ValidateGlob(star_pattern));
  ASSERT_OK(ValidateGlob(dstar_pattern));
  EXPECT_FALSE(MatchGlob(star_pattern, long_a));
  EXPECT_FALSE(MatchGlob(dstar_pattern, segments));
  EXPECT_TRUE(MatchGlob(star_pattern, long_a + "b"));
}

TEST(MatchGlobTest, MalformedPatternsDoNotCrash) {
  for (const char* p : {"", "[", "[a", "a\\", "/", "a//b", "[z-a]", "[!", "a/"}) {
    (void)MatchGlob(p, "a");
    (void)MatchGlob(p, "");
    (void)MatchGlob(p, "a/b");
  }
  EXPECT_FALSE(MatchGlob("[a", "a"));
}

struct BadGlobCase {
  const char* pattern;
  const char* reason;
};

class ValidateGlobTest : public ::testing::TestWithParam<BadGlobCase> {};

TEST_P(ValidateGlobTest, Rejects) {
  EXPECT_THAT(ValidateGlob(GetParam().pattern),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(GetParam().reason)));
}

INSTANTIATE_TEST_SUITE_P(Malformed, ValidateGlobTest,
                         ::testing::Values(BadGlobCase{"", "empty"}, BadGlobCase{"[abc", "unclosed"},
                                           BadGlobCase{"a/[b", "unclosed"}, BadGlobCase{"[]", "unclosed"},
                                           BadGlobCase{"[!]", "unclosed"}, BadGlobCase{"[a/b]", "unclosed"},
                                           BadGlobCase{"[a\\", "unclosed"}, BadGlobCase{"[z-a]", "reversed"},
                                           BadGlobCase{"a\\", "escapes nothing"}, BadGlobCase{"/a", "relative"},
                                           BadGlobCase{"a//b", "empty path segment"},
                                           BadGlobCase{"dir/", "trailing '/'"}, BadGlobCase{"./a", "'.'"},
                                           BadGlobCase{"a/../b", "'..'"}));

TEST(ValidateGlobTest, AcceptsWellFormed) {
  for (const char* p : {"a", "*", "**", "**/*.csv", "dir/**", "[]]", "[!a-z]", "[-]", "\\*", "a/**/b", "?"}) {
    EXPECT_THAT(ValidateGlob(p), IsOk()) << p;
  }
}

TEST(ValidateGlobTest, MessageNamesThePattern) {
  EXPECT_THAT(ValidateGlob("x/[y"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'x/[y'")));
}

}  // namespace
}  // namespace cairn::data
