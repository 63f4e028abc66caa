#include "exec/environment.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "base/testing.h"

namespace cairn::exec {
namespace {

using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::StatusIs;
using ::testing::Contains;
using ::testing::Pair;

void WriteFile(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

constexpr char kDpkgStatus[] =
    "Package: python3.11-minimal\n"
    "Status: install ok installed\n"
    "Version: 3.11.2-6+deb12u6\n"
    "\n"
    "Package: libc6\n"
    "Status: install ok installed\n"
    "Version: 2.36-9\n"
    "\n"
    "Package: removed-one\n"
    "Status: deinstall ok config-files\n"
    "Version: 1.0\n";

// A minimal environment folder: os-release, dpkg status, a python3 link and
// packages in two site directories.
class FakeRoot {
 public:
  FakeRoot() {
    WriteFile(root() + "/etc/os-release", "NAME=\"Fake\"\nPRETTY_NAME=\"Fake Linux 1 (test)\"\nID=fake\n");
    WriteFile(root() + "/var/lib/dpkg/status", kDpkgStatus);
    WriteFile(root() + "/usr/bin/python3.11", "\x7f" "ELF not really\n");
    std::filesystem::create_symlink("python3.11", root() + "/usr/bin/python3");
    std::filesystem::create_directories(root() + "/usr/lib/python3.11");
    SetPackage("numpy", "1.24.2");
    WriteFile(root() + "/usr/lib/python3/dist-packages/PyYAML-6.0.dist-info/METADATA",
              "Metadata-Version: 2.1\nName: PyYAML\nVersion: 6.0\n\nName: NotThis\n");
    // An egg-info file (not a directory), as setuptools writes for some packages.
    WriteFile(root() + "/usr/lib/python3/dist-packages/six-1.16.0.egg-info",
              "Metadata-Version: 1.2\nName: six\nVersion: 1.16.0\n");
  }

  const std::string& root() const { return dir_.path(); }

  void SetPackage(const std::string& name, const std::string& version) {
    std::string base = root() + "/usr/lib/python3/dist-packages";
    std::filesystem::create_directories(base);
    std::vector<std::filesystem::path> old;
    for (const auto& e : std::filesystem::directory_iterator(base)) {
      if (e.path().filename().string().starts_with(name + "-")) old.push_back(e.path());
    }
    for (const auto& p : old) std::filesystem::remove_all(p);
    WriteFile(fmt::format("{}/{}-{}.egg-info/PKG-INFO", base, name, version),
              fmt::format("Metadata-Version: 1.2\nName: {}\nVersion: {}\nSummary: x\n", name, version));
  }

 private:
  ScopedTempDir dir_;
};

TEST(CaptureEnvironmentTest, CapturesThisMachine) {
  ASSERT_OK_AND_ASSIGN(EnvironmentInfo env, CaptureEnvironment(""));
  EXPECT_FALSE(env.os.empty());
  EXPECT_FALSE(env.kernel.empty());
  EXPECT_FALSE(env.host.empty());
  EXPECT_FALSE(env.arch.empty());
  ASSERT_TRUE(std::filesystem::exists("/usr/bin/python3"));
  EXPECT_TRUE(env.python.starts_with("3.")) << env.python;
  // python3-numpy is installed on the build machines (scripts/setup.sh).
  auto has_numpy = std::any_of(env.python_packages.begin(), env.python_packages.end(),
                               [](const auto& p) { return p.first == "numpy" && !p.second.empty(); });
  EXPECT_TRUE(has_numpy);
  EXPECT_TRUE(std::is_sorted(env.python_packages.begin(), env.python_packages.end()));
  if (std::filesystem::exists("/var/lib/dpkg/status")) {
    EXPECT_EQ(env.os_packages_digest.size(), 64u);
    EXPECT_GT(env.os_package_count, 0);
  }
}

TEST(CaptureEnvironmentTest, DigestIsStableAcrossCaptures) {
  ASSERT_OK_AND_ASSIGN(EnvironmentInfo a, CaptureEnvironment(""));
  ASSERT_OK_AND_ASSIGN(EnvironmentInfo b, CaptureEnvironment(""));
  EXPECT_EQ(a.Digest(), b.Digest());
  EXPECT_EQ(a.ToJson().dump(), b.ToJson().dump());
  EXPECT_EQ(a.Digest().size(), 64u);
}

TEST(CaptureEnvironmentTest, ReadsAFakeRoot) {
  FakeRoot fake;
  ASSERT_OK_AND_ASSIGN(EnvironmentInfo env, CaptureEnvironment(fake.root()));
  EXPECT_EQ(env.os, "Fake Linux 1 (test)");
  EXPECT_EQ(env.python, "3.11.2");  // from the dpkg status, not the (fake) binary
  EXPECT_EQ(env.os_package_count, 2);
  EXPECT_EQ(env.python_packages,
            (std::vector<std::pair<std::string, std::string>>{
                {"PyYAML", "6.0"}, {"numpy", "1.24.2"}, {"six", "1.16.0"}}));
  Json j = env.ToJson();
  EXPECT_EQ(j["python_packages"]["numpy"], "1.24.2");
  EXPECT_EQ(j["os_package_count"], 2);
}

TEST(CaptureEnvironmentTest, DigestChangesWithAPackageVersion) {
  FakeRoot fake;
  ASSERT_OK_AND_ASSIGN(EnvironmentInfo before, CaptureEnvironment(fake.root()));
  fake.SetPackage("numpy", "1.26.4");
  ASSERT_OK_AND_ASSIGN(EnvironmentInfo after, CaptureEnvironment(fake.root()));
  EXPECT_THAT(after.python_packages, Contains(Pair("numpy", "1.26.4")));
  EXPECT_NE(before.Digest(), after.Digest());
}

TEST(CaptureEnvironmentTest, DigestChangesWithTheDpkgStatus) {
  FakeRoot fake;
  ASSERT_OK_AND_ASSIGN(EnvironmentInfo before, CaptureEnvironment(fake.root()));
  WriteFile(fake.root() + "/var/lib/dpkg/status",
            std::string(kDpkgStatus) + "\nPackage: curl\nStatus: install ok installed\nVersion: 7.88\n");
  ASSERT_OK_AND_ASSIGN(EnvironmentInfo after, CaptureEnvironment(fake.root()));
  EXPECT_EQ(after.os_package_count, 3);
  EXPECT_NE(before.os_packages_digest, after.os_packages_digest);
  EXPECT_NE(before.Digest(), after.Digest());
}

TEST(CaptureEnvironmentTest, DigestIgnoresHostAndKernel) {
  FakeRoot fake;
  ASSERT_OK_AND_ASSIGN(EnvironmentInfo env, CaptureEnvironment(fake.root()));
  EnvironmentInfo other = env;
  other.host = "another-machine";
  other.kernel = "9.9.9";
  EXPECT_EQ(env.Digest(), other.Digest());
  other.arch = "aarch64";
  EXPECT_NE(env.Digest(), other.Digest());
}

TEST(CaptureEnvironmentTest, LocalPackagesShadowDistributionOnes) {
  FakeRoot fake;
  WriteFile(fake.root() + "/usr/local/lib/python3.11/dist-packages/numpy-2.0.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: numpy\nVersion: 2.0.0\n");
  ASSERT_OK_AND_ASSIGN(EnvironmentInfo env, CaptureEnvironment(fake.root()));
  EXPECT_THAT(env.python_packages, Contains(Pair("numpy", "2.0.0")));
  EXPECT_EQ(std::count_if(env.python_packages.begin(), env.python_packages.end(),
                          [](const auto& p) { return p.first == "numpy"; }),
            1);
}

TEST(CaptureEnvironmentTest, PythonVersionFromTheBinaryWithoutDpkg) {
  ScopedTempDir tmp;
  std::string root = tmp.path();
  // CPython embeds PY_VERSION between NUL bytes; other NUL-delimited text must not confuse it.
  static constexpr char kBinary[] = "\x7f" "ELF\0junk\0" "3.12\0" "3.12.4\0more\0";
  WriteFile(root + "/usr/bin/python3.12", std::string(kBinary, sizeof(kBinary) - 1));
  std::filesystem::create_symlink("python3.12", root + "/usr/bin/python3");
  ASSERT_OK_AND_ASSIGN(EnvironmentInfo env, CaptureEnvironment(root));
  EXPECT_EQ(env.python, "3.12.4");
  EXPECT_EQ(env.os_packages_digest, "");
  EXPECT_EQ(env.os_package_count, 0);
  EXPECT_EQ(env.os, "");
}

TEST(CaptureEnvironmentTest, NoPythonLeavesItEmpty) {
  ScopedTempDir tmp;
  WriteFile(tmp.path() + "/etc/os-release", "PRETTY_NAME='Bare'\n");
  ASSERT_OK_AND_ASSIGN(EnvironmentInfo env, CaptureEnvironment(tmp.path()));
  EXPECT_EQ(env.python, "");
  EXPECT_TRUE(env.python_packages.empty());
  EXPECT_EQ(env.os, "Bare");
}

TEST(CaptureEnvironmentTest, InvalidUtf8InMetadataIsCleaned) {
  FakeRoot fake;
  WriteFile(fake.root() + "/usr/lib/python3/dist-packages/bad-1.dist-info/METADATA",
            "Name: b\xff" "ad\nVersion: 1\x01\n");
  ASSERT_OK_AND_ASSIGN(EnvironmentInfo env, CaptureEnvironment(fake.root()));
  EXPECT_THAT(env.python_packages, Contains(Pair("b?ad", "1?")));
  EXPECT_EQ(env.Digest().size(), 64u);  // dump() did not throw
}

TEST(CaptureEnvironmentTest, MissingRootIsNotFound) {
  EXPECT_THAT(CaptureEnvironment("/nonexistent/cairn-env"), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace cairn::exec
