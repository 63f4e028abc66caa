#include "pipeline/step_metrics.h"

#include <cmath>
#include <fstream>
#include <limits>

#include "base/testing.h"

namespace cairn::pipeline {
namespace {

using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::StartsWith;

constexpr int64_t kNow = 1234567;

StepRecordParser LogParser() { return StepRecordParser(StepRecordSource::kLog, [] { return kNow; }); }

StepRecords ParseAll(std::string_view text) {
  StepRecordParser p = LogParser();
  p.Feed(text);
  p.Finish();
  return p.Take();
}

MATCHER_P4(MetricIs, key, value, step, timestamp, "") {
  return arg.key == key && arg.value == value && arg.step == step && arg.timestamp == timestamp;
}
MATCHER_P2(KeyValueIs, key, value, "") { return arg.key == key && arg.value == value; }

TEST(StepRecordParserTest, ParsesMetricParamAndTagLines) {
  StepRecords r = ParseAll(
      "epoch 1 starting\n"
      "{\"metric\": \"loss\", \"value\": 0.31, \"step\": 3}\n"
      "{\"metric\": \"acc\", \"value\": 1, \"timestamp\": 1700000000000}\n"
      "{\"param\": \"lr\", \"value\": \"0.1\"}\n"
      "{\"param\": \"layers\", \"value\": 4}\n"
      "{\"tag\": \"stage\", \"value\": \"warmup\"}\n"
      "  { \"tag\" : \"flag\", \"value\": true }\r\n"
      "done\n");
  EXPECT_THAT(r.metrics, ElementsAre(MetricIs("loss", 0.31, 3, kNow), MetricIs("acc", 1.0, 0, 1700000000000)));
  EXPECT_THAT(r.params, ElementsAre(KeyValueIs("lr", "0.1"), KeyValueIs("layers", "4")));
  EXPECT_THAT(r.tags, ElementsAre(KeyValueIs("stage", "warmup"), KeyValueIs("flag", "true")));
  EXPECT_THAT(r.errors, IsEmpty());
}

TEST(StepRecordParserTest, OtherOutputIsIgnoredSilently) {
  StepRecords r = ParseAll(
      "plain text\n"
      "{\"level\": \"info\", \"metric\": \"not first\"}\n"  // someone's JSON log: not a record
      "[1, 2, 3]\n"
      "{not json at all\n"
      "\n"
      "metric: loss 0.3\n");
  EXPECT_TRUE(r.empty());
  EXPECT_THAT(r.errors, IsEmpty());
}

TEST(StepRecordParserTest, LinesSplitAcrossFeeds) {
  const std::string text =
      "noise\n{\"metric\": \"loss\", \"value\": 0.5, \"step\": 1}\n{\"tag\": \"t\", \"value\": \"v\"}\n"
      "{\"metric\": \"loss\", \"value\": 0.25, \"step\": 2}";
  // Every split point, and byte by byte, give the same result.
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    StepRecordParser p = LogParser();
    p.Feed(std::string_view(text).substr(0, cut));
    p.Feed(std::string_view(text).substr(cut));
    p.Finish();
    StepRecords r = p.Take();
    ASSERT_THAT(r.metrics, ElementsAre(MetricIs("loss", 0.5, 1, kNow), MetricIs("loss", 0.25, 2, kNow))) << cut;
    ASSERT_THAT(r.tags, SizeIs(1));
  }
  StepRecordParser p = LogParser();
  for (char c : text) p.Feed(std::string_view(&c, 1));
  EXPECT_THAT(p.Take().metrics, SizeIs(1));  // the last line has no '\n' yet
  p.Finish();
  EXPECT_THAT(p.Take().metrics, ElementsAre(MetricIs("loss", 0.25, 2, kNow)));
}

TEST(StepRecordParserTest, TakeReturnsOnlyNewRecords) {
  StepRecordParser p = LogParser();
  p.Feed("{\"metric\": \"a\", \"value\": 1}\n");
  EXPECT_THAT(p.Take().metrics, SizeIs(1));
  EXPECT_TRUE(p.Take().empty());
  p.Feed("{\"metric\": \"b\", \"value\": 2}\n");
  EXPECT_THAT(p.Take().metrics, ElementsAre(MetricIs("b", 2.0, 0, kNow)));
}

TEST(StepRecordParserTest, MalformedRecordsAreErrorsWithLineNumbers) {
  StepRecords r = ParseAll(
      "ok\n"                                                         // 1
      "{\"metric\": \"loss\", \"value\": }\n"                        // 2 bad JSON
      "{\"metric\": \"loss\"}\n"                                     // 3 no value
      "{\"metric\": \"loss\", \"value\": \"high\"}\n"                // 4 string value
      "{\"metric\": \"loss\", \"value\": 1e999}\n"                   // 5 overflows: not finite
      "{\"metric\": \"a..b\", \"value\": 1}\n"                       // 6 MLflow key rule
      "{\"metric\": \"loss\", \"value\": 1, \"epoch\": 2}\n"         // 7 unknown field
      "{\"metric\": \"loss\", \"value\": 1, \"step\": 1.5}\n"        // 8 non-integer step
      "{\"metric\": 7, \"value\": 1}\n"                              // 9 key not a string
      "{\"param\": \"p\", \"value\": null}\n"                        // 10 null value
      "{\"tag\": \"t\", \"value\": [1]}\n"                           // 11 array value
      "{\"metric\": \"good\", \"value\": 2}\n");                     // 12 fine
  EXPECT_THAT(r.metrics, ElementsAre(MetricIs("good", 2.0, 0, kNow)));
  ASSERT_THAT(r.errors, SizeIs(10));
  EXPECT_THAT(r.errors[0], StartsWith("line 2: invalid JSON"));
  EXPECT_THAT(r.errors[1], AllOf(StartsWith("line 3: "), HasSubstr("'value'")));
  EXPECT_THAT(r.errors[2], AllOf(StartsWith("line 4: "), HasSubstr("must be a number")));
  EXPECT_THAT(r.errors[3], AllOf(StartsWith("line 5: "), HasSubstr("1e999")));
  EXPECT_THAT(r.errors[4], AllOf(StartsWith("line 6: "), HasSubstr("Invalid metric name")));
  EXPECT_THAT(r.errors[5], AllOf(StartsWith("line 7: "), HasSubstr("unknown field 'epoch'")));
  EXPECT_THAT(r.errors[6], AllOf(StartsWith("line 8: "), HasSubstr("step")));
  EXPECT_THAT(r.errors[7], StartsWith("line 9: "));
  EXPECT_THAT(r.errors[8], StartsWith("line 10: "));
  EXPECT_THAT(r.errors[9], StartsWith("line 11: "));
}

TEST(StepRecordParserTest, ParamsCannotChange) {
  StepRecords r = ParseAll(
      "{\"param\": \"lr\", \"value\": \"0.1\"}\n"
      "{\"param\": \"lr\", \"value\": \"0.1\"}\n"
      "{\"param\": \"lr\", \"value\": \"0.2\"}\n");
  EXPECT_THAT(r.params, ElementsAre(KeyValueIs("lr", "0.1")));
  EXPECT_THAT(r.errors, ElementsAre(AllOf(StartsWith("line 3: "), HasSubstr("already logged"))));
}

TEST(StepRecordParserTest, ErrorsAreCappedOverTheParsersLife) {
  StepRecordParser p = LogParser();
  for (size_t i = 0; i < kMaxRecordErrors + 5; ++i) p.Feed("{\"metric\": oops}\n");
  StepRecords first = p.Take();
  EXPECT_THAT(first.errors, SizeIs(kMaxRecordErrors));
  EXPECT_EQ(first.errors_omitted, 5u);
  p.Feed("{\"metric\": oops}\n");
  StepRecords second = p.Take();
  EXPECT_THAT(second.errors, IsEmpty());
  EXPECT_EQ(second.errors_omitted, 1u);
}

TEST(StepRecordParserTest, OverlongLinesAreSkipped) {
  StepRecordParser p = LogParser();
  const std::string filler(kMaxRecordLineBytes, 'x');
  p.Feed("{\"metric\": \"big\", \"value\": 1, \"pad\": \"");
  p.Feed(filler);
  p.Feed(filler);
  p.Feed("\"}\nplain " + filler + filler + "\n{\"metric\": \"after\", \"value\": 3}\n");
  p.Finish();
  StepRecords r = p.Take();
  EXPECT_THAT(r.metrics, ElementsAre(MetricIs("after", 3.0, 0, kNow)));
  EXPECT_THAT(r.errors, ElementsAre(AllOf(StartsWith("line 1: "), HasSubstr("longer than"))));
}

TEST(StepRecordParserTest, LogLinesRefuseNonFiniteStrings) {
  StepRecords r = ParseAll("{\"metric\": \"loss\", \"value\": \"NaN\"}\n");
  EXPECT_THAT(r.metrics, IsEmpty());
  EXPECT_THAT(r.errors, SizeIs(1));
}

TEST(SplitIntoBatchesTest, RespectsMlflowLimitsAndOrder) {
  StepRecords r;
  for (int i = 0; i < 2500; ++i) r.metrics.push_back({"m", static_cast<double>(i), 0, i});
  for (int i = 0; i < 150; ++i) r.params.push_back({fmt::format("p{}", i), "v"});
  for (int i = 0; i < 30; ++i) r.tags.push_back({fmt::format("t{}", i), "v"});
  std::vector<StepRecords> batches = SplitIntoBatches(r);
  size_t metrics = 0, params = 0, tags = 0;
  int64_t next_step = 0;
  for (const StepRecords& b : batches) {
    EXPECT_LE(b.metrics.size(), 1000u);
    EXPECT_LE(b.params.size(), 100u);
    EXPECT_LE(b.tags.size(), 100u);
    EXPECT_LE(b.metrics.size() + b.params.size() + b.tags.size(), 1000u);
    EXPECT_FALSE(b.empty());
    for (const auto& m : b.metrics) EXPECT_EQ(m.step, next_step++);
    metrics += b.metrics.size();
    params += b.params.size();
    tags += b.tags.size();
  }
  EXPECT_EQ(metrics, 2500u);
  EXPECT_EQ(params, 150u);
  EXPECT_EQ(tags, 30u);
  EXPECT_THAT(SplitIntoBatches(StepRecords()), IsEmpty());
}

// The file python/cairn/_offline.py writes, regenerated by
// python/tests/test_sdk_offline.py (which checks it still matches the SDK).
TEST(ParseSdkRecordFileTest, ReadsWhatTheSdkWrites) {
  ASSERT_OK_AND_ASSIGN(StepRecords r,
                       ParseSdkRecordFile(std::string(CAIRN_SOURCE_DIR) + "/src/pipeline/testdata/sdk_records.jsonl"));
  EXPECT_THAT(r.errors, IsEmpty());
  EXPECT_THAT(r.params, ElementsAre(KeyValueIs("lr", "0.1"), KeyValueIs("layers", "3"),
                                    KeyValueIs("optimizer", "{\"beta\": 0.9, \"name\": \"adam\"}")));
  EXPECT_THAT(r.tags, ElementsAre(KeyValueIs("mlflow.runName", "fixture"), KeyValueIs("team", "vision"),
                                  KeyValueIs("stage", "train"), KeyValueIs("note", "caf\xc3\xa9 \"quoted\""),
                                  KeyValueIs("count", "2")));
  ASSERT_THAT(r.metrics, SizeIs(6));
  EXPECT_THAT(r.metrics[0], MetricIs("loss", 0.5, 0, 1700000000000));
  EXPECT_THAT(r.metrics[1], MetricIs("acc", 0.75, 1, 1700000000001));
  EXPECT_THAT(r.metrics[2], MetricIs("val/f1 score", 0.5, 1, 1700000000001));
  EXPECT_EQ(r.metrics[3].key, "loss");
  EXPECT_TRUE(std::isnan(r.metrics[3].value));
  EXPECT_EQ(r.metrics[4].key, "grad_norm");
  EXPECT_EQ(r.metrics[4].value, std::numeric_limits<double>::infinity());
  EXPECT_THAT(r.metrics[5], MetricIs("throughput", 12.0, -1, 1700000000003));
}

TEST(ParseSdkRecordFileTest, EveryLineMustBeARecord) {
  ScopedTempDir tmp;
  const std::string path = tmp.path() + "/records.jsonl";
  std::ofstream(path) << "{\"metric\": \"a\", \"value\": 1, \"step\": 0, \"timestamp\": 5}\n"
                      << "garbage\n"
                      << "\n"
                      << "{\"tag\": \"t\", \"value\": \"v\"}\n"
                      << "{\"metric\": \"torn\", \"val";  // a write cut short
  ASSERT_OK_AND_ASSIGN(StepRecords r, ParseSdkRecordFile(path));
  EXPECT_THAT(r.metrics, ElementsAre(MetricIs("a", 1.0, 0, 5)));
  EXPECT_THAT(r.tags, SizeIs(1));
  EXPECT_THAT(r.errors, ElementsAre(AllOf(StartsWith("line 2: "), HasSubstr("not a metric")),
                                    StartsWith("line 5: invalid JSON")));
}

TEST(ParseSdkRecordFileTest, MissingFileIsNotFound) {
  EXPECT_THAT(ParseSdkRecordFile("/nonexistent/records.jsonl"), StatusIs(absl::StatusCode::kNotFound));
  ScopedTempDir tmp;
  EXPECT_THAT(ParseSdkRecordFile(tmp.path()), StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace cairn::pipeline
