// A dataset commit is all-or-nothing: kill -9 the real `cairn server` at a
// random moment while `cairn data add` uploads a ~200 MB tree to it (several
// rounds, each with fresh data), and kill -9 an embedded `cairn data add`
// mid-way; after each, the branch is at the old head or at a complete new
// commit whose every file reads back with the right SHA-256, and
// `cairn fsck` is clean.
#include <fcntl.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "base/json.h"
#include "base/sha256.h"
#include "base/testing.h"
#include "http/http.h"
#include "tests/support/server_process.h"

extern char** environ;

namespace cairn {
namespace {

namespace fs = std::filesystem;
using ::cairn::testing::CairnBinary;
using ::cairn::testing::IsOk;
using ::cairn::testing::ReadFileOrEmpty;
using ::cairn::testing::ServerProcess;

constexpr int kServerKillRounds = 5;
constexpr size_t kSmallFiles = 200;
constexpr size_t kSmallSize = 512 << 10;  // 100 MiB of small files
constexpr size_t kBigSize = 96 << 20;     // and one big file
constexpr size_t kRoundFiles = 8;          // fresh files per round
constexpr size_t kRoundFileSize = 2 << 20;
constexpr size_t kBigRewrite = 8 << 20;    // fresh bytes in the big file per round

// Incompressible bytes, fast enough for a few hundred MB.
std::string RandomBytes(size_t n, std::mt19937_64& rng) {
  std::string out(n, '\0');
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(out.data() + i, &v, 8);
  }
  for (; i < n; ++i) out[i] = static_cast<char>(rng());
  return out;
}

// The source tree on disk, with every file's expected SHA-256.
class SourceTree {
 public:
  explicit SourceTree(std::string root) : root_(std::move(root)) {}

  void Write(const std::string& path, const std::string& content) {
    const std::string disk = root_ + "/" + path;
    fs::create_directories(fs::path(disk).parent_path());
    std::ofstream(disk, std::ios::binary | std::ios::trunc) << content;
    digests_[path] = Sha256::Of(content).ToHex();
  }
  const std::string& root() const { return root_; }
  const std::map<std::string, std::string>& digests() const { return digests_; }

 private:
  const std::string root_;
  std::map<std::string, std::string> digests_;
};

// A `cairn` child process, its output going to `log`.
pid_t Spawn(const std::vector<std::string>& args, const std::string& log, const std::string& cache_dir) {
  std::vector<std::string> env = {"XDG_CACHE_HOME=" + cache_dir};
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string_view(*e).rfind("XDG_CACHE_HOME=", 0) != 0) env.emplace_back(*e);
  }
  std::vector<std::string> argv = args;
  std::vector<char*> cargv, cenv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  for (std::string& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, cargv[0], &actions, nullptr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

// Waits for `pid` up to `timeout`, then kills it; returns its exit code
// (128 + signal when killed by one).
int Reap(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0) return -1;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

class DataCrashTest : public ::testing::Test {
 protected:
  void StartServer() {
    auto server = ServerProcess::Start(CairnBinary(), data_);
    ASSERT_THAT(server, IsOk());
    server_ = std::move(server).value();
    auto client = http::Client::Create("127.0.0.1", server_->port());
    ASSERT_THAT(client, IsOk());
    client_ = std::move(client).value();
  }
  std::string Url() const { return "http://127.0.0.1:" + std::to_string(server_->port()); }

  // The head of main ("" before the first commit).
  std::string Head() {
    auto r = client_->Send(http::Method::kGet, "/api/cairn/v1/datasets/ds/commits/main");
    EXPECT_THAT(r, IsOk());
    if (!r.ok() || r->status == 404) return "";
    EXPECT_EQ(r->status, 200) << r->body;
    auto j = ParseJson(r->body);
    return j.ok() ? (*j)["commit"].value("id", "") : "";
  }

  // The branch is at `old_head`, or at a new commit built on it that holds
  // exactly `expected` (path -> SHA-256), every file reading back whole.
  void ExpectOldOrCompleteNew(const std::string& old_head, const std::map<std::string, std::string>& expected,
                              bool* moved) {
    const std::string head = Head();
    *moved = head != old_head;
    if (!*moved) return;
    ASSERT_EQ(head.size(), 64u);
    auto commit = client_->GetJson("/api/cairn/v1/datasets/ds/commits/" + head);
    ASSERT_THAT(commit, IsOk());
    const Json parents = (*commit)["commit"]["parents"];
    EXPECT_EQ(parents, old_head.empty() ? Json::array() : Json::array({old_head}));
    auto tree = client_->GetJson("/api/cairn/v1/datasets/ds/tree/" + head);
    ASSERT_THAT(tree, IsOk());
    std::map<std::string, std::string> got;
    for (const Json& f : (*tree)["files"]) {
      const std::string path = f["path"];
      Sha256 hasher;
      uint64_t bytes = 0;
      auto r = client_->Download("/api/cairn/v1/datasets/ds/files/" + head + "/" + http::UrlEncodePath(path),
                                 [&](std::string_view b) {
                                   hasher.Update(b);
                                   bytes += b.size();
                                   return absl::OkStatus();
                                 });
      ASSERT_THAT(r, IsOk()) << path;
      ASSERT_EQ(r->status, 200) << path << ": " << r->body;
      EXPECT_EQ(bytes, f["size"].get<uint64_t>()) << path;
      got[path] = hasher.Finish().ToHex();
    }
    EXPECT_EQ(got.size(), expected.size());
    EXPECT_TRUE(got == expected) << "commit " << head << " does not hold the source tree";
  }

  void ExpectFsckClean() {
    auto fsck = testing::RunCommand({CairnBinary(), "fsck", "--data-dir", data_});
    // The head of the report is enough to see what is wrong.
    EXPECT_EQ(fsck.exit_code, 0) << fsck.output.substr(0, 2000);
    EXPECT_TRUE(fsck.output.ends_with("\nclean\n")) << fsck.output.substr(0, 2000);
  }

  // New data for a round: fresh files and a fresh stretch of the big file.
  void Mutate(int round) {
    for (size_t i = 0; i < kRoundFiles; ++i) {
      src_.Write(fmt::format("round{}/f{}.bin", round, i), RandomBytes(kRoundFileSize, rng_));
    }
    const size_t at = (static_cast<size_t>(round) * 11 << 20) % (kBigSize - kBigRewrite);
    const std::string fresh = RandomBytes(kBigRewrite, rng_);
    big_.replace(at, fresh.size(), fresh);
    src_.Write("big.bin", big_);
  }

  cairn::testing::ScopedTempDir tmp_;
  const std::string data_ = tmp_.path() + "/data";
  const std::string cache_ = tmp_.path() + "/cache";
  SourceTree src_{tmp_.path() + "/src"};
  std::mt19937_64 rng_{20240917};
  std::string big_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<http::Client> client_;
};

TEST_F(DataCrashTest, Kill9DuringAddLeavesOldOrCompleteNewCommit) {
  // The tree: 200 small files and a big one, ~200 MB, generated once.
  for (size_t i = 0; i < kSmallFiles; ++i) src_.Write(fmt::format("small/{:03}.bin", i), RandomBytes(kSmallSize, rng_));
  big_ = RandomBytes(kBigSize, rng_);
  src_.Write("big.bin", big_);

  StartServer();
  ASSERT_EQ(testing::RunCommand({CairnBinary(), "--url", Url(), "data", "create", "ds"}).exit_code, 0);

  // The moments to kill at are random; the seed is printed to replay a failure.
  const unsigned seed = std::random_device{}();
  std::mt19937 when(seed);
  RecordProperty("kill_seed", static_cast<int>(seed));
  std::printf("kill moments: seed %u\n", seed);

  // An uninterrupted `data add` of the whole tree; returns its exit code.
  auto add_all = [&] {
    const std::string log = tmp_.path() + "/client-uninterrupted.log";
    const pid_t add =
        Spawn({CairnBinary(), "--url", Url(), "data", "add", "ds", src_.root(), "--no-progress"}, log, cache_);
    const int exit_code = Reap(add, std::chrono::seconds(120));
    EXPECT_EQ(exit_code, 0) << ReadFileOrEmpty(log);
    return exit_code;
  };

  // Starts `data add` of the whole tree against the server, kills the server
  // after `ms`, restarts it and checks the branch and fsck.
  int moved_rounds = 0;
  auto kill_server_during_add = [&](int round, int ms) {
    SCOPED_TRACE(fmt::format("server kill round {}, {} ms (seed {})", round, ms, seed));
    const std::string old_head = Head();
    const std::string log = fmt::format("{}/client{}.log", tmp_.path(), round);
    const pid_t add = Spawn({CairnBinary(), "--url", Url(), "data", "add", "ds", src_.root(), "-m",
                             fmt::format("round {}", round), "--no-progress"},
                            log, cache_);
    ASSERT_GT(add, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    EXPECT_EQ(server_->Kill(SIGKILL), 128 + SIGKILL);
    // The client fails cleanly (or had finished): an exit code, not a signal.
    const int client_exit = Reap(add, std::chrono::seconds(20));
    EXPECT_TRUE(client_exit == 0 || client_exit == 1) << "client exit " << client_exit << ": " << ReadFileOrEmpty(log);

    StartServer();
    bool moved = false;
    ExpectOldOrCompleteNew(old_head, src_.digests(), &moved);
    if (client_exit == 0) {
      EXPECT_TRUE(moved) << "the client reported success but the branch did not move";
    }
    moved_rounds += moved ? 1 : 0;
    std::printf("round %d: killed the server after %d ms; client exit %d; branch %s\n", round, ms, client_exit,
                moved ? "moved" : "stayed");
    ExpectFsckClean();
  };

  // Round 0: during the upload of the fresh ~200 MB tree.
  kill_server_during_add(0, std::uniform_int_distribution<int>(50, 1000)(when));
  if (HasFatalFailure()) return;

  // Time an uninterrupted add of one round's fresh data, so that the later
  // kills spread over a whole add, commit included, and a little past it.
  {
    ASSERT_EQ(add_all(), 0);
    Mutate(1);
    // Every kill round's add runs against a server just started, which is
    // slower at first: time it the same way.
    EXPECT_EQ(server_->Kill(SIGTERM), 0);
    StartServer();
    const auto start = std::chrono::steady_clock::now();
    ASSERT_EQ(add_all(), 0);
    const int add_ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count());
    std::printf("an add of one round's fresh data takes %d ms\n", add_ms);
    // Stratified: each round kills at a random moment of its own stretch of
    // [50 ms, 1.5 times the add's time], so that kills land early, late,
    // around the commit and after it. Each round starts where the timed add
    // did: the previous round's tree committed, the stat cache warm.
    const int span = std::max(300, 3 * add_ms / 2) - 50;
    const int rounds = kServerKillRounds - 1;
    for (int round = 1; round <= rounds; ++round) {
      Mutate(round + 1);
      const int from = 50 + span * (round - 1) / rounds, to = 50 + span * round / rounds;
      const int moved_before = moved_rounds;
      kill_server_during_add(round, std::uniform_int_distribution<int>(from, to)(when));
      if (HasFatalFailure()) return;
      if (moved_rounds == moved_before) {
        // Run again after the crash, it completes (uploading only what the
        // killed server had not stored).
        const std::string head = Head();
        ASSERT_EQ(add_all(), 0);
        EXPECT_NE(Head(), head);
      }
    }
  }
  std::printf("%d of %d rounds committed before the kill\n", moved_rounds, kServerKillRounds);

  // The embedded client killed mid-way (no server holds the directory).
  {
    SCOPED_TRACE(fmt::format("client kill round (seed {})", seed));
    Mutate(kServerKillRounds + 1);
    Mutate(kServerKillRounds + 2);  // more fresh data, so that the kill lands mid-add
    const std::string old_head = Head();
    EXPECT_EQ(server_->Kill(SIGTERM), 0);
    const std::string log = tmp_.path() + "/client-embedded.log";
    const pid_t add = Spawn({CairnBinary(), "--data-dir", data_, "data", "add", "ds", src_.root(), "-m",
                             "embedded", "--no-progress"},
                            log, cache_);
    ASSERT_GT(add, 0);
    // Kill it while it writes objects: soon after the first temporary object
    // file appears (an embedded add of the whole tree is over in about a
    // second here, so a blind delay would often miss).
    const auto spawned = std::chrono::steady_clock::now();
    const std::string objects_tmp = data_ + "/objects/tmp";
    for (int i = 0; i < 500; ++i) {
      std::error_code ec;
      if (fs::exists(objects_tmp, ec) && !fs::is_empty(objects_tmp, ec)) break;
      siginfo_t info{};
      if (waitid(P_PID, add, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == add) break;  // done already
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 300)(when)));
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - spawned);
    kill(add, SIGKILL);
    const int client_exit = Reap(add, std::chrono::seconds(20));
    std::printf("embedded round: killed the client after %d ms (exit %d)\n", static_cast<int>(ms.count()),
                client_exit);
    // fsck first, before any server start could tidy up after the client.
    ExpectFsckClean();
    StartServer();
    bool moved = false;
    ExpectOldOrCompleteNew(old_head, src_.digests(), &moved);
  }
  ExpectFsckClean();
}

}  // namespace
}  // namespace cairn
