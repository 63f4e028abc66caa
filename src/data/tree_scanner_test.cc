#include "data/tree_scanner.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "base/testing.h"
#include "data/manifest.h"

namespace cairn::data {
namespace {

using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
  ASSERT_TRUE(out.good()) << path;
}

void MakeDir(const std::string& path) { ASSERT_EQ(::mkdir(path.c_str(), 0755), 0) << path; }

void MakeSymlink(const std::string& target, const std::string& link) {
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0) << link;
}

std::string RealPath(const std::string& path) {
  char buf[PATH_MAX];
  EXPECT_NE(::realpath(path.c_str(), buf), nullptr) << path;
  return buf;
}

std::vector<std::string> Paths(const std::vector<ScannedFile>& files) {
  std::vector<std::string> out;
  for (const ScannedFile& f : files) out.push_back(f.path);
  return out;
}

class TreeScannerTest : public ::testing::Test {
 protected:
  // A small tree:
  //   tree/top.txt  tree/a/d.csv  tree/a/b/c.csv  tree/a/b/e.txt  tree/skip/s.csv  tree/empty/
  void SetUp() override {
    root_ = tmp_.path() + "/tree";
    MakeDir(root_);
    WriteFile(root_ + "/top.txt", "top");
    MakeDir(root_ + "/a");
    WriteFile(root_ + "/a/d.csv", "dd");
    MakeDir(root_ + "/a/b");
    WriteFile(root_ + "/a/b/c.csv", "ccc");
    WriteFile(root_ + "/a/b/e.txt", "");
    MakeDir(root_ + "/skip");
    WriteFile(root_ + "/skip/s.csv", "s");
    MakeDir(root_ + "/empty");
  }

  ScopedTempDir tmp_;
  std::string root_;
};

TEST_F(TreeScannerTest, DirectoryArgumentAddsItsContentsSorted) {
  ASSERT_OK_AND_ASSIGN(std::vector<ScannedFile> files, ScanTree({root_}, {}));
  EXPECT_THAT(Paths(files), ElementsAre("a/b/c.csv", "a/b/e.txt", "a/d.csv", "skip/s.csv", "top.txt"));
  for (const ScannedFile& f : files) EXPECT_OK(ValidateDatasetPath(f.path));
}

TEST_F(TreeScannerTest, RecordsAbsoluteDiskPathAndStatData) {
  ASSERT_EQ(::chmod((root_ + "/a/b/c.csv").c_str(), 0640), 0);
  struct stat st;
  ASSERT_EQ(::stat((root_ + "/a/b/c.csv").c_str(), &st), 0);
  // A relative, unnormalised argument still yields absolute disk paths.
  std::string rel_arg = root_ + "/a/../a";
  ASSERT_OK_AND_ASSIGN(std::vector<ScannedFile> files, ScanTree({rel_arg}, {}));
  ASSERT_THAT(Paths(files), ElementsAre("b/c.csv", "b/e.txt", "d.csv"));
  const ScannedFile& f = files[0];
  EXPECT_EQ(f.disk_path, RealPath(root_) + "/a/b/c.csv");
  EXPECT_EQ(f.size, 3u);
  EXPECT_EQ(f.mode, 0640u);
  EXPECT_EQ(f.inode, st.st_ino);
  EXPECT_EQ(f.device, st.st_dev);
  EXPECT_EQ(f.mtime_ns, int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec);
  EXPECT_EQ(f.ctime_ns, int64_t{st.st_ctim.tv_sec} * 1000000000 + st.st_ctim.tv_nsec);
  EXPECT_EQ(files[1].size, 0u);
}

TEST_F(TreeScannerTest, FileArgumentAddsItUnderItsBasename) {
  ASSERT_OK_AND_ASSIGN(std::vector<ScannedFile> files, ScanTree({root_ + "/a/b/c.csv", root_ + "/top.txt"}, {}));
  EXPECT_THAT(Paths(files), ElementsAre("c.csv", "top.txt"));
  EXPECT_EQ(files[0].disk_path, RealPath(root_ + "/a/b/c.csv"));
}

TEST_F(TreeScannerTest, PrefixIsPrependedToEveryPath) {
  ASSERT_OK_AND_ASSIGN(std::vector<ScannedFile> files,
                       ScanTree({root_ + "/a", root_ + "/top.txt"}, {.prefix = "train/x"}));
  EXPECT_THAT(Paths(files), ElementsAre("train/x/b/c.csv", "train/x/b/e.txt", "train/x/d.csv", "train/x/top.txt"));
  ASSERT_OK_AND_ASSIGN(std::vector<ScannedFile> slash, ScanTree({root_ + "/top.txt"}, {.prefix = "train/"}));
  EXPECT_THAT(Paths(slash), ElementsAre("train/top.txt"));
}

TEST_F(TreeScannerTest, BadPrefixIsRejected) {
  EXPECT_THAT(ScanTree({root_}, {.prefix = "../up"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prefix")));
  EXPECT_THAT(ScanTree({root_}, {.prefix = "/abs"}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(TreeScannerTest, IncludeKeepsOnlyMatchesAndExcludeWins) {
  ASSERT_OK_AND_ASSIGN(std::vector<ScannedFile> csv, ScanTree({root_}, {.include = {"**/*.csv"}}));
  EXPECT_THAT(Paths(csv), ElementsAre("a/b/c.csv", "a/d.csv", "skip/s.csv"));
  ASSERT_OK_AND_ASSIGN(std::vector<ScannedFile> some,
                       ScanTree({root_}, {.include = {"**/*.csv", "top.txt"}, .exclude = {"skip/**", "a/d.csv"}}));
  EXPECT_THAT(Paths(some), ElementsAre("a/b/c.csv", "top.txt"));
  ASSERT_OK_AND_ASSIGN(std::vector<ScannedFile> none, ScanTree({root_}, {.exclude = {"**"}}));
  EXPECT_TRUE(none.empty());
}

TEST_F(TreeScannerTest, GlobsMatchThePrefixedPath) {
  ASSERT_OK_AND_ASSIGN(std::vector<ScannedFile> files,
                       ScanTree({root_}, {.include = {"train/a/**"}, .exclude = {"train/a/b/*.txt"}, .prefix = "train"}));
  EXPECT_THAT(Paths(files), ElementsAre("train/a/b/c.csv", "train/a/d.csv"));
}

TEST_F(TreeScannerTest, MalformedGlobIsRejected) {
  EXPECT_THAT(ScanTree({root_}, {.include = {"[abc"}}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("[abc")));
  EXPECT_THAT(ScanTree({root_}, {.exclude = {""}}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(TreeScannerTest, SymlinkToFileInsideTreeIsFollowed) {
  MakeSymlink("b/c.csv", root_ + "/a/link.csv");
  MakeSymlink("../top.txt", root_ + "/a/up.txt");  // leaves a/ but stays in the tree
  ASSERT_OK_AND_ASSIGN(std::vector<ScannedFile> files, ScanTree({root_}, {.include = {"a/*"}}));
  ASSERT_THAT(Paths(files), ElementsAre("a/d.csv", "a/link.csv", "a/up.txt"));
  struct stat target;
  ASSERT_EQ(::stat((root_ + "/a/b/c.csv").c_str(), &target), 0);
  EXPECT_EQ(files[1].disk_path, RealPath(root_) + "/a/link.csv");
  EXPECT_EQ(files[1].size, 3u);
  EXPECT_EQ(files[1].inode, target.st_ino);
  EXPECT_EQ(files[2].size, 3u);  // "top"
}

TEST_F(TreeScannerTest, SymlinkOutsideTreeIsRejected) {
  WriteFile(tmp_.path() + "/outside.txt", "secret");
  MakeSymlink("../../outside.txt", root_ + "/a/out.txt");
  EXPECT_THAT(ScanTree({root_}, {}), StatusIs(absl::StatusCode::kInvalidArgument,
                                              AllOf(HasSubstr("a/out.txt"), HasSubstr("../../outside.txt"),
                                                    HasSubstr("outside the tree"))));
  // Scanning only a/ puts top.txt outside the tree too.
  MakeSymlink("../top.txt", root_ + "/a/up.txt");
  EXPECT_THAT(ScanTree({root_ + "/a"}, {.exclude = {"out.txt"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("up.txt")));
}

TEST_F(TreeScannerTest, DanglingSymlinkIsRejected) {
  MakeSymlink("nowhere.bin", root_ + "/dangling");
  EXPECT_THAT(ScanTree({root_}, {}), StatusIs(absl::StatusCode::kInvalidArgument,
                                              AllOf(HasSubstr("dangling"), HasSubstr("nowhere.bin"))));
}

TEST_F(TreeScannerTest, SymlinkToDirectoryIsRejected) {
  MakeSymlink("a/b", root_ + "/dirlink");
  EXPECT_THAT(ScanTree({root_}, {}), StatusIs(absl::StatusCode::kInvalidArgument,
                                              AllOf(HasSubstr("dirlink"), HasSubstr("directory"))));
}

TEST_F(TreeScannerTest, SymlinkedDirectoryArgumentIsScanned) {
  MakeSymlink(root_ + "/a", tmp_.path() + "/alias");
  ASSERT_OK_AND_ASSIGN(std::vector<ScannedFile> files, ScanTree({tmp_.path() + "/alias"}, {}));
  EXPECT_THAT(Paths(files), ElementsAre("b/c.csv", "b/e.txt", "d.csv"));
  EXPECT_EQ(files[2].disk_path, RealPath(root_) + "/a/d.csv");
}

TEST_F(TreeScannerTest, FifoIsRejected) {
  ASSERT_EQ(::mkfifo((root_ + "/a/pipe").c_str(), 0644), 0);
  EXPECT_THAT(ScanTree({root_}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("a/pipe"), HasSubstr("FIFO"))));
  EXPECT_THAT(ScanTree({root_ + "/a/pipe"}, {}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("FIFO")));
}

TEST_F(TreeScannerTest, SocketIsRejected) {
  std::string path = root_ + "/sock";
  sockaddr_un addr{};
  ASSERT_LT(path.size(), sizeof(addr.sun_path));
  addr.sun_family = AF_UNIX;
  std::copy(path.begin(), path.end(), addr.sun_path);
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(fd);
  EXPECT_THAT(ScanTree({root_}, {}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("socket")));
}

TEST_F(TreeScannerTest, ExcludedSpecialFilesAndBadNamesAreNotErrors) {
  ASSERT_EQ(::mkfifo((root_ + "/a/pipe").c_str(), 0644), 0);
  WriteFile(root_ + "/bad\\name", "x");
  MakeSymlink("nowhere", root_ + "/a/dangling");
  ASSERT_OK_AND_ASSIGN(std::vector<ScannedFile> files,
                       ScanTree({root_}, {.exclude = {"a/pipe", "bad*", "a/dangling"}}));
  EXPECT_THAT(Paths(files), ElementsAre("a/b/c.csv", "a/b/e.txt", "a/d.csv", "skip/s.csv", "top.txt"));
}

TEST_F(TreeScannerTest, ExcludedDirectoryIsNotOpened) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads unreadable directories";
  MakeDir(root_ + "/locked");
  WriteFile(root_ + "/locked/x", "x");
  ASSERT_EQ(::chmod((root_ + "/locked").c_str(), 0), 0);
  auto files = ScanTree({root_}, {.exclude = {"lock*/**"}});
  EXPECT_OK(files);
  EXPECT_THAT(ScanTree({root_}, {}), StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("locked")));
  ASSERT_EQ(::chmod((root_ + "/locked").c_str(), 0755), 0);
}

TEST_F(TreeScannerTest, DuplicateDatasetPathNamesBothDiskPaths) {
  MakeDir(tmp_.path() + "/other");
  WriteFile(tmp_.path() + "/other/top.txt", "other");
  EXPECT_THAT(ScanTree({root_, tmp_.path() + "/other"}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(RealPath(root_) + "/top.txt"), HasSubstr(RealPath(tmp_.path()) + "/other/top.txt"))));
  // The same file named twice is a duplicate too.
  EXPECT_THAT(ScanTree({root_ + "/top.txt", root_ + "/top.txt"}, {}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(TreeScannerTest, FileAndDirectoryOfTheSameNameCollide) {
  // "a" (a file argument) sorts apart from "a/d.csv" because of "a.csv".
  MakeDir(tmp_.path() + "/files");
  WriteFile(tmp_.path() + "/files/a", "file");
  WriteFile(root_ + "/a.csv", "x");
  EXPECT_THAT(ScanTree({root_, tmp_.path() + "/files/a"}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("files/a"), HasSubstr("directory"))));
}

TEST_F(TreeScannerTest, NamesThatAreNotValidDatasetPathsAreRejected) {
  struct Case {
    std::string name;
    std::string reason;
  };
  for (const Case& c : {Case{"back\\slash", "backslash"}, Case{std::string("ctl\x01"), "control"},
                        Case{std::string("bad\xff"), "UTF-8"}}) {
    ScopedTempDir dir;
    WriteFile(dir.path() + "/ok.txt", "x");
    WriteFile(dir.path() + "/" + c.name, "x");
    EXPECT_THAT(ScanTree({dir.path()}, {}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.reason)))
        << c.reason;
  }
}

TEST_F(TreeScannerTest, NonexistentArgumentIsNotFound) {
  std::string missing = tmp_.path() + "/no/such/dir";
  EXPECT_THAT(ScanTree({root_, missing}, {}), StatusIs(absl::StatusCode::kNotFound, HasSubstr(missing)));
}

TEST_F(TreeScannerTest, UnreadableDirectoryIsPermissionDenied) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  ASSERT_EQ(::chmod((root_ + "/a/b").c_str(), 0), 0);
  auto result = ScanTree({root_}, {});
  ASSERT_EQ(::chmod((root_ + "/a/b").c_str(), 0755), 0);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("a/b")));
}

TEST_F(TreeScannerTest, ReportsTheProblemAtTheSmallestPath) {
  ASSERT_EQ(::mkfifo((root_ + "/z_pipe").c_str(), 0644), 0);
  ASSERT_EQ(::mkfifo((root_ + "/a/b/a_pipe").c_str(), 0644), 0);
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(ScanTree({root_}, {}), StatusIs(absl::StatusCode::kInvalidArgument,
                                                AllOf(HasSubstr("a_pipe"), HasSubstr("1 more"))));
  }
}

TEST_F(TreeScannerTest, EmptyDirectoryGivesNoFiles) {
  ASSERT_OK_AND_ASSIGN(std::vector<ScannedFile> files, ScanTree({root_ + "/empty"}, {}));
  EXPECT_TRUE(files.empty());
}

TEST(TreeScannerBigTest, LargeFlatAndDeepTreesAreComplete) {
  // More entries than one stat batch in one directory, plus many small
  // directories, so that both workers share the work.
  ScopedTempDir tmp;
  constexpr int kFlat = 5000;
  MakeDir(tmp.path() + "/flat");
  for (int i = 0; i < kFlat; ++i) WriteFile(tmp.path() + "/flat/f" + std::to_string(i), "");
  constexpr int kDirs = 50;
  for (int d = 0; d < kDirs; ++d) {
    std::string dir = tmp.path() + "/d" + std::to_string(d);
    MakeDir(dir);
    MakeDir(dir + "/sub");
    WriteFile(dir + "/sub/x", "x");
  }
  ASSERT_OK_AND_ASSIGN(std::vector<ScannedFile> files, ScanTree({tmp.path()}, {}));
  ASSERT_EQ(files.size(), size_t{kFlat + kDirs});
  for (size_t i = 1; i < files.size(); ++i) ASSERT_LT(files[i - 1].path, files[i].path);
  EXPECT_EQ(files[0].path, "d0/sub/x");
  EXPECT_EQ(files.back().path, "flat/f999");
}

}  // namespace
}  // namespace cairn::data
