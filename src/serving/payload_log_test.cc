#include "serving/payload_log.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "base/testing.h"

namespace cairn::serving {
namespace {

using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::SizeIs;

constexpr int64_t kNov22 = 1795305600000;  // 2026-11-22T00:00:00Z in ms
constexpr int64_t kDay = 86400000;

std::vector<Json> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<Json> lines;
  std::string line;
  while (std::getline(in, line)) {
    absl::StatusOr<Json> j = ParseJson(line);
    EXPECT_OK(j.status()) << line;
    if (j.ok()) lines.push_back(*std::move(j));
  }
  return lines;
}

PredictionRecord Record(std::string deployment, std::string id, int64_t time_ms) {
  PredictionRecord r;
  r.prediction_id = std::move(id);
  r.deployment = std::move(deployment);
  r.model = "iris";
  r.version = 3;
  r.role = "primary";
  r.time_ms = time_ms;
  r.inputs = {Tensor::FromValues<float>("x", DataType::kFp32, {1, 2}, std::vector<float>{1.5f, 2})};
  r.outputs = {Tensor::FromValues<int64_t>("y", DataType::kInt64, {1}, std::vector<int64_t>{7})};
  r.latency_us = 840;
  return r;
}

TEST(PayloadLogTest, WritesJsonLinesPerDeploymentAndDay) {
  ScopedTempDir tmp;
  ASSERT_OK_AND_ASSIGN(auto log, PayloadLog::Create({.dir = tmp.path()}, nullptr));
  log->Record(Record("prod", "a", kNov22 + 1000));
  log->Record(Record("prod", "b", kNov22 + 2000));
  log->Record(Record("prod", "c", kNov22 + kDay + 5));  // the next day: a new file
  PredictionRecord failed = Record("staging", "d", kNov22);
  failed.outputs.clear();
  failed.error = "INVALID_ARGUMENT: bad";
  log->Record(std::move(failed));
  ASSERT_OK(log->Flush());

  std::vector<Json> day1 = ReadLines(tmp.path() + "/prod/2026-11-22.jsonl");
  ASSERT_THAT(day1, SizeIs(2));
  EXPECT_EQ(day1[0]["prediction_id"], "a");
  EXPECT_EQ(day1[1]["prediction_id"], "b");
  EXPECT_EQ(day1[0]["deployment"], "prod");
  EXPECT_EQ(day1[0]["model"], "iris");
  EXPECT_EQ(day1[0]["version"], 3);
  EXPECT_EQ(day1[0]["role"], "primary");
  EXPECT_EQ(day1[0]["time_ms"], kNov22 + 1000);
  EXPECT_EQ(day1[0]["latency_us"], 840);
  EXPECT_EQ(day1[0]["inputs"], Json::parse(R"([{"name":"x","datatype":"FP32","shape":[1,2],"data":[1.5,2.0]}])"));
  EXPECT_EQ(day1[0]["outputs"], Json::parse(R"([{"name":"y","datatype":"INT64","shape":[1],"data":[7]}])"));
  EXPECT_FALSE(day1[0].contains("error"));

  std::vector<Json> day2 = ReadLines(tmp.path() + "/prod/2026-11-23.jsonl");
  ASSERT_THAT(day2, SizeIs(1));
  EXPECT_EQ(day2[0]["prediction_id"], "c");

  std::vector<Json> staging = ReadLines(tmp.path() + "/staging/2026-11-22.jsonl");
  ASSERT_THAT(staging, SizeIs(1));
  EXPECT_EQ(staging[0]["error"], "INVALID_ARGUMENT: bad");
  EXPECT_EQ(staging[0]["outputs"], Json::array());
  EXPECT_EQ(log->dropped(), 0u);
}

TEST(PayloadLogTest, EachBatchWritesOnlyItsOwnLines) {
  // The writer keeps its line buffers from batch to batch, for any file.
  ScopedTempDir tmp;
  ASSERT_OK_AND_ASSIGN(auto log, PayloadLog::Create({.dir = tmp.path()}, nullptr));
  log->Record(Record("prod", "p1", kNov22));
  log->Record(Record("staging", "s1", kNov22));
  ASSERT_OK(log->Flush());
  log->Record(Record("staging", "s2", kNov22 + 1));
  log->Record(Record("prod", "p2", kNov22 + 1));
  ASSERT_OK(log->Flush());
  log->Record(Record("prod", "p3", kNov22 + 2));
  ASSERT_OK(log->Flush());
  std::vector<std::string> prod, staging;
  for (const Json& j : ReadLines(tmp.path() + "/prod/2026-11-22.jsonl")) prod.push_back(j["prediction_id"]);
  for (const Json& j : ReadLines(tmp.path() + "/staging/2026-11-22.jsonl")) staging.push_back(j["prediction_id"]);
  EXPECT_THAT(prod, ElementsAre("p1", "p2", "p3"));
  EXPECT_THAT(staging, ElementsAre("s1", "s2"));
}

TEST(PayloadLogTest, ARestartedLogContinuesTheDaysFile) {
  ScopedTempDir tmp;
  {
    ASSERT_OK_AND_ASSIGN(auto log, PayloadLog::Create({.dir = tmp.path()}, nullptr));
    log->Record(Record("prod", "before", kNov22));
  }  // the destructor writes what is queued
  ASSERT_OK_AND_ASSIGN(auto log, PayloadLog::Create({.dir = tmp.path()}, nullptr));
  log->Record(Record("prod", "after", kNov22 + 1));
  ASSERT_OK(log->Flush());
  std::vector<Json> lines = ReadLines(tmp.path() + "/prod/2026-11-22.jsonl");
  ASSERT_THAT(lines, SizeIs(2));
  EXPECT_EQ(lines[0]["prediction_id"], "before");
  EXPECT_EQ(lines[1]["prediction_id"], "after");
}

TEST(PayloadLogTest, FullQueueDropsAndCounts) {
  ScopedTempDir tmp;
  auto dropped = std::make_shared<Counter>();
  ASSERT_OK_AND_ASSIGN(auto log, PayloadLog::Create({.dir = tmp.path(), .queue_capacity = 2}, dropped));
  log->PauseWriterForTest(true);
  for (int i = 0; i < 5; ++i) log->Record(Record("prod", std::to_string(i), kNov22));
  EXPECT_EQ(log->dropped(), 3u);
  EXPECT_EQ(dropped->value(), 3u);
  log->PauseWriterForTest(false);
  ASSERT_OK(log->Flush());
  std::vector<Json> lines = ReadLines(tmp.path() + "/prod/2026-11-22.jsonl");
  ASSERT_THAT(lines, SizeIs(2));
  EXPECT_EQ(lines[0]["prediction_id"], "0");
  EXPECT_EQ(lines[1]["prediction_id"], "1");
}

TEST(PayloadLogTest, WriteFailureIsCountedAndReported) {
  ScopedTempDir tmp;
  std::ofstream(tmp.path() + "/prod") << "a file where the folder should be";
  auto dropped = std::make_shared<Counter>();
  ASSERT_OK_AND_ASSIGN(auto log, PayloadLog::Create({.dir = tmp.path()}, dropped));
  log->Record(Record("prod", "lost", kNov22));
  EXPECT_THAT(log->Flush(), StatusIs(absl::StatusCode::kInternal));
  EXPECT_EQ(log->dropped(), 1u);
  EXPECT_EQ(dropped->value(), 1u);
  log->Record(Record("other", "kept", kNov22));  // other deployments still work
  EXPECT_OK(log->Flush());
  EXPECT_THAT(ReadLines(tmp.path() + "/other/2026-11-22.jsonl"), SizeIs(1));
}

TEST(PayloadLogTest, RejectsBadOptions) {
  EXPECT_THAT(PayloadLog::Create({.dir = ""}, nullptr), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(PayloadLog::Create({.dir = "/tmp/x", .queue_capacity = 0}, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// One tensor as the log writes it, parsed back.
Json TensorToJson(const Tensor& t) {
  std::string text;
  AppendTensorJson(text, t);
  return Json::parse(text);
}

TEST(TensorToJsonTest, WritesEveryDatatypeAsOipJson) {
  Tensor b{"b", DataType::kBool, {2}, std::string("\x01\x00", 2)};
  EXPECT_EQ(TensorToJson(b)["data"], Json::parse("[true,false]"));
  EXPECT_EQ(TensorToJson(Tensor::FromValues<int8_t>("i", DataType::kInt8, {2}, std::vector<int8_t>{-3, 4}))["data"],
            Json::parse("[-3,4]"));
  EXPECT_EQ(TensorToJson(Tensor::FromValues<uint64_t>("u", DataType::kUint64, {1},
                                                      std::vector<uint64_t>{18446744073709551615ULL}))["data"],
            Json::parse("[18446744073709551615]"));
  // FP16: 1.0 is 0x3c00, -2.0 is 0xc000, 2^-24 (the smallest subnormal) is 0x0001.
  Json half = TensorToJson(
      Tensor::FromValues<uint16_t>("h", DataType::kFp16, {3}, std::vector<uint16_t>{0x3c00, 0xc000, 0x0001}));
  EXPECT_EQ(half["datatype"], "FP16");
  EXPECT_EQ(half["data"][0], 1.0);
  EXPECT_EQ(half["data"][1], -2.0);
  EXPECT_EQ(half["data"][2].get<double>(), std::ldexp(1.0, -24));
  Json nan = TensorToJson(Tensor::FromValues<double>("d", DataType::kFp64, {1}, std::vector<double>{NAN}));
  EXPECT_EQ(nan["data"], Json::parse(R"(["NaN"])"));
  std::vector<std::string> strings = {"ab", ""};
  Json bytes = TensorToJson(Tensor::FromStrings("s", {2}, strings));
  EXPECT_EQ(bytes, Json::parse(R"({"name":"s","datatype":"BYTES","shape":[2],"data":["ab",""]})"));
  Tensor broken{"x", DataType::kFp32, {4}, "abc"};  // inconsistent: logged without data
  EXPECT_TRUE(TensorToJson(broken)["data"].is_null());
  // FP32 in the shortest text that reads back as the same float; integral
  // values stay floats.
  std::string text;
  AppendTensorJson(text,
                   Tensor::FromValues<float>("f", DataType::kFp32, {4}, std::vector<float>{0.1f, 1.0f, -0.0f, 3e38f}));
  EXPECT_EQ(text, R"({"name":"f","datatype":"FP32","shape":[4],"data":[0.1,1.0,-0.0,3e+38]})");
  Json floats = Json::parse(text);
  EXPECT_EQ(floats["data"][0].get<float>(), 0.1f);
  EXPECT_TRUE(floats["data"][1].is_number_float());
  EXPECT_EQ(floats["data"][3].get<float>(), 3e38f);
}

// The data array of one FP32/FP64 tensor as written, split at the commas.
std::vector<std::string> DataTexts(const std::string& json) {
  const size_t open = json.find("\"data\":[") + 8;
  std::vector<std::string> texts;
  std::stringstream data(json.substr(open, json.rfind(']') - open));
  for (std::string t; std::getline(data, t, ',');) texts.push_back(t);
  return texts;
}

template <typename T>
void ExpectEveryValueReadsBack(const std::vector<T>& values, DataType type) {
  std::string json;
  AppendTensorJson(json, Tensor::FromValues<T>("v", type, {static_cast<int64_t>(values.size())}, values));
  std::vector<std::string> texts = DataTexts(json);
  ASSERT_EQ(texts.size(), values.size()) << json;
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string& text = texts[i];
    EXPECT_NE(text.find_first_of(".e"), std::string::npos) << text << " does not read as a float";
    T back{};
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), back);
    ASSERT_EQ(ec, std::errc()) << text;
    EXPECT_EQ(end, text.data() + text.size()) << text;
    EXPECT_EQ(std::memcmp(&back, &values[i], sizeof(T)), 0) << text << " for " << values[i];
    // The shortest form, as std::to_chars writes it (plus ".0" on integers).
    char buf[64];
    std::string shortest(buf, std::to_chars(buf, buf + sizeof(buf), values[i]).ptr);
    if (shortest.find_first_of(".e") == std::string::npos) shortest += ".0";
    EXPECT_EQ(text, shortest);
  }
}

TEST(TensorToJsonTest, FloatsReadBackExactlyInTheirShortestForm) {
  // Integral values below 1e5 take a faster path than the rest; both must
  // give the shortest text that reads back as the same value.
  std::vector<float> f = {0.0f, -0.0f, 1.0f, -1.0f, 255.0f, 99999.0f, -99999.0f, 100000.0f, 1e6f, 16777216.0f,
                          16777218.0f, 0.5f, -2.5f, 1e-45f, 1.17549435e-38f, 3.4028235e38f, 123456.789f};
  std::vector<double> d = {0.0, -0.0, 7.0, 99999.0, 1e5, 1e15, 9007199254740993.0, 0.1, -1e-300, 4.9e-324,
                           1.7976931348623157e308};
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 100.0f);
  for (int i = 0; i < 2000; ++i) {
    const float v = normal(rng);
    f.push_back(v);
    f.push_back(std::round(v));
    d.push_back(static_cast<double>(v) / 3.0);
    d.push_back(std::round(static_cast<double>(v) * 1000.0));
  }
  ExpectEveryValueReadsBack(f, DataType::kFp32);
  ExpectEveryValueReadsBack(d, DataType::kFp64);
}

TEST(PayloadLogTest, InvalidUtf8IsReplacedNotFatal) {
  ScopedTempDir tmp;
  ASSERT_OK_AND_ASSIGN(auto log, PayloadLog::Create({.dir = tmp.path()}, nullptr));
  PredictionRecord r = Record("prod", "utf", kNov22);
  std::vector<std::string> strings = {"\xff\xfe ok"};
  r.inputs = {Tensor::FromStrings("s", {1}, strings)};
  log->Record(std::move(r));
  ASSERT_OK(log->Flush());
  std::vector<Json> lines = ReadLines(tmp.path() + "/prod/2026-11-22.jsonl");
  ASSERT_THAT(lines, SizeIs(1));
  EXPECT_EQ(lines[0]["inputs"][0]["data"][0], "\xEF\xBF\xBD\xEF\xBF\xBD ok");  // U+FFFD twice
}

TEST(DeploymentFolderNameTest, NoNameEscapesTheLogFolder) {
  EXPECT_EQ(DeploymentFolderName("prod-1.v2_x"), "prod-1.v2_x");
  EXPECT_EQ(DeploymentFolderName("../etc"), "%2E.%2Fetc");
  EXPECT_EQ(DeploymentFolderName(".."), "%2E.");
  EXPECT_EQ(DeploymentFolderName("a b"), "a%20b");
  EXPECT_EQ(DeploymentFolderName(""), "%00");
}

}  // namespace
}  // namespace cairn::serving
