#include "data/manifest.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/testing.h"

namespace cairn::data {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;

ChunkRef Chunk(std::string_view content) { return {Sha256::Of(content), content.size()}; }

DatasetManifest Sample() {
  DatasetManifest m;
  m.files.push_back({"train/b.csv", 7, 0644, {Chunk("abc"), Chunk("defg")}});
  m.files.push_back({"README.md", 2, 0600, {Chunk("hi")}});
  m.files.push_back({"empty", 0, 0644, {}});
  m.files.push_back({"données/été 2024.csv", 1, 0755, {Chunk("x")}});
  return m;
}

TEST(ManifestTest, RoundTripsThroughCanonicalText) {
  DatasetManifest m = Sample();
  ASSERT_THAT(m.Normalize(), IsOk());
  EXPECT_EQ(m.files[0].path, "README.md");  // sorted bytewise
  std::string text = m.Serialize();
  EXPECT_THAT(text, HasSubstr("file 0644 7 2 train/b.csv\n"));
  EXPECT_THAT(text, HasSubstr("donn%C3%A9es/%C3%A9t%C3%A9%202024.csv"));
  auto back = DatasetManifest::Parse(text);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->Serialize(), text);
  EXPECT_EQ(back->ComputeDigest(), m.ComputeDigest());
  EXPECT_EQ(back->TotalBytes(), 10u);
  EXPECT_EQ(back->files[3].chunks[1].digest, Sha256::Of("defg"));
}

TEST(ManifestTest, SameContentSameDigestWhateverTheInputOrder) {
  DatasetManifest a = Sample(), b = Sample();
  std::reverse(b.files.begin(), b.files.end());
  ASSERT_THAT(a.Normalize(), IsOk());
  ASSERT_THAT(b.Normalize(), IsOk());
  EXPECT_EQ(a.ComputeDigest(), b.ComputeDigest());
  b.files[0].mode = 0640;
  EXPECT_NE(a.ComputeDigest(), b.ComputeDigest());
}

TEST(ManifestTest, RejectsEveryUnsafePath) {
  for (std::string bad : {std::string(""), std::string("/etc/passwd"), std::string("../x"), std::string("a/../b"),
                          std::string("a/./b"), std::string("."), std::string("a//b"), std::string("a/"),
                          std::string("a\\b"), std::string("a\nb"), std::string("a\0b", 3), std::string("\xff\xfe"),
                          std::string("\xc0\xaf"), std::string("\xed\xa0\x80"), std::string(4097, 'a')}) {
    EXPECT_THAT(ValidateDatasetPath(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
  for (std::string good : {"a", "a/b/c.txt", "..a", "a..", ".hidden", "données/x", "with space"}) {
    EXPECT_THAT(ValidateDatasetPath(good), IsOk()) << good;
  }
}

TEST(ManifestTest, NormalizeRejectsInconsistentEntries) {
  DatasetManifest dup;
  dup.files = {{"a", 1, 0644, {Chunk("x")}}, {"a", 1, 0644, {Chunk("y")}}};
  EXPECT_THAT(dup.Normalize(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate")));
  DatasetManifest file_and_dir;
  file_and_dir.files = {{"a", 1, 0644, {Chunk("x")}}, {"a/b", 1, 0644, {Chunk("y")}}};
  EXPECT_THAT(file_and_dir.Normalize(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("directory")));
  // Regression: sorted order puts "a.txt" between "a" and "a/b", so a check of
  // neighbours alone let this through.
  DatasetManifest apart;
  apart.files = {{"a", 1, 0644, {Chunk("x")}}, {"a.txt", 1, 0644, {Chunk("y")}}, {"a/b", 1, 0644, {Chunk("z")}}};
  EXPECT_THAT(apart.Normalize(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'a' is a file and also")));
  DatasetManifest sizes;
  sizes.files = {{"a", 5, 0644, {Chunk("x")}}};
  EXPECT_THAT(sizes.Normalize(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("chunks hold 1 bytes")));
  DatasetManifest mode;
  mode.files = {{"a", 1, 0100644, {Chunk("x")}}};
  EXPECT_THAT(mode.Normalize(), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ManifestTest, ParseRejectsDamageAndNonCanonicalText) {
  DatasetManifest m = Sample();
  ASSERT_THAT(m.Normalize(), IsOk());
  const std::string text = m.Serialize();
  auto rejects = [](const std::string& t) {
    EXPECT_THAT(DatasetManifest::Parse(t), StatusIs(absl::StatusCode::kInvalidArgument)) << t;
  };
  rejects("");
  rejects("cairn-manifest 2\n");
  rejects(text.substr(0, text.size() - 1));                  // no final newline
  rejects(text.substr(0, text.find("chunk")));               // chunk list cut short
  std::string upper = text;
  size_t at = upper.find("chunk ") + 6;
  for (size_t i = at; i < at + 64; ++i) upper[i] = static_cast<char>(std::toupper(upper[i]));
  rejects(upper);                                            // non-canonical digest case
  std::string swapped = "cairn-manifest 1\nfile 0644 1 1 b\nchunk " + Sha256::Of("x").ToHex() +
                        " 1\nfile 0644 1 1 a\nchunk " + Sha256::Of("y").ToHex() + " 1\n";
  rejects(swapped);                                          // out of order
  rejects("cairn-manifest 1\nfile 0644 1 1 %2E%2E/x\nchunk " + Sha256::Of("x").ToHex() + " 1\n");  // "../x"
  rejects("cairn-manifest 1\nfile 0644 1 1 a%2\n");          // bad escape
  rejects("cairn-manifest 1\nfile 644 0 0 a\n");             // mode not 4 digits
  rejects("cairn-manifest 1\nfile 0644 01 0 a\n");           // leading zero
  rejects("cairn-manifest 1\nfile 0644 99999999999999999999999 0 a\n");
  // Regression (found by manifest_fuzz): a huge chunk count must not be
  // trusted for allocation.
  rejects("cairn-manifest 1\nfile 0644 999999999999999 999999999999999 a\n");
  EXPECT_THAT(DatasetManifest::Parse("cairn-manifest 1\n"), IsOk());  // the empty tree
}

}  // namespace
}  // namespace cairn::data
