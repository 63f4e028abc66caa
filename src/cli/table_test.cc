#include "cli/table.h"

#include <gtest/gtest.h>

namespace cairn::cli {
namespace {

TEST(TableTest, PadsColumnsToWidestCell) {
  Table t({"ID", "NAME"});
  t.AddRow({"1", "alpha"});
  t.AddRow({"100", "b"});
  EXPECT_EQ(t.Render(), "ID   NAME\n1    alpha\n100  b\n");
}

TEST(TableTest, CutsLongCellsAndCountsUtf8ByCodePoint) {
  Table t({"K"});
  t.AddRow({std::string(100, 'x')});
  t.AddRow({"é"});
  std::string out = t.Render();
  EXPECT_NE(out.find(std::string(59, 'x') + "…"), std::string::npos);
  EXPECT_EQ(out.find(std::string(60, 'x')), std::string::npos);
}

TEST(TableTest, FormatsTimesAndBytes) {
  EXPECT_EQ(FormatTime(0), "-");
  EXPECT_EQ(FormatTime(1700000000000), "2023-11-14 22:13:20");
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(5ull << 30), "5.0 GiB");
}

}  // namespace
}  // namespace cairn::cli
