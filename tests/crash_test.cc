// Nothing acknowledged is lost: kill -9 the real `cairn server` while four
// clients stream log-batch requests; after a restart every acknowledged
// metric is there and `cairn fsck` is clean.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "base/json.h"
#include "base/testing.h"
#include "http/http.h"
#include "tests/support/server_process.h"

namespace cairn {
namespace {

using ::cairn::testing::CairnBinary;
using ::cairn::testing::IsOk;
using ::cairn::testing::ServerProcess;

TEST(CrashTest, AcknowledgedMetricsSurviveKill9) {
  cairn::testing::ScopedTempDir tmp;
  std::string data = tmp.path() + "/data";
  auto server = ServerProcess::Start(CairnBinary(), data);
  ASSERT_THAT(server, IsOk());
  int port = (*server)->port();

  auto setup = http::Client::Create("127.0.0.1", port);
  ASSERT_THAT(setup, IsOk());
  auto created = (*setup)->PostJson("/api/2.0/mlflow/runs/create", Json{{"experiment_id", "0"}});
  ASSERT_THAT(created, IsOk());
  std::string run = (*created)["run"]["info"]["run_id"];

  constexpr int kClients = 4;
  constexpr int kPerBatch = 250;
  std::atomic<int> acked[kClients] = {};
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t) {
    clients.emplace_back([&, t] {
      auto client = http::Client::Create("127.0.0.1", port);
      if (!client.ok()) return;
      // Bounded: at most 400 batches per client, and it stops once the server dies.
      for (int b = 0; b < 400 && !stop; ++b) {
        Json metrics = Json::array();
        for (int i = 0; i < kPerBatch; ++i) {
          metrics.push_back({{"key", "k" + std::to_string(t)}, {"value", b}, {"timestamp", 1}, {"step", b * kPerBatch + i}});
        }
        auto r = (*client)->Send(http::Method::kPost, "/api/2.0/mlflow/runs/log-batch",
                                 Json{{"run_id", run}, {"metrics", metrics}}.dump());
        if (!r.ok() || r->status != 200) return;  // the server is gone
        acked[t] = b + 1;
      }
    });
  }
  // Let ingest get going, then kill the server without warning.
  for (int i = 0; i < 100 && acked[0] + acked[1] + acked[2] + acked[3] < 40; ++i) usleep(20000);
  EXPECT_EQ((*server)->Kill(SIGKILL), 128 + SIGKILL);
  stop = true;
  for (auto& c : clients) c.join();
  int total_acked = 0;
  for (int t = 0; t < kClients; ++t) total_acked += acked[t];
  ASSERT_GT(total_acked, 0);

  // Restart on the same data directory: every acknowledged batch is there.
  auto again = ServerProcess::Start(CairnBinary(), data);
  ASSERT_THAT(again, IsOk());
  auto client = http::Client::Create("127.0.0.1", (*again)->port());
  ASSERT_THAT(client, IsOk());
  for (int t = 0; t < kClients; ++t) {
    auto h = (*client)->GetJson("/api/2.0/mlflow/metrics/get-history?run_id=" + run + "&metric_key=k" +
                                std::to_string(t));
    ASSERT_THAT(h, IsOk());
    const Json& points = (*h)["metrics"];
    int acked_points = acked[t] * kPerBatch;
    ASSERT_GE(static_cast<int>(points.size()), acked_points) << "client " << t << " lost acknowledged metrics";
    // Batches are atomic: whatever landed is whole batches, in order.
    EXPECT_EQ(points.size() % kPerBatch, 0u);
    for (int i = 0; i < acked_points; ++i) ASSERT_EQ(points[i]["step"], i);
  }
  EXPECT_EQ((*again)->Kill(SIGTERM), 0);

  cairn::testing::CommandResult fsck = cairn::testing::RunCommand({CairnBinary(), "fsck", "--data-dir", data});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.output;
  EXPECT_THAT(fsck.output, ::testing::HasSubstr("clean"));
}

}  // namespace
}  // namespace cairn
