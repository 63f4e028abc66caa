#include "data/profile.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/testing.h"

namespace cairn::data {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::string_literals;

absl::StatusOr<TableProfile> ProfilePieces(std::string_view format, const std::vector<std::string_view>& pieces) {
  ASSIGN_OR_RETURN(auto profiler, TableProfiler::ForFormat(format));
  for (std::string_view piece : pieces) RETURN_IF_ERROR(profiler->Append(piece));
  return profiler->Finish();
}

absl::StatusOr<TableProfile> Profile(std::string_view format, std::string_view bytes) {
  return ProfilePieces(format, {bytes});
}

const ColumnProfile& Column(const TableProfile& p, std::string_view name) {
  for (const ColumnProfile& c : p.columns) {
    if (c.name == name) return c;
  }
  ADD_FAILURE() << "no column " << name;
  static const ColumnProfile kNone;
  return kNone;
}

// ---------------------------------------------------------------------------
// Paths and factories

TEST(IsTabularPathTest, MatchesExtensionsIgnoringAsciiCase) {
  for (std::string_view yes : {"a.csv", "dir/b.CSV", "x.tsv", "y.Tsv", "z.npy", "arr.NPY", ".csv"}) {
    EXPECT_TRUE(IsTabularPath(yes)) << yes;
  }
  for (std::string_view no : {"a.csv.gz", "csv", "a.txt", "a.npz", "a.parquet", "", "a_csv", "a.cs"}) {
    EXPECT_FALSE(IsTabularPath(no)) << no;
  }
}

TEST(TableProfilerTest, ForPathPicksTheFormatAndRejectsOthers) {
  ASSERT_OK_AND_ASSIGN(auto csv, TableProfiler::ForPath("train/Data.CSV"));
  ASSERT_OK(csv->Append("a\n1\n"));
  ASSERT_OK_AND_ASSIGN(TableProfile p, csv->Finish());
  EXPECT_EQ(p.format, "csv");
  ASSERT_OK_AND_ASSIGN(auto tsv, TableProfiler::ForPath("x.tsv"));
  ASSERT_OK(tsv->Append("a\tb\n1\t2\n"));
  ASSERT_OK_AND_ASSIGN(p, tsv->Finish());
  EXPECT_EQ(p.format, "tsv");
  EXPECT_EQ(p.column_count, 2u);
  EXPECT_THAT(TableProfiler::ForPath("notes.txt"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(TableProfiler::ForFormat("xlsx"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(TableProfilerTest, FinishTwiceAndAppendAfterFinishAreRefused) {
  ASSERT_OK_AND_ASSIGN(auto profiler, TableProfiler::ForFormat("csv"));
  ASSERT_OK(profiler->Append("a\n1\n"));
  ASSERT_OK(profiler->Finish().status());
  EXPECT_THAT(profiler->Finish(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(profiler->Append("2\n"), StatusIs(absl::StatusCode::kFailedPrecondition));
}

// ---------------------------------------------------------------------------
// CSV: types, missing values, statistics

TEST(CsvProfileTest, InfersTypesWithWidening) {
  const std::string csv =
      "int,float,bool,str,int_then_float,float_then_str,bool_and_int,all_missing\n"
      "1,1.5,true,x,1,1.0,true,\n"
      "-2,2,False,y,2,2.5,1,NA\n"
      "+3,3e2,TRUE,z,3.5,abc,false,null\n";
  ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("csv", csv));
  EXPECT_EQ(p.rows, 3u);
  EXPECT_EQ(p.column_count, 8u);
  ASSERT_EQ(p.columns.size(), 8u);
  EXPECT_EQ(Column(p, "int").type, "integer");
  EXPECT_EQ(Column(p, "float").type, "float");
  EXPECT_EQ(Column(p, "bool").type, "boolean");
  EXPECT_EQ(Column(p, "str").type, "string");
  EXPECT_EQ(Column(p, "int_then_float").type, "float");
  EXPECT_EQ(Column(p, "float_then_str").type, "string");
  EXPECT_EQ(Column(p, "bool_and_int").type, "string");
  EXPECT_EQ(Column(p, "all_missing").type, "empty");
  EXPECT_EQ(Column(p, "all_missing").missing, 3u);
  EXPECT_EQ(Column(p, "all_missing").count, 0u);
  EXPECT_FALSE(Column(p, "all_missing").mean.has_value());
  EXPECT_FALSE(Column(p, "str").mean.has_value());
  EXPECT_EQ(Column(p, "float").max, 300.0);
  EXPECT_EQ(Column(p, "int").min, -2.0);
  EXPECT_EQ(Column(p, "int").max, 3.0);
}

TEST(CsvProfileTest, CountsEveryMissingSpelling) {
  const std::string csv = "v,w\n1,a\n,b\nNA,c\nNaN,d\nnull,e\nNone,f\nn/a,g\n\"\",h\n  ,i\nnan,j\n5,k\n";
  ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("csv", csv));
  const ColumnProfile& v = Column(p, "v");
  EXPECT_EQ(v.type, "integer");
  EXPECT_EQ(v.count, 2u);
  EXPECT_EQ(v.missing, 9u);
  EXPECT_EQ(p.rows, 11u);
  EXPECT_EQ(v.mean, 3.0);
}

TEST(CsvProfileTest, MeanAndStdAreExactOnSmallInputs) {
  ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("csv", "x,y,z\n1,0.5,7\n2,1.5,\n3,2.5,\n4,3.5,\n"));
  const ColumnProfile& x = Column(p, "x");
  EXPECT_EQ(x.count, 4u);
  EXPECT_DOUBLE_EQ(*x.mean, 2.5);
  EXPECT_DOUBLE_EQ(*x.stddev, std::sqrt(5.0 / 3.0));  // sample std (n - 1)
  EXPECT_EQ(*x.min, 1.0);
  EXPECT_EQ(*x.max, 4.0);
  const ColumnProfile& y = Column(p, "y");
  EXPECT_DOUBLE_EQ(*y.mean, 2.0);
  EXPECT_DOUBLE_EQ(*y.stddev, std::sqrt(5.0 / 3.0));
  const ColumnProfile& z = Column(p, "z");
  EXPECT_EQ(z.count, 1u);
  EXPECT_EQ(z.missing, 3u);
  EXPECT_EQ(*z.mean, 7.0);
  EXPECT_EQ(*z.stddev, 0.0);
  ASSERT_TRUE(z.quantiles.has_value());
  for (double q : *z.quantiles) EXPECT_EQ(q, 7.0);
}

TEST(CsvProfileTest, BooleanStatisticsAreThoseOfZeroAndOne) {
  ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("csv", "b\ntrue\nfalse\ntrue\ntrue\n"));
  const ColumnProfile& b = Column(p, "b");
  EXPECT_EQ(b.type, "boolean");
  EXPECT_EQ(*b.min, 0.0);
  EXPECT_EQ(*b.max, 1.0);
  EXPECT_DOUBLE_EQ(*b.mean, 0.75);
  EXPECT_DOUBLE_EQ(*b.stddev, std::sqrt(0.25));  // sample std of 1,0,1,1
  EXPECT_THAT(b.top_values, ElementsAre(TopValue{"true", 3}, TopValue{"false", 1}));
  EXPECT_FALSE(b.quantiles.has_value());
}

TEST(CsvProfileTest, InfinitiesAreCountedButLeftOutOfStatistics) {
  ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("csv", "f\n1.5\ninf\n-Infinity\n2.5\n1e999\n"));
  const ColumnProfile& f = Column(p, "f");
  EXPECT_EQ(f.type, "float");
  EXPECT_EQ(f.count, 5u);
  EXPECT_EQ(f.infinite, 3u);
  EXPECT_EQ(*f.mean, 2.0);
  EXPECT_EQ(*f.max, 2.5);
}

TEST(CsvProfileTest, IntegersPastInt64StayIntegers) {
  ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("csv", "n\n99999999999999999999\n1\n"));
  EXPECT_EQ(Column(p, "n").type, "integer");
  EXPECT_DOUBLE_EQ(*Column(p, "n").max, 1e20);
}

TEST(CsvProfileTest, TopValuesOfStringsAndLowCardinalityIntegers) {
  std::string csv = "city,code,id\n";
  for (int i = 0; i < 100; ++i) {
    const char* city = i % 10 < 5 ? "Paris" : (i % 10 < 8 ? "Oslo" : "Lima");
    csv += fmt::format("{},{},{}\n", city, i % 3, i);
  }
  ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("csv", csv));
  const ColumnProfile& city = Column(p, "city");
  EXPECT_THAT(city.top_values, ElementsAre(TopValue{"Paris", 50}, TopValue{"Oslo", 30}, TopValue{"Lima", 20}));
  EXPECT_TRUE(city.top_values_exact);
  EXPECT_EQ(city.distinct, 3u);
  const ColumnProfile& code = Column(p, "code");
  EXPECT_EQ(code.type, "integer");
  EXPECT_THAT(code.top_values, ElementsAre(TopValue{"0", 34}, TopValue{"1", 33}, TopValue{"2", 33}));
  EXPECT_EQ(code.distinct, 3u);
  const ColumnProfile& id = Column(p, "id");  // 100 distinct: still tracked exactly
  EXPECT_EQ(id.distinct, 100u);
  EXPECT_EQ(id.top_values.size(), kTopValues);
}

TEST(CsvProfileTest, TopValuesStayBoundedAndFindHeavyHitters) {
  std::string csv = "s,n\n";
  uint64_t hot = 0;
  for (int i = 0; i < 20000; ++i) {
    if (i % 5 == 0) {
      csv += "hot,1\n";
      ++hot;
    } else {
      csv += fmt::format("v{},{}\n", i, i);
    }
  }
  ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("csv", csv));
  const ColumnProfile& s = Column(p, "s");
  ASSERT_FALSE(s.top_values.empty());
  EXPECT_LE(s.top_values.size(), kTopValues);
  EXPECT_EQ(s.top_values[0].value, "hot");
  EXPECT_FALSE(s.top_values_exact);
  EXPECT_FALSE(s.distinct.has_value());
  EXPECT_GE(s.top_values[0].count, hot);
  EXPECT_LE(s.top_values[0].count, hot + s.top_values_error);
  EXPECT_LE(s.top_values_error, 20000u / kTopValueCapacity);
  // A high-cardinality integer column reports no top values.
  const ColumnProfile& n = Column(p, "n");
  EXPECT_EQ(n.type, "integer");
  EXPECT_TRUE(n.top_values.empty());
  EXPECT_FALSE(n.distinct.has_value());
}

// ---------------------------------------------------------------------------
// CSV syntax

TEST(CsvProfileTest, ParsesQuotedFieldsCrlfBomAndBlankLines) {
  const std::string csv =
      "\xEF\xBB\xBFname,\"note, with comma\"\r\n"
      "\"a,b\",\"he said \"\"hi\"\"\"\r\n"
      "\r\n"
      "plain,\"two\nlines\"\n"
      "\n"
      "x\"y,\"\"\n"
      "last,no newline";
  ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("csv", csv));
  EXPECT_EQ(p.rows, 4u);
  ASSERT_EQ(p.columns.size(), 2u);
  EXPECT_EQ(p.columns[0].name, "name");  // the byte order mark is gone
  EXPECT_EQ(p.columns[1].name, "note, with comma");
  EXPECT_THAT(p.columns[0].top_values, ::testing::UnorderedElementsAre(TopValue{"a,b", 1}, TopValue{"plain", 1},
                                                                       TopValue{"x\"y", 1}, TopValue{"last", 1}));
  EXPECT_THAT(p.columns[1].top_values,
              ::testing::UnorderedElementsAre(TopValue{"he said \"hi\"", 1}, TopValue{"two\nlines", 1},
                                              TopValue{"no newline", 1}));
  EXPECT_EQ(p.columns[1].missing, 1u);  // the quoted empty field
}

TEST(CsvProfileTest, AnySplitOfTheInputGivesTheSameProfile) {
  const std::string csv =
      "\xEF\xBB\xBFid,text,score\r\n"
      "1,\"quoted, \"\"with\"\" commas\r\nand lines\",0.5\r\n"
      "2,\"\",NA\r\n"
      "3,plain,1e3\n"
      "4,\"x\",-7";
  ASSERT_OK_AND_ASSIGN(TableProfile whole, Profile("csv", csv));
  const std::string expected = whole.ToJson().dump();
  EXPECT_EQ(whole.rows, 4u);
  EXPECT_THAT(Column(whole, "text").top_values, ::testing::Contains(TopValue{"quoted, \"with\" commas\r\nand lines", 1}));
  for (size_t i = 0; i <= csv.size(); ++i) {
    std::string_view v = csv;
    ASSERT_OK_AND_ASSIGN(TableProfile split, ProfilePieces("csv", {v.substr(0, i), v.substr(i)}));
    EXPECT_EQ(split.ToJson().dump(), expected) << "split at " << i;
  }
  std::vector<std::string_view> bytes;
  for (size_t i = 0; i < csv.size(); ++i) bytes.push_back(std::string_view(csv).substr(i, 1));
  ASSERT_OK_AND_ASSIGN(TableProfile one_by_one, ProfilePieces("csv", bytes));
  EXPECT_EQ(one_by_one.ToJson().dump(), expected);
}

TEST(CsvProfileTest, TsvUsesTabs) {
  ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("tsv", "a\tb c\n1\tx,y\n2\t\"q\tr\"\n"));
  ASSERT_EQ(p.columns.size(), 2u);
  EXPECT_EQ(p.columns[1].name, "b c");
  EXPECT_EQ(p.columns[0].type, "integer");
  EXPECT_THAT(p.columns[1].top_values, ::testing::UnorderedElementsAre(TopValue{"x,y", 1}, TopValue{"q\tr", 1}));
}

TEST(CsvProfileTest, WrongFieldCountNamesTheLineAndRow) {
  EXPECT_THAT(Profile("csv", "a,b\n1,2\n3\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CSV line 3: row 2 has 1 fields, the header has 2")));
  // Lines count physical lines, also inside quoted fields.
  EXPECT_THAT(Profile("csv", "a,b\n\"x\ny\",2\n3,4,5\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 4: row 2 has more than")));
}

TEST(CsvProfileTest, TooManyFieldsStopsAtTheAppend) {
  ASSERT_OK_AND_ASSIGN(auto profiler, TableProfiler::ForFormat("csv"));
  ASSERT_OK(profiler->Append("a,b\n1,2\n"));
  const absl::Status error = profiler->Append("1,2,3");
  EXPECT_THAT(error, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 3")));
  // Sticky: later calls report the same error.
  EXPECT_EQ(profiler->Append("4\n"), error);
  EXPECT_EQ(profiler->Finish().status(), error);
}

TEST(CsvProfileTest, RejectsMalformedInput) {
  EXPECT_THAT(Profile("csv", ""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("header row is required")));
  EXPECT_THAT(Profile("csv", "\n\r\n\n"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("header row")));
  EXPECT_THAT(Profile("csv", "\xEF\xBB\xBF"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("header row")));
  EXPECT_THAT(Profile("csv", "a,b\n1,\"open\n2,3\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 2: a quoted field is never closed")));
  EXPECT_THAT(Profile("csv", "a,b\n\"x\"y,2\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 2: field 1: unexpected character after a closing quote")));
  EXPECT_THAT(Profile("tsv", "a\tb\n1\n"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("TSV line 2")));
}

TEST(CsvProfileTest, LongFieldsAreStringsAndTopValuesAreCut) {
  const std::string long_value(kMaxFieldBytes + 10, '7');  // digits, but too long to classify
  ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("csv", "n\n" + long_value + "\n"));
  EXPECT_EQ(p.columns[0].type, "string");
  ASSERT_EQ(p.columns[0].top_values.size(), 1u);
  EXPECT_EQ(p.columns[0].top_values[0].value, std::string(kMaxTopValueBytes, '7'));
}

TEST(CsvProfileTest, ProfilesAtMostMaxColumnsButCountsAll) {
  const size_t n = kMaxProfiledColumns + 76;
  std::string header, row;
  for (size_t i = 0; i < n; ++i) {
    header += fmt::format("{}c{}", i == 0 ? "" : ",", i);
    row += fmt::format("{}{}", i == 0 ? "" : ",", i);
  }
  ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("csv", header + "\n" + row + "\n" + row + "\n"));
  EXPECT_EQ(p.column_count, n);
  EXPECT_EQ(p.columns.size(), kMaxProfiledColumns);
  EXPECT_EQ(p.rows, 2u);
  EXPECT_EQ(p.columns.back().name, fmt::format("c{}", kMaxProfiledColumns - 1));
}

TEST(CsvProfileTest, InvalidUtf8IsReplacedInJson) {
  ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("csv", "n\xff\nv\xc3\n"));
  std::string text;
  EXPECT_NO_THROW(text = p.ToJson().dump());
  EXPECT_THAT(text, HasSubstr("n\xEF\xBF\xBD"));
}

// A million rows: memory and the stored profile stay bounded (no row
// storage; the sketch holds O(k) values, the top-value table 256 entries).
TEST(CsvProfileTest, ProfileOfAMillionRowsStaysSmall) {
  ASSERT_OK_AND_ASSIGN(auto profiler, TableProfiler::ForFormat("csv"));
  ASSERT_OK(profiler->Append("id,value,label\n"));
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(10, 2);
  std::string buf;
  constexpr int kRows = 1000000;
  for (int i = 0; i < kRows; ++i) {
    buf += fmt::format("u{},{:.6f},{}\n", i, normal(rng), i % 7 == 0 ? "rare" : "common");
    if (buf.size() > (64 << 10)) {
      ASSERT_OK(profiler->Append(buf));
      buf.clear();
    }
  }
  ASSERT_OK(profiler->Append(buf));
  ASSERT_OK_AND_ASSIGN(TableProfile p, profiler->Finish());
  EXPECT_EQ(p.rows, static_cast<uint64_t>(kRows));
  const ColumnProfile& value = Column(p, "value");
  ASSERT_TRUE(value.sketch.has_value());
  EXPECT_EQ(value.sketch->count(), static_cast<uint64_t>(kRows));
  EXPECT_LT(value.sketch->retained(), 4u * QuantileSketch::kDefaultK);
  EXPECT_NEAR(*value.mean, 10, 0.01);
  EXPECT_NEAR(*value.stddev, 2, 0.01);
  EXPECT_NEAR((*value.quantiles)[3], 10, 0.1);  // median
  EXPECT_EQ(Column(p, "id").top_values.size(), kTopValues);
  EXPECT_THAT(Column(p, "label").top_values, ElementsAre(TopValue{"common", 857142}, TopValue{"rare", 142858}));
  EXPECT_LT(p.ToJson().dump().size(), 64u << 10);
}

// ---------------------------------------------------------------------------
// Quantile sketch

// max over kProfileQuantiles of |rank(Quantile(q)) / n - q|, against the
// sorted true values (a value's rank range counts ties either way).
double WorstRankError(const QuantileSketch& sketch, std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const auto n = static_cast<double>(values.size());
  double worst = 0;
  for (double q : kProfileQuantiles) {
    const double v = sketch.Quantile(q);
    const double lo = static_cast<double>(std::lower_bound(values.begin(), values.end(), v) - values.begin()) / n;
    const double hi = static_cast<double>(std::upper_bound(values.begin(), values.end(), v) - values.begin()) / n;
    const double error = q < lo ? lo - q : (q > hi ? q - hi : 0.0);
    worst = std::max(worst, error);
  }
  return worst;
}

// The documented bound (docs/data-profiles.md): rank error within 1.65% of n.
constexpr double kDocumentedRankError = 0.0165;

TEST(QuantileSketchTest, AccurateWithinTheDocumentedBound) {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> uniform(-1000, 1000);
  std::exponential_distribution<double> skewed(0.01);
  for (int dist = 0; dist < 2; ++dist) {
    QuantileSketch sketch;
    std::vector<double> values;
    for (int i = 0; i < 100000; ++i) {
      values.push_back(dist == 0 ? uniform(rng) : skewed(rng));
      sketch.Add(values.back());
    }
    EXPECT_EQ(sketch.count(), 100000u);
    EXPECT_LE(WorstRankError(sketch, values), kDocumentedRankError) << "distribution " << dist;
    EXPECT_LT(sketch.retained(), 4u * QuantileSketch::kDefaultK);
  }
}

TEST(QuantileSketchTest, SortedInputAndMergeStayAccurate) {
  QuantileSketch a, b;
  std::vector<double> values;
  for (int i = 0; i < 100000; ++i) {
    values.push_back(i);
    (i < 30000 ? a : b).Add(i);
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), 100000u);
  EXPECT_LE(WorstRankError(a, values), kDocumentedRankError);
  EXPECT_LT(a.retained(), 4u * QuantileSketch::kDefaultK);
}

TEST(QuantileSketchTest, SmallInputsAreExact) {
  QuantileSketch s;
  for (double v : {5.0, 1.0, 3.0, 2.0, 4.0}) s.Add(v);
  EXPECT_EQ(s.Quantile(0), 1.0);
  EXPECT_EQ(s.Quantile(0.5), 3.0);
  EXPECT_EQ(s.Quantile(1), 5.0);
  EXPECT_EQ(s.retained(), 5u);
}

TEST(QuantileSketchTest, JsonRoundTripAndValidation) {
  QuantileSketch s;
  for (int i = 0; i < 5000; ++i) s.Add(i * 0.37);
  const Json j = s.ToJson();
  ASSERT_OK_AND_ASSIGN(QuantileSketch back, QuantileSketch::FromJson(j));
  EXPECT_EQ(back.ToJson(), j);
  EXPECT_EQ(back.count(), s.count());
  EXPECT_EQ(back.Quantile(0.3), s.Quantile(0.3));

  Json wrong_n = j;
  wrong_n["n"] = 4999;
  EXPECT_THAT(QuantileSketch::FromJson(wrong_n), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("weigh")));
  Json not_number = j;
  not_number["levels"][0].push_back("x");
  EXPECT_THAT(QuantileSketch::FromJson(not_number), StatusIs(absl::StatusCode::kInvalidArgument));
  Json bad_k = j;
  bad_k["k"] = 1;
  EXPECT_THAT(QuantileSketch::FromJson(bad_k), StatusIs(absl::StatusCode::kInvalidArgument));
  Json deep = {{"k", 200}, {"n", 1}, {"levels", Json::array()}};
  for (int i = 0; i < 70; ++i) deep["levels"].push_back(Json::array({1.0}));
  EXPECT_THAT(QuantileSketch::FromJson(deep), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(QuantileSketch::FromJson(Json::array()), StatusIs(absl::StatusCode::kInvalidArgument));
}

// ---------------------------------------------------------------------------
// NPY

// A .npy file: header dict padded to a multiple of 64 bytes, then `data`.
std::string Npy(std::string_view descr, std::string_view shape, std::string_view data, bool fortran = false,
                int major = 1) {
  std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': {}, 'shape': {}, }}", descr,
                                 fortran ? "True" : "False", shape);
  const size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  const size_t len = dict.size();
  for (size_t i = 0; i < prefix - 8; ++i) out += static_cast<char>(len >> (8 * i));
  return out + dict + std::string(data);
}

template <typename T>
std::string Bytes(const std::vector<T>& values, bool big_endian = false) {
  std::string out;
  for (T v : values) {
    char buf[sizeof(T)];
    std::memcpy(buf, &v, sizeof(T));
    if (big_endian) std::reverse(buf, buf + sizeof(T));
    out.append(buf, sizeof(T));
  }
  return out;
}

TEST(NpyProfileTest, OneDimensionalFloatsWithNanAndInf) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("npy", Npy("<f8", "(6,)", Bytes<double>({1, 2, nan, 3, inf, 4}))));
  EXPECT_EQ(p.format, "npy");
  EXPECT_EQ(p.rows, 6u);
  EXPECT_EQ(p.column_count, 1u);
  ASSERT_EQ(p.columns.size(), 1u);
  const ColumnProfile& c = p.columns[0];
  EXPECT_EQ(c.name, "0");
  EXPECT_EQ(c.type, "float");
  EXPECT_EQ(c.count, 5u);
  EXPECT_EQ(c.missing, 1u);
  EXPECT_EQ(c.infinite, 1u);
  EXPECT_DOUBLE_EQ(*c.mean, 2.5);
  EXPECT_EQ(*c.max, 4.0);
  EXPECT_TRUE(c.top_values.empty());
}

TEST(NpyProfileTest, TwoDimensionalOneColumnPerIndex) {
  // 3 rows x 2 columns, C order: (1, 10), (2, 20), (3, 30).
  ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("npy", Npy("<i4", "(3, 2)", Bytes<int32_t>({1, 10, 2, 20, 3, 30}))));
  EXPECT_EQ(p.rows, 3u);
  ASSERT_EQ(p.columns.size(), 2u);
  EXPECT_EQ(p.columns[0].name, "0");
  EXPECT_EQ(p.columns[1].name, "1");
  EXPECT_EQ(p.columns[0].type, "integer");
  EXPECT_DOUBLE_EQ(*p.columns[0].mean, 2.0);
  EXPECT_DOUBLE_EQ(*p.columns[1].mean, 20.0);
  EXPECT_EQ(p.columns[1].distinct, 3u);
}

TEST(NpyProfileTest, FortranOrderMatchesCOrder) {
  const std::string c_order = Npy("<i2", "(3, 2)", Bytes<int16_t>({1, 10, 2, 20, 3, 30}));
  const std::string f_order = Npy("<i2", "(3, 2)", Bytes<int16_t>({1, 2, 3, 10, 20, 30}), /*fortran=*/true);
  ASSERT_OK_AND_ASSIGN(TableProfile c, Profile("npy", c_order));
  ASSERT_OK_AND_ASSIGN(TableProfile f, Profile("npy", f_order));
  EXPECT_EQ(c.ToJson(), f.ToJson());
  EXPECT_DOUBLE_EQ(*f.columns[1].mean, 20.0);
}

TEST(NpyProfileTest, HigherDimensionsFlattenIntoColumns) {
  ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("npy", Npy("|u1", "(2, 2, 3)", std::string(12, '\x05'))));
  EXPECT_EQ(p.rows, 2u);
  EXPECT_EQ(p.column_count, 6u);
  ASSERT_OK_AND_ASSIGN(TableProfile scalar, Profile("npy", Npy("<f4", "()", Bytes<float>({2.5f}))));
  EXPECT_EQ(scalar.rows, 1u);
  EXPECT_EQ(scalar.columns[0].mean, 2.5);
  ASSERT_OK_AND_ASSIGN(TableProfile empty, Profile("npy", Npy("<f8", "(0, 4)", "")));
  EXPECT_EQ(empty.rows, 0u);
  EXPECT_EQ(empty.column_count, 4u);
  EXPECT_EQ(empty.columns[0].type, "empty");
}

TEST(NpyProfileTest, EveryDtypeAndByteOrder) {
  struct Case {
    std::string descr;
    std::string data;
    std::string type;
    double mean;
  };
  const std::vector<Case> cases = {
      {"|i1", Bytes<int8_t>({-128, 127, 1}), "integer", 0},
      {"<i2", Bytes<int16_t>({-300, 600, 0}), "integer", 100},
      {">i2", Bytes<int16_t>({-300, 600, 0}, true), "integer", 100},
      {"<i4", Bytes<int32_t>({-70000, 70000, 3}), "integer", 1},
      {">i4", Bytes<int32_t>({-70000, 70000, 3}, true), "integer", 1},
      {"<i8", Bytes<int64_t>({-5000000000LL, 5000000000LL, 6}), "integer", 2},
      {">i8", Bytes<int64_t>({-5000000000LL, 5000000000LL, 6}, true), "integer", 2},
      {"|u1", Bytes<uint8_t>({255, 0, 0}), "integer", 85},
      {"<u2", Bytes<uint16_t>({65535, 0, 2}), "integer", 21845.666666666668},
      {">u4", Bytes<uint32_t>({4000000000u, 0, 2}, true), "integer", 4000000002.0 / 3},
      {"<u8", Bytes<uint64_t>({3, 3, 3}), "integer", 3},
      {"<f4", Bytes<float>({0.5f, 1.5f, -2.0f}), "float", 0},
      {">f4", Bytes<float>({0.5f, 1.5f, -2.0f}, true), "float", 0},
      {">f8", Bytes<double>({0.25, 0.5, 0.75}, true), "float", 0.5},
      {"|b1", std::string("\x01\x00\x01", 3), "boolean", 2.0 / 3},
  };
  for (const Case& c : cases) {
    ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("npy", Npy(c.descr, "(3,)", c.data)));
    EXPECT_EQ(p.columns[0].type, c.type) << c.descr;
    EXPECT_EQ(p.columns[0].count, 3u) << c.descr;
    EXPECT_DOUBLE_EQ(*p.columns[0].mean, c.mean) << c.descr;
  }
  ASSERT_OK_AND_ASSIGN(TableProfile i1, Profile("npy", Npy("|i1", "(3,)", Bytes<int8_t>({-128, 127, 1}))));
  EXPECT_EQ(*i1.columns[0].min, -128);
  EXPECT_EQ(*i1.columns[0].max, 127);
  EXPECT_THAT(i1.columns[0].top_values, ::testing::Contains(TopValue{"-128", 1}));
  ASSERT_OK_AND_ASSIGN(TableProfile u8, Profile("npy", Npy("<u8", "(1,)", Bytes<uint64_t>({~uint64_t{0}}))));
  EXPECT_THAT(u8.columns[0].top_values, ElementsAre(TopValue{"18446744073709551615", 1}));
}

TEST(NpyProfileTest, FormatVersionsTwoAndThree) {
  const std::string data = Bytes<double>({1, 2, 3});
  for (int major : {2, 3}) {
    ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("npy", Npy("<f8", "(3,)", data, false, major)));
    EXPECT_DOUBLE_EQ(*p.columns[0].mean, 2.0) << major;
  }
}

TEST(NpyProfileTest, AnySplitOfTheInputGivesTheSameProfile) {
  const std::string npy = Npy(">i4", "(3, 2)", Bytes<int32_t>({1, -10, 2, 20, 3, 30}, true));
  ASSERT_OK_AND_ASSIGN(TableProfile whole, Profile("npy", npy));
  const std::string expected = whole.ToJson().dump();
  for (size_t i = 0; i <= npy.size(); ++i) {
    std::string_view v = npy;
    ASSERT_OK_AND_ASSIGN(TableProfile split, ProfilePieces("npy", {v.substr(0, i), v.substr(i)}));
    EXPECT_EQ(split.ToJson().dump(), expected) << "split at " << i;
  }
}

TEST(NpyProfileTest, RejectsMalformedFiles) {
  const std::string data = Bytes<double>({1, 2});
  struct Case {
    std::string bytes;
    std::string message;
  };
  std::string no_newline = Npy("<f8", "(2,)", data);
  no_newline[no_newline.size() - data.size() - 1] = ' ';
  std::string v2_huge = Npy("<f8", "(2,)", data, false, 2);
  v2_huge[11] = '\x01';
  const std::vector<Case> cases = {
      {"", "header is not complete"},
      {"\x93NUMPX\x01\x00"s, "bad magic"},
      {"PK\x03\x04"s, "bad magic"},
      {"\x93NUMPY\x04\x00\x10\x00"s, "version 4.0"},
      {"\x93NUMPY\x01\x01\x10\x00"s, "version 1.1"},
      {"\x93NUMPY\x01\x00\x00\x00"s, "invalid .npy header: empty"},
      {v2_huge, "more than the 65536 allowed"},
      {Npy("<f8", "(2,)", data).substr(0, 30), "header is not complete"},
      {no_newline, "newline"},
      {Npy("<f8", "(3,)", data), "shape (3,) needs 24 bytes, the file has 16"},
      {Npy("<f8", "(1,)", data), "past the end"},
      {Npy("<f8", "(2,)", data.substr(0, 15)), "truncated"},
      {Npy("<c16", "(2,)", data), "unsupported dtype '<c16'"},
      {Npy("<f2", "(2,)", data), "unsupported dtype '<f2'"},
      {Npy("<i3", "(2,)", data), "unsupported dtype"},
      {Npy("|i4", "(2,)", data), "needs a byte order"},
      {Npy("!f8", "(2,)", data), "bad byte order"},
      {Npy("<U4", "(2,)", data), "unsupported dtype"},
      {Npy("<f8", "(-2,)", data), "non-negative integers"},
      {Npy("<f8", "(2.0,)", data), "expected ',' or ')'"},
      {Npy("<f8", "[2]", data), "must be a tuple"},
      {Npy("<f8", "(4294967296, 4294967296)", data), "overflows"},
      {Npy("<f8", "(99999999999999999999,)", data), "too large"},
      {Npy("<f8", "(2305843009213693952,)", data), "overflows"},  // 2^61 elements * 8 bytes
      {Npy("<f8", "(1, 1, 2)", data, /*fortran=*/true), "fortran_order arrays of 3 dimensions"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(Profile("npy", c.bytes), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.message;
  }
  const std::vector<std::pair<std::string, std::string>> dicts = {
      {"{'descr': '<f8', 'shape': (2,), }", "needs 'descr', 'fortran_order' and 'shape'"},
      {"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'extra': 1}", "unexpected key 'extra'"},
      {"{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (2,)}", "duplicate key 'descr'"},
      {"{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (2,)}", "structured dtypes"},
      {"{'descr': '<f8', 'fortran_order': maybe, 'shape': (2,)}", "True or False"},
      {"{'descr': '<f8', 'fortran_order': False, 'shape': (2,)} x", "unexpected text"},
      {"['descr']", "expected '{'"},
      {"{'descr' '<f8'}", "expected ':'"},
      {"{'descr': '<f8", "unterminated string"},
  };
  for (const auto& [dict, message] : dicts) {
    std::string text = dict + "\n";
    std::string file = "\x93NUMPY\x01";
    file += '\0';
    file += static_cast<char>(text.size());
    file += '\0';
    EXPECT_THAT(Profile("npy", file + text + data), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(message)))
        << dict;
  }
}

// ---------------------------------------------------------------------------
// JSON

TEST(TableProfileJsonTest, RoundTripsEveryField) {
  std::string csv = "id,score,ok,name,empty\n";
  for (int i = 0; i < 3000; ++i) {
    csv += fmt::format("{},{},{},n{},\n", i, i * 0.25, i % 3 == 0 ? "true" : "false", i % 300);
  }
  ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("csv", csv));
  const Json j = p.ToJson();
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["format"], "csv");
  EXPECT_EQ(j["rows"], 3000);
  EXPECT_EQ(j["columns"][0]["min"], 0);  // integers stay integers
  EXPECT_EQ(j["columns"][0]["quantiles"].size(), 7u);
  EXPECT_TRUE(j["columns"][0]["quantiles"].contains("p99"));
  EXPECT_EQ(j["columns"][3]["top_values_exact"], false);

  ASSERT_OK_AND_ASSIGN(TableProfile back, TableProfile::FromJson(j));
  EXPECT_EQ(back.ToJson(), j);
  ASSERT_OK_AND_ASSIGN(Json reparsed, ParseJson(j.dump()));
  ASSERT_OK_AND_ASSIGN(TableProfile back2, TableProfile::FromJson(reparsed));
  EXPECT_EQ(back2.ToJson().dump(), j.dump());
  EXPECT_EQ(back.columns[1].quantiles, p.columns[1].quantiles);
  EXPECT_EQ(back.columns[3].top_values, p.columns[3].top_values);
  EXPECT_EQ(back.columns[3].top_values_error, p.columns[3].top_values_error);
  EXPECT_EQ(back.columns[2].distinct, 2u);
}

TEST(TableProfileJsonTest, RejectsInvalidProfiles) {
  ASSERT_OK_AND_ASSIGN(TableProfile p, Profile("csv", "a,b\n1,x\n"));
  const Json good = p.ToJson();
  auto with = [&](const std::function<void(Json&)>& change) {
    Json j = good;
    change(j);
    return TableProfile::FromJson(j);
  };
  EXPECT_THAT(with([](Json& j) { j["version"] = 2; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version 2")));
  EXPECT_THAT(with([](Json& j) { j["format"] = "xls"; }), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(with([](Json& j) { j["rows"] = -1; }), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(with([](Json& j) { j["column_count"] = 1; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more column profiles")));
  EXPECT_THAT(with([](Json& j) { j["columns"][0]["type"] = "complex"; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("column 0")));
  EXPECT_THAT(with([](Json& j) { j["columns"][0]["quantiles"].erase("p50"); }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("p50")));
  EXPECT_THAT(with([](Json& j) { j["columns"][1]["top_values"][0]["count"] = "many"; }),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(with([](Json& j) { j["columns"] = 5; }), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(TableProfile::FromJson(Json("text")), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace cairn::data
