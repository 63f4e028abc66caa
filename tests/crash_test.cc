// Nothing acknowledged is lost: kill -9 the real `cairn server` while four
// clients stream log-batch requests; after a restart every acknowledged
// metric is there and `cairn fsck` is clean.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "base/json.h"
#include "base/testing.h"
#include "http/http.h"

extern char** environ;

namespace cairn {
namespace {

using ::cairn::testing::IsOk;

std::string CairnBinary() {
  const char* bin = std::getenv("CAIRN_BIN");
  return bin ? bin : "cairn";
}

// A child process with its stdout on a pipe.
struct Child {
  pid_t pid = -1;
  FILE* out = nullptr;
};

Child Spawn(const std::vector<std::string>& args) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  Child c;
  if (posix_spawn(&c.pid, argv[0], &actions, nullptr, argv.data(), environ) != 0) c.pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  c.out = fdopen(fds[0], "r");
  return c;
}

int WaitExit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Starts `cairn server --port 0` and returns its port (0 on failure).
int StartServer(const std::string& data_dir, Child* child) {
  *child = Spawn({CairnBinary(), "server", "--port", "0", "--data-dir", data_dir, "--log-level", "warn"});
  if (child->pid < 0 || child->out == nullptr) return 0;
  char line[256];
  if (!fgets(line, sizeof line, child->out)) return 0;
  std::string s(line);
  size_t colon = s.rfind(':');
  return colon == std::string::npos ? 0 : std::atoi(s.c_str() + colon + 1);
}

TEST(CrashTest, AcknowledgedMetricsSurviveKill9) {
  cairn::testing::ScopedTempDir tmp;
  std::string data = tmp.path() + "/data";
  Child server;
  int port = StartServer(data, &server);
  ASSERT_GT(port, 0) << "could not start " << CairnBinary();

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
  kill(server.pid, SIGKILL);
  WaitExit(server.pid);
  fclose(server.out);
  stop = true;
  for (auto& c : clients) c.join();
  int total_acked = 0;
  for (int t = 0; t < kClients; ++t) total_acked += acked[t];
  ASSERT_GT(total_acked, 0);

  // Restart on the same data directory: every acknowledged batch is there.
  Child again;
  port = StartServer(data, &again);
  ASSERT_GT(port, 0);
  auto client = http::Client::Create("127.0.0.1", port);
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
  kill(again.pid, SIGTERM);
  EXPECT_EQ(WaitExit(again.pid), 0);
  fclose(again.out);

  Child fsck = Spawn({CairnBinary(), "--data-dir", data, "fsck"});
  char line[512];
  std::string report;
  while (fgets(line, sizeof line, fsck.out)) report += line;
  fclose(fsck.out);
  EXPECT_EQ(WaitExit(fsck.pid), 0) << report;
  EXPECT_THAT(report, ::testing::HasSubstr("clean"));
}

}  // namespace
}  // namespace cairn
