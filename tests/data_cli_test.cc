// `cairn data ...`, `cairn gc` and `cairn fsck` as a user runs them, in both
// modes: embedded (--data-dir) and against a real `cairn server` (--url).
// Round trips a tree through add/log/show/ls/cat/diff/checkout, checks the
// --json output of `data add`, the stat cache, every rejected path, splits
// and sealing, and two `data add` processes racing on one branch.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>

#include "base/json.h"
#include "base/testing.h"
#include "tests/support/cli_process.h"
#include "tests/support/server_process.h"

extern char** environ;

namespace cairn {
namespace {

namespace fs = std::filesystem;
using ::cairn::testing::CairnBinary;
using ::cairn::testing::Cli;
using ::cairn::testing::Describe;
using ::cairn::testing::IsOk;
using ::cairn::testing::ReadFileOrEmpty;
using ::cairn::testing::ServerProcess;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

void WriteFile(const std::string& path, const std::string& content) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

// Every regular file under `root`: relative path -> (content, permission bits).
std::map<std::string, std::pair<std::string, fs::perms>> Snapshot(const std::string& root) {
  std::map<std::string, std::pair<std::string, fs::perms>> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (!e.is_regular_file()) continue;
    out[fs::relative(e.path(), root).string()] = {ReadFileOrEmpty(e.path()), e.status().permissions()};
  }
  return out;
}

enum class Mode { kEmbedded, kRemote };

class DataCliTest : public ::testing::TestWithParam<Mode> {
 protected:
  void SetUp() override {
    fs::create_directories(scratch_);
    std::vector<std::string> mode_args;
    if (GetParam() == Mode::kRemote) {
      auto server = ServerProcess::Start(CairnBinary(), data_);
      ASSERT_THAT(server, IsOk());
      server_ = std::move(server).value();
      mode_args = {"--url", "http://127.0.0.1:" + std::to_string(server_->port())};
    } else {
      mode_args = {"--data-dir", data_};
    }
    cli_ = std::make_unique<Cli>(mode_args, scratch_);
  }

  Cli::Outcome Cairn(const std::vector<std::string>& args) { return cli_->Run(args); }
  Json CairnJson(std::vector<std::string> args) {
    args.insert(args.begin(), "--json");
    Cli::Outcome o = Cairn(args);
    EXPECT_EQ(o.exit_code, 0) << Describe(o);
    auto j = ParseJson(o.out);
    EXPECT_THAT(j, IsOk()) << Describe(o);
    return j.ok() ? *j : Json();
  }
  std::string HeadOf(const std::string& dataset) {
    Cli::Outcome o = Cairn({"--json", "data", "show", dataset});
    if (o.exit_code != 0) return "";
    auto j = ParseJson(o.out);
    return j.ok() ? (*j)["commit"].value("id", "") : "";
  }
  // A rejected command: exit code 1 and one clear line on stderr.
  void ExpectRejected(const Cli::Outcome& o, const std::string& mentions) {
    EXPECT_EQ(o.exit_code, 1) << Describe(o);
    EXPECT_THAT(o.err, StartsWith("cairn: error: ")) << Describe(o);
    EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << Describe(o);
    EXPECT_THAT(o.err, HasSubstr(mentions)) << Describe(o);
  }
  // Stops the server (if any) and runs `cairn fsck` on the data directory.
  void ExpectFsckClean() {
    if (server_) {
      EXPECT_EQ(server_->Kill(SIGTERM), 0);
    }
    server_.reset();
    auto fsck = testing::RunCommand({CairnBinary(), "fsck", "--data-dir", data_});
    // The head of the report is enough to see what is wrong.
    EXPECT_EQ(fsck.exit_code, 0) << fsck.output.substr(0, 2000);
    EXPECT_TRUE(fsck.output.ends_with("\nclean\n")) << fsck.output.substr(0, 2000);
  }

  cairn::testing::ScopedTempDir tmp_;
  const std::string data_ = tmp_.path() + "/data";
  const std::string scratch_ = tmp_.path() + "/scratch";
  const std::string src_ = tmp_.path() + "/src";
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Cli> cli_;
};

TEST_P(DataCliTest, AddLogShowLsCatDiffCheckoutRoundTrip) {
  const std::string csv = "id,name,score\n1,ann,0.5\n2,bob,0.75\n3,cy,\n";
  const std::string big = RandomBytes(3 << 20, 1);  // several chunks
  WriteFile(src_ + "/a.csv", csv);
  WriteFile(src_ + "/sub/b.bin", big);
  WriteFile(src_ + "/sub/deep/c.txt", "deep\n");
  WriteFile(src_ + "/empty", "");
  WriteFile(src_ + "/run.sh", "#!/bin/sh\necho hi\n");
  fs::permissions(src_ + "/run.sh", fs::perms(0755));
  const uint64_t total = csv.size() + big.size() + 5 + 0 + 18;

  Cli::Outcome created = Cairn({"data", "create", "ds", "-d", "test data"});
  ASSERT_EQ(created.exit_code, 0) << Describe(created);
  EXPECT_THAT(created.out, HasSubstr("created dataset 'ds'"));
  ExpectRejected(Cairn({"data", "create", "ds"}), "already exists");

  Json added = CairnJson({"data", "add", "ds", src_, "-m", "first"});
  for (const char* field : {"dataset", "branch", "commit", "created", "files", "bytes", "stored_bytes",
                            "files_cached", "seconds"}) {
    EXPECT_TRUE(added.contains(field)) << field << " missing from " << added.dump();
  }
  EXPECT_EQ(added["dataset"], "ds");
  EXPECT_EQ(added["branch"], "main");
  const std::string first = added.value("commit", "");
  ASSERT_EQ(first.size(), 64u) << added.dump();
  EXPECT_EQ(added["created"], true);
  EXPECT_EQ(added["files"], 5);
  EXPECT_EQ(added["bytes"], total);
  EXPECT_GT(added["stored_bytes"].get<int64_t>(), static_cast<int64_t>(big.size()) / 2);
  EXPECT_EQ(added["files_cached"], 0);
  EXPECT_GE(added["seconds"].get<double>(), 0.0);

  // Re-adding the unchanged tree: nothing created, every file from the stat cache.
  Json again = CairnJson({"data", "add", "ds", src_});
  EXPECT_EQ(again["created"], false) << again.dump();
  EXPECT_EQ(again["commit"], first);
  EXPECT_EQ(again["files_cached"], again["files"]);
  EXPECT_EQ(again["files"], 5);
  EXPECT_EQ(again["stored_bytes"], 0);
  Cli::Outcome unchanged = Cairn({"data", "add", "ds", src_});
  EXPECT_EQ(unchanged.exit_code, 0) << Describe(unchanged);
  EXPECT_THAT(unchanged.out, HasSubstr("nothing changed"));

  // log / show / ls / cat.
  Cli::Outcome log = Cairn({"data", "log", "ds"});
  ASSERT_EQ(log.exit_code, 0) << Describe(log);
  EXPECT_THAT(log.out, HasSubstr(first.substr(0, 12)));
  EXPECT_THAT(log.out, HasSubstr("first"));
  EXPECT_THAT(log.out, HasSubstr("tester"));
  Cli::Outcome show = Cairn({"data", "show", "ds"});
  ASSERT_EQ(show.exit_code, 0) << Describe(show);
  EXPECT_THAT(show.out, HasSubstr("commit   " + first));
  EXPECT_THAT(show.out, HasSubstr("profile of a.csv"));  // the CSV was profiled
  EXPECT_THAT(show.out, HasSubstr("score"));
  EXPECT_EQ(CairnJson({"data", "show", first})["commit"]["id"], first);  // by full id
  Json ls = CairnJson({"data", "ls", "ds"});
  std::vector<std::string> paths;
  for (const Json& f : ls) paths.push_back(f["path"]);
  EXPECT_THAT(paths, ElementsAre("a.csv", "empty", "run.sh", "sub/b.bin", "sub/deep/c.txt"));
  Cli::Outcome ls_prefix = Cairn({"data", "ls", "ds", "sub/"});
  EXPECT_THAT(ls_prefix.out, HasSubstr("sub/deep/c.txt"));
  EXPECT_THAT(ls_prefix.out, ::testing::Not(HasSubstr("a.csv")));
  EXPECT_EQ(Cairn({"data", "cat", "ds", "sub/b.bin"}).out, big);
  EXPECT_EQ(Cairn({"data", "cat", "ds", "sub/b.bin", "--offset", "1000000", "--length", "70000"}).out,
            big.substr(1000000, 70000));
  EXPECT_EQ(Cairn({"data", "cat", "ds@" + first.substr(0, 8), "a.csv", "--offset", "3"}).out, csv.substr(3));
  ExpectRejected(Cairn({"data", "cat", "ds", "nope.txt"}), "nope.txt");
  ExpectRejected(Cairn({"data", "log", "nods"}), "nods");

  // A second commit: one file changed, one added; then one removed (--replace).
  const std::string csv2 = csv + "4,dee,1.0\n";
  WriteFile(src_ + "/a.csv", csv2);
  WriteFile(src_ + "/new.txt", "new file\n");
  Json second = CairnJson({"data", "add", "ds", src_, "-m", "second"});
  EXPECT_EQ(second["created"], true);
  EXPECT_EQ(second["files_cached"], 4) << second.dump();  // all but the changed and the new file
  fs::remove(src_ + "/sub/deep/c.txt");
  Json third = CairnJson({"data", "add", "ds", src_, "--replace", "-m", "third"});
  EXPECT_EQ(third["created"], true);

  Cli::Outcome diff = Cairn({"data", "diff", "ds", first, "main"});
  ASSERT_EQ(diff.exit_code, 0) << Describe(diff);
  EXPECT_THAT(diff.out, HasSubstr("M  a.csv"));
  EXPECT_THAT(diff.out, HasSubstr("A  new.txt"));
  EXPECT_THAT(diff.out, HasSubstr("D  sub/deep/c.txt"));
  EXPECT_EQ(std::count(diff.out.begin(), diff.out.end(), '\n'), 3) << diff.out;
  Json log_json = CairnJson({"data", "log", "ds"});
  ASSERT_EQ(log_json.size(), 3u);
  EXPECT_EQ(log_json[0]["message"], "third");
  EXPECT_EQ(log_json[2]["id"], first);
  EXPECT_EQ(CairnJson({"data", "log", "ds", "-n", "1"}).size(), 1u);

  // Tags and branches.
  ASSERT_EQ(Cairn({"data", "tag", "create", "ds", "v1", first}).exit_code, 0);
  EXPECT_EQ(Cairn({"data", "cat", "ds@v1", "a.csv"}).out, csv);
  Json tags = CairnJson({"data", "tag", "list", "ds"});
  ASSERT_EQ(tags.size(), 1u);
  EXPECT_EQ(tags[0]["commit"], first);

  // Checkout: byte-identical files with their modes; an older commit; refusals.
  const std::string out = tmp_.path() + "/out";
  Cli::Outcome co = Cairn({"data", "checkout", "ds", out});
  ASSERT_EQ(co.exit_code, 0) << Describe(co);
  EXPECT_THAT(co.out, HasSubstr("verified"));
  EXPECT_EQ(Snapshot(out), Snapshot(src_));
  EXPECT_EQ(fs::status(out + "/run.sh").permissions() & fs::perms(0777), fs::perms(0755));
  ExpectRejected(Cairn({"data", "checkout", "ds", out}), "not empty");
  const std::string old_out = tmp_.path() + "/old";
  ASSERT_EQ(Cairn({"data", "checkout", "ds@v1", old_out}).exit_code, 0);
  EXPECT_EQ(ReadFileOrEmpty(old_out + "/a.csv"), csv);
  EXPECT_EQ(ReadFileOrEmpty(old_out + "/sub/deep/c.txt"), "deep\n");
  EXPECT_FALSE(fs::exists(old_out + "/new.txt"));
  EXPECT_EQ(ReadFileOrEmpty(old_out + "/sub/b.bin"), big);

  ExpectFsckClean();
}

TEST_P(DataCliTest, RejectedPathsFailWithOneLineAndNoCommit) {
  ASSERT_EQ(Cairn({"data", "create", "ds"}).exit_code, 0);
  WriteFile(src_ + "/ok.txt", "fine\n");
  ASSERT_EQ(Cairn({"data", "add", "ds", src_}).exit_code, 0);
  const std::string head = HeadOf("ds");
  ASSERT_EQ(head.size(), 64u);
  WriteFile(tmp_.path() + "/outside.txt", "outside the tree\n");

  struct Case {
    std::string name;
    std::function<void(const std::string& dir)> make;
    std::string mentions;
  };
  const std::vector<Case> cases = {
      {"symlink outside the tree",
       [&](const std::string& d) { fs::create_symlink(tmp_.path() + "/outside.txt", d + "/link"); }, "link"},
      {"symlink climbing out with ..",
       [&](const std::string& d) { fs::create_symlink("../../outside.txt", d + "/up"); }, "up"},
      {"dangling symlink", [&](const std::string& d) { fs::create_symlink(d + "/gone", d + "/dangling"); },
       "dangling"},
      {"backslash in a name", [&](const std::string& d) { WriteFile(d + "/a\\b.txt", "x"); }, "backslash"},
      {"control character in a name", [&](const std::string& d) { WriteFile(d + "/bell\x07.txt", "x"); },
       "control"},
      {"a FIFO", [&](const std::string& d) { ASSERT_EQ(::mkfifo((d + "/pipe").c_str(), 0644), 0); }, "pipe"},
  };
  int n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string dir = tmp_.path() + "/case" + std::to_string(n++);
    WriteFile(dir + "/good.txt", "a good file beside the bad one\n");
    c.make(dir);
    ExpectRejected(Cairn({"data", "add", "ds", dir, "-m", c.name}), c.mentions);
    EXPECT_EQ(HeadOf("ds"), head);
  }
  {
    SCOPED_TRACE("nonexistent path");
    const std::string nowhere = tmp_.path() + "/no/such/dir";
    ExpectRejected(Cairn({"data", "add", "ds", nowhere}), nowhere);
    EXPECT_EQ(HeadOf("ds"), head);
  }
  {
    SCOPED_TRACE("malformed --split");
    ExpectRejected(Cairn({"data", "add", "ds", src_, "--split", "nothing"}), "NAME=GLOB");
  }
  Json log = CairnJson({"data", "log", "ds"});
  EXPECT_EQ(log.size(), 1u);
  ExpectFsckClean();
}

TEST_P(DataCliTest, SplitsAreShownAndASealedSplitCannotBeDropped) {
  ASSERT_EQ(Cairn({"data", "create", "ds"}).exit_code, 0);
  WriteFile(src_ + "/train/a.txt", "a");
  WriteFile(src_ + "/train/b.txt", "bb");
  WriteFile(src_ + "/test/c.txt", "ccc");
  Cli::Outcome add = Cairn({"data", "add", "ds", src_, "--split", "train=train/**", "--split", "test=test/**",
                            "--seal", "test"});
  ASSERT_EQ(add.exit_code, 0) << Describe(add);
  const std::string head = HeadOf("ds");

  Cli::Outcome show = Cairn({"data", "show", "ds"});
  ASSERT_EQ(show.exit_code, 0) << Describe(show);
  EXPECT_THAT(show.out, HasSubstr("splits"));
  EXPECT_THAT(show.out, ::testing::ContainsRegex("test +1 +3 B +yes +test/\\*\\*"));
  EXPECT_THAT(show.out, ::testing::ContainsRegex("train +2 +3 B +no +train/\\*\\*"));
  Json shown = CairnJson({"data", "show", "ds"});
  std::map<std::string, bool> sealed;
  for (const Json& s : shown["commit"]["splits"]) sealed[s["name"]] = s["sealed"];
  EXPECT_EQ(sealed, (std::map<std::string, bool>{{"test", true}, {"train", false}}));
  Json test_files = CairnJson({"data", "ls", "ds", "--split", "test"});
  ASSERT_EQ(test_files.size(), 1u);
  EXPECT_EQ(test_files[0]["path"], "test/c.txt");
  const std::string only_test = tmp_.path() + "/only-test";
  ASSERT_EQ(Cairn({"data", "checkout", "ds", only_test, "--split", "test"}).exit_code, 0);
  EXPECT_EQ(Snapshot(only_test).size(), 1u);
  EXPECT_EQ(ReadFileOrEmpty(only_test + "/test/c.txt"), "ccc");

  // Re-declaring the splits without the sealed one is refused; the branch stays.
  WriteFile(src_ + "/train/d.txt", "dddd");
  ExpectRejected(Cairn({"data", "add", "ds", src_, "--split", "train=train/**"}), "sealed");
  EXPECT_EQ(HeadOf("ds"), head);
  // Adding without --split keeps the splits, still sealed.
  ASSERT_EQ(Cairn({"data", "add", "ds", src_}).exit_code, 0);
  Json after = CairnJson({"data", "show", "ds"});
  EXPECT_NE(after["commit"]["id"], head);
  sealed.clear();
  for (const Json& s : after["commit"]["splits"]) sealed[s["name"]] = s["sealed"];
  EXPECT_EQ(sealed, (std::map<std::string, bool>{{"test", true}, {"train", false}}));
  // Sealing a split that does not exist is refused.
  ExpectRejected(Cairn({"data", "add", "ds", src_, "--seal", "validation"}), "validation");
  ExpectFsckClean();
}

TEST_P(DataCliTest, ConcurrentAddsToOneBranchBothLand) {
  ASSERT_EQ(Cairn({"data", "create", "ds"}).exit_code, 0);
  WriteFile(src_ + "/base.txt", "base\n");
  ASSERT_EQ(Cairn({"data", "add", "ds", src_, "-m", "base"}).exit_code, 0);
  // Big enough that the two processes overlap in time.
  for (const char* who : {"a", "b"}) {
    for (int i = 0; i < 8; ++i) {
      WriteFile(tmp_.path() + "/" + who + "/" + who + std::to_string(i) + ".bin",
                RandomBytes(512 << 10, static_cast<uint32_t>(who[0] * 100 + i)));
    }
  }
  int slot_a = 0, slot_b = 0;
  pid_t a = cli_->Start({"data", "add", "ds", tmp_.path() + "/a", "-m", "from a"}, &slot_a);
  pid_t b = cli_->Start({"data", "add", "ds", tmp_.path() + "/b", "-m", "from b"}, &slot_b);
  ASSERT_GT(a, 0);
  ASSERT_GT(b, 0);
  Cli::Outcome ra = cli_->Finish(a, slot_a), rb = cli_->Finish(b, slot_b);
  EXPECT_EQ(ra.exit_code, 0) << Describe(ra);
  EXPECT_EQ(rb.exit_code, 0) << Describe(rb);

  Json log = CairnJson({"data", "log", "ds"});
  std::vector<std::string> messages;
  for (const Json& c : log) messages.push_back(c["message"]);
  EXPECT_THAT(messages, ::testing::UnorderedElementsAre("from a", "from b", "base"));
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[2]["message"], "base");
  Json ls = CairnJson({"data", "ls", "ds"});
  std::vector<std::string> paths;
  for (const Json& f : ls) paths.push_back(f["path"]);
  EXPECT_EQ(paths.size(), 17u);
  EXPECT_THAT(paths, ::testing::Contains("a0.bin"));
  EXPECT_THAT(paths, ::testing::Contains("b7.bin"));
  EXPECT_THAT(paths, ::testing::Contains("base.txt"));
  EXPECT_EQ(Cairn({"data", "cat", "ds", "b3.bin"}).out, RandomBytes(512 << 10, 'b' * 100 + 3));
  ExpectFsckClean();
}

TEST_P(DataCliTest, GcDryRunAndFsck) {
  ASSERT_EQ(Cairn({"data", "create", "ds", "--encrypted"}).exit_code, 0);
  WriteFile(src_ + "/x.bin", RandomBytes(200'000, 4));
  ASSERT_EQ(Cairn({"data", "add", "ds", src_}).exit_code, 0);
  Cli::Outcome dry = Cairn({"gc", "--dry-run", "--grace", "5m"});
  ASSERT_EQ(dry.exit_code, 0) << Describe(dry);
  EXPECT_THAT(dry.out, HasSubstr("would free"));
  Json dry_json = CairnJson({"gc", "--dry-run", "--grace", "5m"});
  EXPECT_EQ(dry_json["dry_run"], true);
  EXPECT_EQ(dry_json["grace_seconds"], 300);
  EXPECT_EQ(dry_json["commits"], 1);
  ExpectRejected(Cairn({"gc", "--grace", "1m"}), "at least");
  ExpectRejected(Cairn({"gc", "--grace", "soon"}), "malformed duration");
  Cli::Outcome gc = Cairn({"gc", "--grace", "10m"});
  ASSERT_EQ(gc.exit_code, 0) << Describe(gc);
  EXPECT_THAT(gc.out, HasSubstr("freed"));
  EXPECT_EQ(Cairn({"data", "cat", "ds", "x.bin"}).out, RandomBytes(200'000, 4));
  ExpectFsckClean();
}

INSTANTIATE_TEST_SUITE_P(Modes, DataCliTest, ::testing::Values(Mode::kEmbedded, Mode::kRemote),
                         [](const ::testing::TestParamInfo<Mode>& info) {
                           return info.param == Mode::kEmbedded ? "Embedded" : "Remote";
                         });

}  // namespace
}  // namespace cairn
