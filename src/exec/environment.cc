#include "exec/environment.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <string_view>

#include <fmt/format.h>

#include "base/sha256.h"

namespace cairn::exec {
namespace {

// Bumped whenever what Digest() covers changes, so that old cache entries
// are missed instead of matched by accident.
constexpr char kDigestFormat[] = "cairn-environment-1";

// Package metadata headers sit at the top of METADATA / PKG-INFO; the long
// description after them can be megabytes and is never needed.
constexpr size_t kMetadataHeadBytes = 16 << 10;
// Field values are clipped: they only identify, and outside files must not
// blow up a run record.
constexpr size_t kMaxFieldBytes = 256;
constexpr size_t kMaxDpkgStatusBytes = 256 << 20;
constexpr size_t kMaxInterpreterBytes = 128 << 20;
constexpr int kMaxSymlinkHops = 8;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

absl::Status ReadError(const std::string& path, int err) {
  std::string message = fmt::format("cannot read {}: {}", path, std::strerror(err));
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(message);
  return absl::InternalError(message);
}

bool IsMissing(int err) { return err == ENOENT || err == ENOTDIR || err == ELOOP; }

// Up to `max_bytes` of the file at `path`; nullopt when it does not exist.
absl::StatusOr<std::optional<std::string>> ReadFileHead(const std::string& path, size_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (IsMissing(errno) || errno == EISDIR) return std::optional<std::string>();
    return ReadError(path, errno);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ReadError(path, errno);
  if (!S_ISREG(st.st_mode)) return std::optional<std::string>();
  std::string out;
  out.resize(std::min<uint64_t>(static_cast<uint64_t>(st.st_size), max_bytes));
  size_t filled = 0;
  while (filled < out.size()) {
    ssize_t n = ::pread(fd.get(), out.data() + filled, out.size() - filled, static_cast<off_t>(filled));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ReadError(path, errno);
    }
    if (n == 0) break;  // shrank while we read: keep what was there
    filled += static_cast<size_t>(n);
  }
  out.resize(filled);
  return std::optional<std::string>(std::move(out));
}

// Entry names of directory `path` ("" names skipped); empty when it does not exist.
absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) {
    if (IsMissing(errno)) return names;
    return ReadError(path, errno);
  }
  errno = 0;
  while (struct dirent* e = ::readdir(dir)) {
    std::string_view name = e->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  int err = errno;
  ::closedir(dir);
  if (err != 0) return ReadError(path, err);
  return names;
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Values come from files anyone could have written: keep them valid UTF-8
// without control characters (Json::dump() throws on invalid UTF-8) and short.
std::string CleanField(std::string_view in) {
  std::string out;
  size_t i = 0;
  while (i < in.size() && out.size() < kMaxFieldBytes) {
    const auto c = static_cast<unsigned char>(in[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool valid = len > 0 && i + len <= in.size();
    for (size_t k = 1; valid && k < len; ++k) valid = (static_cast<unsigned char>(in[i + k]) & 0xC0) == 0x80;
    if (!valid || (len == 1 && (c < 0x20 || c == 0x7F))) {
      out += '?';
      ++i;
      continue;
    }
    out.append(in.substr(i, len));
    i += len;
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Calls `fn(line)` for each '\n'-separated line of `text`; stops when it returns false.
template <typename Fn>
void ForEachLine(std::string_view text, Fn fn) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (!fn(line)) return;
    if (nl == std::string_view::npos) return;
    text.remove_prefix(nl + 1);
  }
}

// os-release values may be quoted ("..." or '...') with backslash escapes.
std::string UnquoteOsReleaseValue(std::string_view v) {
  v = Trim(v);
  if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) {
    v = v.substr(1, v.size() - 2);
  }
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\\' && i + 1 < v.size()) ++i;
    out += v[i];
  }
  return out;
}

absl::StatusOr<std::string> ReadOsName(const std::string& root) {
  for (const char* rel : {"/etc/os-release", "/usr/lib/os-release"}) {
    ASSIGN_OR_RETURN(std::optional<std::string> text, ReadFileHead(root + rel, 64 << 10));
    if (!text) continue;
    std::string name;
    ForEachLine(*text, [&](std::string_view line) {
      if (line.substr(0, 12) != "PRETTY_NAME=") return true;
      name = CleanField(UnquoteOsReleaseValue(line.substr(12)));
      return false;
    });
    return name;
  }
  return std::string();
}

// The stanza of installed package `package` in a dpkg status file, or "".
std::string_view FindDpkgStanza(std::string_view status, std::string_view package) {
  std::string needle = fmt::format("Package: {}\n", package);
  size_t pos = 0;
  while ((pos = status.find(needle, pos)) != std::string_view::npos) {
    if (pos == 0 || status[pos - 1] == '\n') {
      size_t end = status.find("\n\n", pos);
      return status.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos + 1);
    }
    pos += needle.size();
  }
  return {};
}

std::string DpkgField(std::string_view stanza, std::string_view field) {
  std::string value;
  ForEachLine(stanza, [&](std::string_view line) {
    if (line.size() > field.size() && line.substr(0, field.size()) == field && line[field.size()] == ':') {
      value = std::string(Trim(line.substr(field.size() + 1)));
      return false;
    }
    return true;
  });
  return value;
}

// Debian version "1:3.11.2-6+deb12u6" -> upstream "3.11.2".
std::string UpstreamVersion(std::string_view v) {
  if (size_t colon = v.find(':'); colon != std::string_view::npos) v.remove_prefix(colon + 1);
  if (size_t dash = v.rfind('-'); dash != std::string_view::npos) v = v.substr(0, dash);
  return std::string(v);
}

int CountInstalledPackages(std::string_view status) {
  int count = 0;
  ForEachLine(status, [&](std::string_view line) {
    line = Trim(line);
    if (line.substr(0, 8) == "Status: " && line.size() >= 10 && line.substr(line.size() - 10) == " installed") {
      ++count;
    }
    return true;
  });
  return count;
}

bool IsDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "python3.11" -> "3.11"; "" for anything else.
std::string MinorFromName(std::string_view name) {
  if (name.substr(0, 6) != "python") return "";
  std::string_view v = name.substr(6);
  size_t dot = v.find('.');
  if (dot == std::string_view::npos || v.substr(0, dot) != "3" || !IsDigits(v.substr(dot + 1))) return "";
  return std::string(v);
}

struct Interpreter {
  std::string binary;  // the file the python3 link chain ends at (host path)
  std::string minor;   // "3.11", or "" when no link in the chain says
};

// Follows usr/bin/python3's symlinks inside `root` (absolute targets are
// taken relative to the root, as they would resolve inside a sandbox).
std::optional<Interpreter> FindInterpreter(const std::string& root) {
  std::string rel = "/usr/bin/python3";
  Interpreter found;
  for (int hop = 0; hop <= kMaxSymlinkHops; ++hop) {
    std::string path = root + rel;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
    std::string_view base = std::string_view(rel).substr(rel.rfind('/') + 1);
    if (found.minor.empty()) found.minor = MinorFromName(base);
    if (S_ISREG(st.st_mode)) {
      found.binary = path;
      return found;
    }
    if (!S_ISLNK(st.st_mode)) return std::nullopt;
    char target[4096];
    ssize_t n = ::readlink(path.c_str(), target, sizeof(target) - 1);
    if (n <= 0) return std::nullopt;
    std::string t(target, static_cast<size_t>(n));
    rel = t.front() == '/' ? t : rel.substr(0, rel.rfind('/') + 1) + t;
  }
  return std::nullopt;  // a link loop: no usable interpreter
}

// The version string CPython embeds (PY_VERSION, e.g. "3.11.2" between NUL
// bytes) in its binary; "" unless exactly one candidate is found.
std::string VersionInBinary(std::string_view binary, const std::string& minor) {
  std::string prefix = std::string(1, '\0') + (minor.empty() ? std::string("3.") : minor + ".");
  std::string found;
  size_t pos = 0;
  while ((pos = binary.find(prefix, pos)) != std::string_view::npos) {
    size_t start = pos + 1;
    size_t end = binary.find('\0', start);
    pos = start;
    if (end == std::string_view::npos || end - start > 24) continue;
    std::string_view cand = binary.substr(start, end - start);
    // "3.11.2", "3.12.0rc1", "3.11.2+": digits.digits.digits then a short tag.
    size_t i = 0;
    int dots = 0;
    while (i < cand.size() && ((cand[i] >= '0' && cand[i] <= '9') || cand[i] == '.')) dots += cand[i++] == '.';
    bool tail_ok = std::all_of(cand.begin() + static_cast<ptrdiff_t>(i), cand.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+';
    });
    if (dots != 2 || cand[i - 1] == '.' || !tail_ok) continue;
    if (!found.empty() && found != cand) return "";
    found = std::string(cand);
  }
  return found;
}

absl::StatusOr<std::string> PythonVersion(const std::string& root, const Interpreter& py,
                                          std::string_view dpkg_status) {
  if (!py.minor.empty()) {
    for (const std::string& pkg : {"python" + py.minor + "-minimal", "python" + py.minor}) {
      std::string_view stanza = FindDpkgStanza(dpkg_status, pkg);
      std::string version = UpstreamVersion(DpkgField(stanza, "Version"));
      if (!version.empty() && DpkgField(stanza, "Status").ends_with(" installed") &&
          version.starts_with(py.minor + ".")) {
        return CleanField(version);
      }
    }
    ASSIGN_OR_RETURN(std::optional<std::string> header,
                     ReadFileHead(fmt::format("{}/usr/include/python{}/patchlevel.h", root, py.minor), 64 << 10));
    if (header) {
      std::string version;
      ForEachLine(*header, [&](std::string_view line) {
        if (!line.starts_with("#define PY_VERSION ")) return true;
        size_t q1 = line.find('"');
        size_t q2 = q1 == std::string_view::npos ? q1 : line.find('"', q1 + 1);
        if (q2 != std::string_view::npos) version = std::string(line.substr(q1 + 1, q2 - q1 - 1));
        return false;
      });
      if (version.starts_with(py.minor + ".")) return CleanField(version);
    }
  }
  // A Python built from source or by another distribution: ask the binary itself.
  ASSIGN_OR_RETURN(std::optional<std::string> binary, ReadFileHead(py.binary, kMaxInterpreterBytes));
  std::string version = binary ? VersionInBinary(*binary, py.minor) : "";
  if (!version.empty()) return CleanField(version);
  return py.minor.empty() ? std::string("3") : py.minor;
}

// PEP 503: lower case, runs of '-', '_', '.' as one '-'.
std::string NormalizeName(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c == '-' || c == '_' || c == '.') {
      if (out.empty() || out.back() != '-') out += '-';
    } else {
      out += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
  }
  return out;
}

// Name and Version from a METADATA / PKG-INFO header (RFC 822 style, ends at
// the first empty line).
std::pair<std::string, std::string> ParseMetadataHead(std::string_view text) {
  std::string name, version;
  ForEachLine(text, [&](std::string_view line) {
    if (Trim(line).empty()) return false;
    if (line.starts_with("Name:")) name = std::string(Trim(line.substr(5)));
    if (line.starts_with("Version:")) version = std::string(Trim(line.substr(8)));
    return name.empty() || version.empty();
  });
  return {name, version};
}

// "numpy-1.24.2.egg-info", "foo_bar-1.0-py3.11.egg-info", "PyYAML-6.0.dist-info"
// -> name and version, for a metadata directory without a readable header.
std::pair<std::string, std::string> ParseMetadataDirName(std::string_view stem) {
  size_t dash = stem.find('-');
  if (dash == std::string_view::npos) return {std::string(stem), ""};
  std::string_view version = stem.substr(dash + 1);
  if (size_t py = version.find("-py"); py != std::string_view::npos) version = version.substr(0, py);
  return {std::string(stem.substr(0, dash)), std::string(version)};
}

// Adds the packages of one site directory to `by_name` (normalised name ->
// (name, version)); names already present (earlier on sys.path) win.
absl::Status ScanSiteDir(const std::string& dir, std::map<std::string, std::pair<std::string, std::string>>& by_name) {
  ASSIGN_OR_RETURN(std::vector<std::string> entries, ListDir(dir));
  std::sort(entries.begin(), entries.end());  // readdir order must not pick between duplicates
  for (const std::string& entry : entries) {
    std::string_view e = entry;
    std::string header_path;
    std::string_view stem;
    if (e.ends_with(".dist-info")) {
      stem = e.substr(0, e.size() - 10);
      header_path = fmt::format("{}/{}/METADATA", dir, entry);
    } else if (e.ends_with(".egg-info")) {
      stem = e.substr(0, e.size() - 9);
      std::string path = fmt::format("{}/{}", dir, entry);
      header_path = IsDirectory(path) ? path + "/PKG-INFO" : path;
    } else {
      continue;
    }
    ASSIGN_OR_RETURN(std::optional<std::string> head, ReadFileHead(header_path, kMetadataHeadBytes));
    auto [name, version] = head ? ParseMetadataHead(*head) : std::pair<std::string, std::string>();
    if (name.empty() || version.empty()) std::tie(name, version) = ParseMetadataDirName(stem);
    name = CleanField(name);
    if (name.empty()) continue;
    by_name.try_emplace(NormalizeName(name), name, CleanField(version));
  }
  return absl::OkStatus();
}

// The "python3.N" directories under `dir` (used when no interpreter names one).
absl::StatusOr<std::vector<std::string>> PythonMinorsIn(const std::string& dir) {
  ASSIGN_OR_RETURN(std::vector<std::string> entries, ListDir(dir));
  std::vector<std::string> minors;
  for (const std::string& e : entries) {
    if (std::string m = MinorFromName(e); !m.empty()) minors.push_back(m);
  }
  return minors;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> PythonPackages(const std::string& root,
                                                                                const std::string& minor) {
  std::vector<std::string> minors;
  if (!minor.empty()) {
    minors.push_back(minor);
  } else {
    ASSIGN_OR_RETURN(minors, PythonMinorsIn(root + "/usr/lib"));
    ASSIGN_OR_RETURN(std::vector<std::string> local, PythonMinorsIn(root + "/usr/local/lib"));
    minors.insert(minors.end(), local.begin(), local.end());
    std::sort(minors.begin(), minors.end());
    minors.erase(std::unique(minors.begin(), minors.end()), minors.end());
  }
  // Debian's sys.path order.
  std::vector<std::string> dirs;
  for (const std::string& m : minors) {
    dirs.push_back(fmt::format("{}/usr/local/lib/python{}/dist-packages", root, m));
    dirs.push_back(fmt::format("{}/usr/local/lib/python{}/site-packages", root, m));
  }
  for (const std::string& m : minors) dirs.push_back(fmt::format("{}/usr/lib/python{}/site-packages", root, m));
  dirs.push_back(root + "/usr/lib/python3/dist-packages");

  std::map<std::string, std::pair<std::string, std::string>> by_name;
  for (const std::string& d : dirs) RETURN_IF_ERROR(ScanSiteDir(d, by_name));
  std::vector<std::pair<std::string, std::string>> packages;
  packages.reserve(by_name.size());
  for (auto& [normalized, entry] : by_name) packages.push_back(std::move(entry));
  std::sort(packages.begin(), packages.end());
  return packages;
}

}  // namespace

Json EnvironmentInfo::ToJson() const {
  Json packages = Json::object();
  for (const auto& [name, version] : python_packages) packages[name] = version;
  return Json{
      {"os", os},
      {"kernel", kernel},
      {"host", host},
      {"arch", arch},
      {"python", python},
      {"python_packages", std::move(packages)},
      {"os_packages_digest", os_packages_digest},
      {"os_package_count", os_package_count},
  };
}

std::string EnvironmentInfo::Digest() const {
  Json j = ToJson();
  j.erase("host");
  j.erase("kernel");
  j["format"] = kDigestFormat;
  return Sha256::Of(j.dump()).ToHex();
}

absl::StatusOr<EnvironmentInfo> CaptureEnvironment(const std::string& root_dir) {
  std::string root = root_dir;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (root == "/") root.clear();
  if (!root.empty() && !IsDirectory(root)) {
    return absl::NotFoundError(fmt::format("environment folder {} is not a directory", root_dir));
  }

  EnvironmentInfo info;
  struct utsname u;
  if (::uname(&u) == 0) {
    info.kernel = CleanField(u.release);
    info.host = CleanField(u.nodename);
    info.arch = CleanField(u.machine);
  }
  ASSIGN_OR_RETURN(info.os, ReadOsName(root));

  std::string dpkg_path = root + "/var/lib/dpkg/status";
  ASSIGN_OR_RETURN(std::optional<std::string> dpkg_status, ReadFileHead(dpkg_path, kMaxDpkgStatusBytes));
  if (dpkg_status) {
    info.os_packages_digest = Sha256::Of(*dpkg_status).ToHex();
    info.os_package_count = CountInstalledPackages(*dpkg_status);
  }

  std::string minor;
  if (std::optional<Interpreter> py = FindInterpreter(root)) {
    ASSIGN_OR_RETURN(info.python, PythonVersion(root, *py, dpkg_status ? *dpkg_status : std::string_view()));
    minor = py->minor;
    if (minor.empty() && std::count(info.python.begin(), info.python.end(), '.') >= 1) {
      minor = info.python.substr(0, info.python.find('.', 2));
    }
  }
  ASSIGN_OR_RETURN(info.python_packages, PythonPackages(root, minor));
  return info;
}

}  // namespace cairn::exec
