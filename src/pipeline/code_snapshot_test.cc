#include "pipeline/code_snapshot.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "base/sha256.h"
#include "base/testing.h"

namespace cairn::pipeline {
namespace {

namespace fs = std::filesystem;
using ::cairn::testing::ReadFileOrEmpty;
using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

void WriteFile(const std::string& path, const std::string& content) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
}

std::vector<std::string> Paths(const CodeSnapshot& snap) {
  std::vector<std::string> out;
  for (const SnapshotFile& f : snap.files) out.push_back(f.path);
  return out;
}

const SnapshotFile* Find(const CodeSnapshot& snap, const std::string& path) {
  for (const SnapshotFile& f : snap.files) {
    if (f.path == path) return &f;
  }
  return nullptr;
}

// Runs a shell command in `dir`; the test fails if it does.
void Sh(const std::string& dir, const std::string& command) {
  std::string full = "cd '" + dir + "' && " + command + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(full.c_str()), 0) << command;
}

void GitInit(const std::string& dir) {
  Sh(dir, "git init -q . && git config user.email t@example.com && git config user.name T && "
          "git config commit.gpgsign false");
}

void Commit(const std::string& dir) { Sh(dir, "git add -A && git commit -q -m snap"); }

// A small project: code, an executable script, a link, and things that must be left out.
void MakeProject(const std::string& dir) {
  WriteFile(dir + "/train.py", "print('train')\n");
  WriteFile(dir + "/lib/util.py", "X = 1\n");
  WriteFile(dir + "/run.sh", "#!/bin/sh\necho hi\n");
  ::chmod((dir + "/run.sh").c_str(), 0750);
  WriteFile(dir + "/.gitignore", "*.log\nbuild/\n");
  WriteFile(dir + "/debug.log", "noise\n");
  WriteFile(dir + "/build/out.o", "obj\n");
  WriteFile(dir + "/lib/__pycache__/util.cpython-311.pyc", "pyc\n");
  WriteFile(dir + "/cairn-data/cairn.db", "db\n");
  fs::create_symlink("train.py", dir + "/latest.py");
}

TEST(SnapshotCodeTest, FolderOutsideGitHonoursGitignore) {
  ScopedTempDir tmp;
  MakeProject(tmp.path());
  ASSERT_OK_AND_ASSIGN(CodeSnapshot snap, SnapshotCode(tmp.path()));
  EXPECT_THAT(Paths(snap), ElementsAre(".gitignore", "latest.py", "lib/util.py", "run.sh", "train.py"));
  EXPECT_EQ(snap.git_commit, "");
  EXPECT_EQ(snap.git_dirty_digest, "");
  EXPECT_EQ(snap.digest.size(), 64u);
  const SnapshotFile* train = Find(snap, "train.py");
  ASSERT_NE(train, nullptr);
  EXPECT_EQ(train->mode, kRegularFileMode);
  EXPECT_EQ(train->size, 15u);
  EXPECT_EQ(train->sha256, Sha256::Of("print('train')\n").ToHex());
  EXPECT_EQ(Find(snap, "run.sh")->mode, kExecutableFileMode);
  uint64_t total = 0;
  for (const SnapshotFile& f : snap.files) total += f.size;
  EXPECT_EQ(snap.total_bytes, total);
}

TEST(SnapshotCodeTest, SymlinkIsRecordedNotFollowed) {
  ScopedTempDir tmp;
  WriteFile(tmp.path() + "/a.py", "a\n");
  fs::create_symlink("/etc/passwd", tmp.path() + "/outside");
  fs::create_symlink("missing-target", tmp.path() + "/dangling");
  fs::create_directories(tmp.path() + "/realdir");
  WriteFile(tmp.path() + "/realdir/x", "x\n");
  fs::create_directory_symlink("realdir", tmp.path() + "/dirlink");
  ASSERT_OK_AND_ASSIGN(CodeSnapshot snap, SnapshotCode(tmp.path()));
  EXPECT_THAT(Paths(snap), ElementsAre("a.py", "dangling", "dirlink", "outside", "realdir/x"));
  const SnapshotFile* link = Find(snap, "outside");
  EXPECT_EQ(link->mode, kSymlinkMode);
  EXPECT_EQ(link->sha256, Sha256::Of("/etc/passwd").ToHex());
  EXPECT_EQ(link->size, std::string("/etc/passwd").size());
  EXPECT_EQ(Find(snap, "dirlink")->mode, kSymlinkMode);
}

TEST(SnapshotCodeTest, GitignoreForms) {
  ScopedTempDir tmp;
  const std::string d = tmp.path();
  WriteFile(d + "/.gitignore",
            "# a comment\n"
            "\n"
            "*.tmp\n"            // any depth
            "/rootonly.txt\n"    // anchored
            "data/\n"            // directories only
            "**/secret\n"        // any depth, anchored form
            "notes/**\n"         // everything inside
            "keep*.bin\n"
            "!keep-me.bin\n"     // negation
            "docs/*.md\n"        // inner slash: anchored
            "trailing.txt   \n");
  for (const char* f : {"a.tmp", "sub/b.tmp", "rootonly.txt", "sub/rootonly.txt", "data/x.csv", "sub/data/y.csv",
                        "data.py", "secret", "sub/deep/secret", "notes/n1", "notes/sub/n2", "keep1.bin",
                        "keep-me.bin", "docs/a.md", "docs/sub/b.md", "sub/docs/c.md", "trailing.txt", "main.py"}) {
    WriteFile(d + "/" + f, "x");
  }
  WriteFile(d + "/sub/.gitignore", "local.txt\n!b.tmp\n");  // a nested file: applies below sub/ only
  WriteFile(d + "/sub/local.txt", "x");
  WriteFile(d + "/local.txt", "x");
  ASSERT_OK_AND_ASSIGN(CodeSnapshot snap, SnapshotCode(d));
  EXPECT_THAT(Paths(snap), ElementsAre(".gitignore", "data.py", "docs/sub/b.md", "keep-me.bin", "local.txt",
                                       "main.py", "sub/.gitignore", "sub/b.tmp", "sub/docs/c.md",
                                       "sub/rootonly.txt"));
}

TEST(SnapshotCodeTest, IgnoredDirectoryCannotBeReincluded) {
  ScopedTempDir tmp;
  WriteFile(tmp.path() + "/.gitignore", "out/\n!out/keep.txt\n");
  WriteFile(tmp.path() + "/out/keep.txt", "x");
  WriteFile(tmp.path() + "/main.py", "x");
  ASSERT_OK_AND_ASSIGN(CodeSnapshot snap, SnapshotCode(tmp.path()));
  EXPECT_THAT(Paths(snap), ElementsAre(".gitignore", "main.py"));
}

TEST(SnapshotCodeTest, DigestIsStableAndTracksContentModeAndNames) {
  ScopedTempDir tmp;
  MakeProject(tmp.path());
  ASSERT_OK_AND_ASSIGN(CodeSnapshot a, SnapshotCode(tmp.path()));
  ASSERT_OK_AND_ASSIGN(CodeSnapshot b, SnapshotCode(tmp.path()));
  EXPECT_EQ(a.digest, b.digest);

  WriteFile(tmp.path() + "/debug.log", "ignored files do not count\n");
  ASSERT_OK_AND_ASSIGN(CodeSnapshot ignored_edit, SnapshotCode(tmp.path()));
  EXPECT_EQ(ignored_edit.digest, a.digest);

  WriteFile(tmp.path() + "/train.py", "print('train v2')\n");
  ASSERT_OK_AND_ASSIGN(CodeSnapshot edited, SnapshotCode(tmp.path()));
  EXPECT_NE(edited.digest, a.digest);

  ::chmod((tmp.path() + "/lib/util.py").c_str(), 0755);
  ASSERT_OK_AND_ASSIGN(CodeSnapshot chmodded, SnapshotCode(tmp.path()));
  EXPECT_NE(chmodded.digest, edited.digest);

  fs::rename(tmp.path() + "/lib/util.py", tmp.path() + "/lib/utils.py");
  ASSERT_OK_AND_ASSIGN(CodeSnapshot renamed, SnapshotCode(tmp.path()));
  EXPECT_NE(renamed.digest, chmodded.digest);
}

TEST(SnapshotCodeTest, SameTreeSameDigestInAndOutOfGit) {
  ScopedTempDir plain, repo;
  MakeProject(plain.path());
  MakeProject(repo.path());
  GitInit(repo.path());
  Commit(repo.path());
  ASSERT_OK_AND_ASSIGN(CodeSnapshot a, SnapshotCode(plain.path()));
  ASSERT_OK_AND_ASSIGN(CodeSnapshot b, SnapshotCode(repo.path()));
  EXPECT_EQ(Paths(a), Paths(b));
  EXPECT_EQ(a.digest, b.digest);
  EXPECT_EQ(b.git_commit.size(), 40u);
}

TEST(SnapshotCodeTest, GitTreeCommitAndDirtyDigest) {
  ScopedTempDir tmp;
  const std::string d = tmp.path();
  MakeProject(d);
  GitInit(d);
  // Before the first commit: in git, no HEAD, everything is a change.
  ASSERT_OK_AND_ASSIGN(CodeSnapshot unborn, SnapshotCode(d));
  EXPECT_EQ(unborn.git_commit, "");
  EXPECT_NE(unborn.git_dirty_digest, "");

  Commit(d);
  ASSERT_OK_AND_ASSIGN(CodeSnapshot clean, SnapshotCode(d));
  EXPECT_EQ(clean.git_commit.size(), 40u);
  EXPECT_EQ(clean.git_dirty_digest, "");
  EXPECT_THAT(Paths(clean), ElementsAre(".gitignore", "latest.py", "lib/util.py", "run.sh", "train.py"));

  WriteFile(d + "/train.py", "print('edited')\n");
  ASSERT_OK_AND_ASSIGN(CodeSnapshot dirty1, SnapshotCode(d));
  EXPECT_EQ(dirty1.git_commit, clean.git_commit);
  EXPECT_EQ(dirty1.git_dirty_digest.size(), 64u);

  WriteFile(d + "/train.py", "print('edited again')\n");
  ASSERT_OK_AND_ASSIGN(CodeSnapshot dirty2, SnapshotCode(d));
  EXPECT_NE(dirty2.git_dirty_digest, dirty1.git_dirty_digest);

  WriteFile(d + "/new.py", "untracked\n");
  ASSERT_OK_AND_ASSIGN(CodeSnapshot dirty3, SnapshotCode(d));
  EXPECT_NE(dirty3.git_dirty_digest, dirty2.git_dirty_digest);
  EXPECT_NE(Find(dirty3, "new.py"), nullptr);  // untracked, not ignored: part of the snapshot

  WriteFile(d + "/again.log", "ignored\n");
  ASSERT_OK_AND_ASSIGN(CodeSnapshot dirty4, SnapshotCode(d));
  EXPECT_EQ(dirty4.git_dirty_digest, dirty3.git_dirty_digest);
  EXPECT_EQ(dirty4.digest, dirty3.digest);

  Commit(d);
  ASSERT_OK_AND_ASSIGN(CodeSnapshot clean2, SnapshotCode(d));
  EXPECT_EQ(clean2.git_dirty_digest, "");
  EXPECT_NE(clean2.git_commit, clean.git_commit);
}

TEST(SnapshotCodeTest, GitDeletedTrackedFileIsLeftOutAndDirty) {
  ScopedTempDir tmp;
  MakeProject(tmp.path());
  GitInit(tmp.path());
  Commit(tmp.path());
  fs::remove(tmp.path() + "/lib/util.py");
  ASSERT_OK_AND_ASSIGN(CodeSnapshot snap, SnapshotCode(tmp.path()));
  EXPECT_EQ(Find(snap, "lib/util.py"), nullptr);
  EXPECT_NE(snap.git_dirty_digest, "");
}

TEST(SnapshotCodeTest, GitSubfolderSeesOnlyItsFiles) {
  ScopedTempDir tmp;
  const std::string d = tmp.path();
  WriteFile(d + "/top.py", "top\n");
  WriteFile(d + "/proj/a.py", "a\n");
  WriteFile(d + "/proj/sub/b.py", "b\n");
  GitInit(d);
  Commit(d);
  WriteFile(d + "/top.py", "edited outside the folder\n");
  ASSERT_OK_AND_ASSIGN(CodeSnapshot snap, SnapshotCode(d + "/proj"));
  EXPECT_THAT(Paths(snap), ElementsAre("a.py", "sub/b.py"));
  EXPECT_EQ(snap.git_dirty_digest, "");  // the change is outside this folder
  WriteFile(d + "/proj/sub/b.py", "edited\n");
  ASSERT_OK_AND_ASSIGN(CodeSnapshot dirty, SnapshotCode(d + "/proj"));
  EXPECT_NE(dirty.git_dirty_digest, "");
}

TEST(SnapshotCodeTest, GitAlwaysSkipsDataAndCaches) {
  ScopedTempDir tmp;
  const std::string d = tmp.path();
  WriteFile(d + "/main.py", "x\n");
  WriteFile(d + "/cairn-data/objects/ab/cd", "blob\n");
  WriteFile(d + "/pkg/__pycache__/m.pyc", "pyc\n");
  GitInit(d);  // no .gitignore: git itself would list them
  ASSERT_OK_AND_ASSIGN(CodeSnapshot snap, SnapshotCode(d));
  EXPECT_THAT(Paths(snap), ElementsAre("main.py"));
}

TEST(SnapshotCodeTest, CallerGitEnvironmentIsIgnored) {
  ScopedTempDir repo, other;
  MakeProject(repo.path());
  GitInit(repo.path());
  Commit(repo.path());
  GitInit(other.path());
  // As inside a git hook of another repository.
  ::setenv("GIT_DIR", (other.path() + "/.git").c_str(), 1);
  absl::StatusOr<CodeSnapshot> snap = SnapshotCode(repo.path());
  ::unsetenv("GIT_DIR");
  ASSERT_OK(snap);
  EXPECT_EQ(snap->git_commit.size(), 40u);
  EXPECT_THAT(Paths(*snap), Not(IsEmpty()));
}

TEST(SnapshotCodeTest, RefusesTooManyFiles) {
  ScopedTempDir tmp;
  for (int i = 0; i < 12; ++i) WriteFile(fmt::format("{}/data/f{}.csv", tmp.path(), i), "1,2\n");
  WriteFile(tmp.path() + "/main.py", "x\n");
  EXPECT_THAT(SnapshotCode(tmp.path(), SnapshotLimits{.max_files = 10}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("13 files (limit 10)"), HasSubstr("data/ (12 files"),
                             HasSubstr("dataset"))));
  EXPECT_OK(SnapshotCode(tmp.path(), SnapshotLimits{.max_files = 13}));
}

TEST(SnapshotCodeTest, RefusesTooManyBytesBeforeReadingThem) {
  ScopedTempDir tmp;
  WriteFile(tmp.path() + "/main.py", "x\n");
  // A sparse 300 MiB file: refused from its size alone, never read.
  {
    std::ofstream f(tmp.path() + "/model.bin", std::ios::binary);
  }
  ASSERT_EQ(::truncate((tmp.path() + "/model.bin").c_str(), 300ll << 20), 0);
  EXPECT_THAT(SnapshotCode(tmp.path()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("limit 256.0 MiB"), HasSubstr("model.bin (300.0 MiB)"))));
}

TEST(SnapshotCodeTest, MissingOrNonDirectoryProject) {
  EXPECT_THAT(SnapshotCode("/nonexistent/cairn-project"), StatusIs(absl::StatusCode::kNotFound));
  ScopedTempDir tmp;
  WriteFile(tmp.path() + "/file", "x");
  EXPECT_THAT(SnapshotCode(tmp.path() + "/file"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(MaterializeSnapshotTest, RoundTrip) {
  ScopedTempDir tmp;
  const std::string project = tmp.path() + "/project";
  MakeProject(project);
  ASSERT_OK_AND_ASSIGN(CodeSnapshot snap, SnapshotCode(project));
  const std::string dest = tmp.path() + "/copies/run1";
  ASSERT_OK(MaterializeSnapshot(snap, project, dest));
  EXPECT_EQ(ReadFileOrEmpty(dest + "/train.py"), "print('train')\n");
  EXPECT_EQ(ReadFileOrEmpty(dest + "/lib/util.py"), "X = 1\n");
  EXPECT_FALSE(fs::exists(dest + "/debug.log"));
  EXPECT_FALSE(fs::exists(dest + "/cairn-data"));
  EXPECT_TRUE(fs::is_symlink(dest + "/latest.py"));
  EXPECT_EQ(fs::read_symlink(dest + "/latest.py"), "train.py");
  struct stat st;
  ASSERT_EQ(::stat((dest + "/run.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  ASSERT_EQ(::stat((dest + "/train.py").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  // The copy snapshots to the same digest.
  ASSERT_OK_AND_ASSIGN(CodeSnapshot again, SnapshotCode(dest));
  EXPECT_EQ(again.digest, snap.digest);
  // Nothing but `dest` was left in its parent (no temporary folder).
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path() + "/copies"), fs::directory_iterator()), 1);
  // A second materialisation to the same place is refused.
  EXPECT_THAT(MaterializeSnapshot(snap, project, dest), StatusIs(absl::StatusCode::kAlreadyExists));
}

TEST(MaterializeSnapshotTest, DetectsAFileChangedSinceTheSnapshot) {
  ScopedTempDir tmp;
  const std::string project = tmp.path() + "/project";
  MakeProject(project);
  ASSERT_OK_AND_ASSIGN(CodeSnapshot snap, SnapshotCode(project));
  WriteFile(project + "/lib/util.py", "X = 2\n");
  const std::string dest = tmp.path() + "/copy";
  EXPECT_THAT(MaterializeSnapshot(snap, project, dest),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("lib/util.py"), HasSubstr("since the code snapshot was taken"))));
  EXPECT_FALSE(fs::exists(dest));
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 1);  // no leftovers
}

TEST(MaterializeSnapshotTest, DetectsADeletedFileAndAChangedLink) {
  ScopedTempDir tmp;
  const std::string project = tmp.path() + "/project";
  MakeProject(project);
  ASSERT_OK_AND_ASSIGN(CodeSnapshot snap, SnapshotCode(project));
  fs::remove(project + "/run.sh");
  EXPECT_THAT(MaterializeSnapshot(snap, project, tmp.path() + "/c1"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("run.sh")));
  ASSERT_OK_AND_ASSIGN(snap, SnapshotCode(project));
  fs::remove(project + "/latest.py");
  fs::create_symlink("lib/util.py", project + "/latest.py");
  EXPECT_THAT(MaterializeSnapshot(snap, project, tmp.path() + "/c2"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("latest.py")));
}

TEST(MaterializeSnapshotTest, RefusesPathsThatCouldEscape) {
  ScopedTempDir tmp;
  WriteFile(tmp.path() + "/p/a", "a");
  const std::string sha = Sha256::Of("a").ToHex();
  for (const char* bad : {"../a", "/a", "x/../a", "", "x//a", "./a"}) {
    CodeSnapshot snap;
    snap.files.push_back({bad, kRegularFileMode, 1, sha});
    EXPECT_THAT(MaterializeSnapshot(snap, tmp.path() + "/p", tmp.path() + "/out"),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
  // A link that would be a directory of another file: writing through it could escape.
  CodeSnapshot snap;
  snap.files.push_back({"l", kSymlinkMode, 4, Sha256::Of("/tmp").ToHex()});
  snap.files.push_back({"l/x", kRegularFileMode, 1, sha});
  EXPECT_THAT(MaterializeSnapshot(snap, tmp.path() + "/p", tmp.path() + "/out"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("below the file 'l'")));
  EXPECT_FALSE(fs::exists(tmp.path() + "/out"));
}

}  // namespace
}  // namespace cairn::pipeline
