#include "pipeline/code_snapshot.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "base/env.h"
#include "base/ids.h"
#include "base/sha256.h"
#include "data/glob.h"

extern char** environ;

namespace cairn::pipeline {
namespace {

constexpr size_t kCopyBuffer = 256 << 10;
constexpr size_t kMaxGitOutput = 256 << 20;
constexpr size_t kMaxGitignoreBytes = 1 << 20;
// The walk stops listing this many times past the file limit: the error
// only needs to show where the bulk is, not count all of a huge tree.
constexpr uint64_t kListingSlack = 10;

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { Reset(-1); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  int get() const { return fd_; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

absl::Status FileError(std::string_view what, const std::string& path, int err) {
  std::string message = fmt::format("cannot {} {}: {}", what, path, std::strerror(err));
  switch (err) {
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case ENOENT:
      return absl::NotFoundError(message);
    default:
      return absl::InternalError(message);
  }
}

bool IsAlwaysSkippedDir(std::string_view name) {
  return name == ".git" || name == "cairn-data" || name == "__pycache__";
}

// True if any directory segment of `path` (not its last one) is always skipped.
bool InSkippedDir(std::string_view path) {
  size_t start = 0;
  for (size_t slash; (slash = path.find('/', start)) != std::string_view::npos; start = slash + 1) {
    if (IsAlwaysSkippedDir(path.substr(start, slash - start))) return true;
  }
  return false;
}

std::string_view BaseName(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string HumanBytes(uint64_t n) {
  if (n < 1024) return fmt::format("{} B", n);
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = -1;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  return fmt::format("{:.1f} {}", v, units[u]);
}

// ---------------------------------------------------------------------------
// Running git.

struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal
  std::string out;
  std::string err;
};

// Runs `argv` (looked up on PATH) with stdin from /dev/null and the caller's
// environment minus GIT_* variables (a caller running inside a git hook has
// GIT_DIR set, which would point git at another repository). kNotFound when
// the program does not exist.
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (std::strncmp(*e, "GIT_", 4) != 0) envp.push_back(*e);
  }
  envp.push_back(nullptr);

  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return FileError("create a pipe for", argv[0], errno);
  Fd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return FileError("create a pipe for", argv[0], errno);
  Fd err_r(err_pipe[0]), err_w(err_pipe[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, err_w.get(), 2);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return FileError("run", argv[0], rc);
  out_w.Reset(-1);
  err_w.Reset(-1);

  CommandResult result;
  struct pollfd fds[2] = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_count = 2;
  char buf[64 << 10];
  bool overflow = false;
  while (open_count > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        fds[i].fd = -1;
        --open_count;
        continue;
      }
      if (sinks[i]->size() + static_cast<size_t>(n) > kMaxGitOutput) {
        overflow = true;  // keep draining so the child is never blocked
        continue;
      }
      sinks[i]->append(buf, static_cast<size_t>(n));
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (overflow) {
    return absl::ResourceExhaustedError(fmt::format("{} printed more than {}", argv[0], HumanBytes(kMaxGitOutput)));
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::vector<std::string> GitArgs(const std::string& dir, std::initializer_list<std::string> args) {
  std::vector<std::string> argv = {"git", "--no-optional-locks", "-C", dir};
  argv.insert(argv.end(), args);
  return argv;
}

// Pathspecs that keep git from even enumerating the always-skipped trees.
constexpr const char* kSkipPathspecs[] = {".", ":(exclude,glob)**/cairn-data/**",
                                          ":(exclude,glob)**/__pycache__/**"};

std::vector<std::string> SplitNul(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    size_t nul = s.find('\0');
    if (nul == std::string_view::npos) nul = s.size();
    if (nul > 0) out.emplace_back(s.substr(0, nul));
    s.remove_prefix(std::min(s.size(), nul + 1));
  }
  return out;
}

struct GitTree {
  std::string prefix;      // the folder's path inside the work tree ("" or "sub/dir/")
  std::string head;        // "" before the first commit
  std::vector<std::string> paths;
};

// The folder's git view, or nullopt when it is not (readably) in a work tree.
absl::StatusOr<std::optional<GitTree>> ReadGitTree(const std::string& dir) {
  absl::StatusOr<CommandResult> rev = RunCommand(
      GitArgs(dir, {"rev-parse", "--is-inside-work-tree", "--show-prefix", "--verify", "-q", "HEAD"}));
  if (absl::IsNotFound(rev.status())) return std::optional<GitTree>();  // no git installed
  RETURN_IF_ERROR(rev.status());
  // Exit 1 with output: a repository without commits. 128: not a repository.
  std::vector<std::string> lines;
  for (std::string_view s = rev->out; !s.empty();) {
    size_t nl = s.find('\n');
    lines.emplace_back(s.substr(0, nl));
    s.remove_prefix(nl == std::string_view::npos ? s.size() : nl + 1);
  }
  if (rev->exit_code > 1 || lines.size() < 2 || lines[0] != "true") return std::optional<GitTree>();
  GitTree tree;
  tree.prefix = lines[1];
  if (rev->exit_code == 0 && lines.size() >= 3) tree.head = lines[2];

  std::vector<std::string> ls = GitArgs(dir, {"ls-files", "-z", "--cached", "--others", "--exclude-standard", "--"});
  ls.insert(ls.end(), std::begin(kSkipPathspecs), std::end(kSkipPathspecs));
  ASSIGN_OR_RETURN(CommandResult listed, RunCommand(ls));
  if (listed.exit_code != 0) {
    return absl::InternalError(fmt::format("git ls-files in {} failed: {}", dir, listed.err));
  }
  tree.paths = SplitNul(listed.out);
  std::sort(tree.paths.begin(), tree.paths.end());
  // A conflicted path is listed once per stage.
  tree.paths.erase(std::unique(tree.paths.begin(), tree.paths.end()), tree.paths.end());
  return std::optional<GitTree>(std::move(tree));
}

// ---------------------------------------------------------------------------
// .gitignore for folders outside git.

struct IgnoreRule {
  std::string glob;  // data/glob.h syntax, relative to the .gitignore's directory
  bool negate = false;
  bool dir_only = false;
  bool anchored = false;  // matched against the relative path, not the name
};

struct IgnoreFile {
  std::string base;  // the directory holding it: "" or "a/b/"
  std::vector<IgnoreRule> rules;
};

std::vector<IgnoreRule> ParseGitignore(std::string_view text) {
  std::vector<IgnoreRule> rules;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string line(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    // Trailing spaces are dropped unless escaped ("\ ").
    while (!line.empty() && line.back() == ' ' && !(line.size() >= 2 && line[line.size() - 2] == '\\')) {
      line.pop_back();
    }
    IgnoreRule rule;
    if (line[0] == '!') {
      rule.negate = true;
      line.erase(0, 1);
    }
    while (!line.empty() && line.back() == '/') {
      rule.dir_only = true;
      line.pop_back();
    }
    if (line.empty()) continue;
    rule.anchored = line.find('/') != std::string::npos;
    if (line[0] == '/') line.erase(0, 1);
    // Git also writes set negation as "[^...]"; data/glob.h spells it "[!...]".
    for (size_t i = 0; i + 1 < line.size(); ++i) {
      if (line[i] == '\\') {
        ++i;
      } else if (line[i] == '[' && line[i + 1] == '^') {
        line[i + 1] = '!';
      }
    }
    // A pattern git would accept but our glob cannot express is skipped: it
    // can only make the snapshot include more, never fail.
    if (!data::ValidateGlob(line).ok()) continue;
    rule.glob = std::move(line);
    rules.push_back(std::move(rule));
  }
  return rules;
}

bool IsIgnored(const std::vector<IgnoreFile>& stack, std::string_view path, bool is_dir) {
  bool ignored = false;
  for (const IgnoreFile& file : stack) {
    std::string_view subject = path.substr(file.base.size());
    for (const IgnoreRule& rule : file.rules) {
      if (rule.dir_only && !is_dir) continue;
      if (rule.negate != ignored) continue;  // cannot change the outcome
      if (data::MatchGlob(rule.glob, rule.anchored ? subject : BaseName(subject))) ignored = !rule.negate;
    }
  }
  return ignored;
}

// ---------------------------------------------------------------------------
// Listing.

struct Entry {
  std::string path;
  bool is_link = false;
  uint32_t mode = 0;  // snapshot mode
  uint64_t size = 0;
};

// Fills `entry`'s kind, mode and size from an lstat of `name` below
// `dir_fd`; false when it is gone or not a regular file or symlink.
absl::StatusOr<bool> StatEntry(int dir_fd, const std::string& name, const std::string& shown, Entry& entry) {
  struct stat st;
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return false;
    return FileError("stat", shown, errno);
  }
  if (S_ISLNK(st.st_mode)) {
    entry.is_link = true;
    entry.mode = kSymlinkMode;
  } else if (S_ISREG(st.st_mode)) {
    entry.mode = (st.st_mode & 0111) != 0 ? kExecutableFileMode : kRegularFileMode;
  } else {
    return false;  // a directory (submodule), socket, FIFO or device
  }
  entry.size = static_cast<uint64_t>(st.st_size);
  return true;
}

class FolderWalk {
 public:
  FolderWalk(std::string root, uint64_t cap) : root_(std::move(root)), cap_(cap) {}

  absl::Status Run(int root_fd, std::vector<Entry>& out) {
    int fd = ::dup(root_fd);
    if (fd < 0) return FileError("open", root_, errno);
    return Walk(fd, "", out);
  }
  bool truncated() const { return truncated_; }

 private:
  // Takes ownership of `dir_fd`.
  absl::Status Walk(int dir_fd, const std::string& prefix, std::vector<Entry>& out) {
    DIR* dir = ::fdopendir(dir_fd);
    if (dir == nullptr) {
      int err = errno;
      ::close(dir_fd);
      return FileError("open directory", JoinPath(root_, prefix), err);
    }
    std::vector<std::pair<std::string, unsigned char>> names;
    errno = 0;
    while (struct dirent* e = ::readdir(dir)) {
      std::string_view name = e->d_name;
      if (name != "." && name != "..") names.emplace_back(std::string(name), e->d_type);
    }
    absl::Status status = errno != 0 ? FileError("read directory", JoinPath(root_, prefix), errno) : absl::OkStatus();
    if (status.ok()) status = Visit(::dirfd(dir), prefix, names, out);
    ::closedir(dir);
    return status;
  }

  absl::Status Visit(int fd, const std::string& prefix, std::vector<std::pair<std::string, unsigned char>>& names,
                     std::vector<Entry>& out) {
    std::sort(names.begin(), names.end());
    bool pushed = false;
    if (std::any_of(names.begin(), names.end(), [](const auto& n) { return n.first == ".gitignore"; })) {
      Fd f(::openat(fd, ".gitignore", O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      struct stat st;
      if (f.get() >= 0 && ::fstat(f.get(), &st) == 0 && S_ISREG(st.st_mode)) {
        std::string text(std::min<size_t>(static_cast<size_t>(st.st_size), kMaxGitignoreBytes), '\0');
        ssize_t n = ::read(f.get(), text.data(), text.size());
        text.resize(n > 0 ? static_cast<size_t>(n) : 0);
        stack_.push_back({prefix, ParseGitignore(text)});
        pushed = true;
      }
    }
    absl::Status status;
    for (auto& [name, type] : names) {
      if (out.size() >= cap_) {
        truncated_ = true;
        break;
      }
      std::string path = prefix + name;
      if (type == DT_UNKNOWN) {
        struct stat st;
        if (::fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
        type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISLNK(st.st_mode) ? DT_LNK : S_ISREG(st.st_mode) ? DT_REG : DT_FIFO;
      }
      if (type == DT_DIR) {
        if (IsAlwaysSkippedDir(name) || IsIgnored(stack_, path, true)) continue;
        int sub = ::openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
          status = FileError("open directory", JoinPath(root_, path), errno);
          break;
        }
        status = Walk(sub, path + "/", out);
        if (!status.ok()) break;
      } else if (type == DT_REG || type == DT_LNK) {
        if (IsIgnored(stack_, path, false)) continue;
        Entry entry{.path = path};
        absl::StatusOr<bool> present = StatEntry(fd, name, JoinPath(root_, path), entry);
        if (!present.ok()) {
          status = present.status();
          break;
        }
        if (*present) out.push_back(std::move(entry));
      }
    }
    if (pushed) stack_.pop_back();
    return status;
  }

  std::string root_;
  uint64_t cap_;
  bool truncated_ = false;
  std::vector<IgnoreFile> stack_;
};

// The refusal message: totals against the limits, then where the bulk is.
absl::Status OverLimits(const std::string& dir, const std::vector<Entry>& entries, bool truncated,
                        const SnapshotLimits& limits) {
  uint64_t total = 0;
  struct Group {
    uint64_t bytes = 0;
    uint64_t files = 0;
    bool is_dir = false;
  };
  std::map<std::string, Group> groups;  // by top-level entry
  for (const Entry& e : entries) {
    total += e.size;
    size_t slash = e.path.find('/');
    Group& g = groups[e.path.substr(0, slash)];
    g.bytes += e.size;
    ++g.files;
    g.is_dir = slash != std::string::npos;
  }
  const bool too_many = entries.size() > limits.max_files;
  if (!too_many && total <= limits.max_bytes) return absl::OkStatus();

  std::vector<std::pair<std::string, Group>> top(groups.begin(), groups.end());
  std::stable_sort(top.begin(), top.end(), [&](const auto& a, const auto& b) {
    return too_many ? a.second.files > b.second.files : a.second.bytes > b.second.bytes;
  });
  std::vector<std::string> parts;
  for (size_t i = 0; i < top.size() && i < 5; ++i) {
    const auto& [name, g] = top[i];
    parts.push_back(g.is_dir ? fmt::format("{}/ ({} files, {})", name, g.files, HumanBytes(g.bytes))
                             : fmt::format("{} ({})", name, HumanBytes(g.bytes)));
  }
  std::vector<const Entry*> biggest;
  for (const Entry& e : entries) biggest.push_back(&e);
  size_t n = std::min<size_t>(3, biggest.size());
  std::partial_sort(biggest.begin(), biggest.begin() + static_cast<ptrdiff_t>(n), biggest.end(),
                    [](const Entry* a, const Entry* b) { return a->size > b->size; });
  std::vector<std::string> files;
  for (size_t i = 0; i < n; ++i) files.push_back(fmt::format("{} ({})", biggest[i]->path, HumanBytes(biggest[i]->size)));

  return absl::FailedPreconditionError(fmt::format(
      "code snapshot of {} refused: {}{} files (limit {}) and {}{} (limit {}). Biggest entries: {}; biggest files: "
      "{}. Code snapshots are for code: put data in a dataset (cairn data add) and list it in .gitignore.",
      dir, truncated ? "more than " : "", entries.size(), limits.max_files, truncated ? "more than " : "",
      HumanBytes(total), HumanBytes(limits.max_bytes), fmt::join(parts, ", "), fmt::join(files, ", ")));
}

// ---------------------------------------------------------------------------
// Hashing and copying.

// The target of link `path` below `dir_fd`; nullopt when it is gone or no
// longer a link.
absl::StatusOr<std::optional<std::string>> ReadLinkAt(int dir_fd, const std::string& path, const std::string& shown) {
  std::string target(256, '\0');
  for (;;) {
    ssize_t n = ::readlinkat(dir_fd, path.c_str(), target.data(), target.size());
    if (n < 0) {
      if (errno == ENOENT || errno == ENOTDIR || errno == EINVAL) return std::optional<std::string>();
      return FileError("read link", shown, errno);
    }
    if (static_cast<size_t>(n) < target.size()) {
      target.resize(static_cast<size_t>(n));
      return std::optional<std::string>(std::move(target));
    }
    target.resize(target.size() * 2);
  }
}

struct Hashed {
  std::string sha256;
  uint64_t size = 0;
  uint32_t mode = 0;
};

// Reads (and, when `copy_fd` >= 0, copies) one regular file; nullopt when it
// is not a regular file any more.
absl::StatusOr<std::optional<Hashed>> HashFile(int root_fd, const std::string& path, const std::string& shown,
                                               int copy_fd = -1) {
  Fd fd(::openat(root_fd, path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (fd.get() < 0) {
    if (errno == ELOOP || errno == ENOENT || errno == ENOTDIR) return std::optional<Hashed>();
    return FileError("open", shown, errno);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return FileError("stat", shown, errno);
  if (!S_ISREG(st.st_mode)) return std::optional<Hashed>();
  Hashed h;
  h.mode = (st.st_mode & 0111) != 0 ? kExecutableFileMode : kRegularFileMode;
  Sha256 sha;
  std::string buf(kCopyBuffer, '\0');
  for (;;) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return FileError("read", shown, errno);
    }
    if (n == 0) break;
    sha.Update(std::string_view(buf.data(), static_cast<size_t>(n)));
    h.size += static_cast<uint64_t>(n);
    for (ssize_t done = 0; copy_fd >= 0 && done < n;) {
      ssize_t w = ::write(copy_fd, buf.data() + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return FileError("write a copy of", shown, errno);
      done += w;
    }
  }
  h.sha256 = sha.Finish().ToHex();
  return std::optional<Hashed>(std::move(h));
}

std::string SnapshotDigest(const std::vector<SnapshotFile>& files) {
  Sha256 sha;
  sha.Update("cairn-code-1\n");
  for (const SnapshotFile& f : files) {
    sha.Update(f.path);
    sha.Update(std::string_view("\0", 1));
    sha.Update(fmt::format("{:o}", f.mode));
    sha.Update(std::string_view("\0", 1));
    sha.Update(f.sha256);
    sha.Update("\n");
  }
  return sha.Finish().ToHex();
}

// "XY PATH" entries of `git status --porcelain=v1 -z` below the folder, with
// each path's current content digest ("-" when it has none: deleted).
absl::StatusOr<std::string> DirtyDigest(const std::string& dir, const GitTree& tree,
                                        const std::vector<SnapshotFile>& files) {
  std::vector<std::string> args =
      GitArgs(dir, {"status", "--porcelain=v1", "-z", "--no-renames", "--untracked-files=all", "--"});
  args.insert(args.end(), std::begin(kSkipPathspecs), std::end(kSkipPathspecs));
  ASSIGN_OR_RETURN(CommandResult st, RunCommand(args));
  if (st.exit_code != 0) return absl::InternalError(fmt::format("git status in {} failed: {}", dir, st.err));
  std::unordered_map<std::string_view, const SnapshotFile*> by_path;
  for (const SnapshotFile& f : files) by_path.emplace(f.path, &f);
  std::vector<std::pair<std::string, std::string>> changes;  // path below the folder, status letters
  for (const std::string& item : SplitNul(st.out)) {
    if (item.size() < 4 || item[2] != ' ') continue;
    std::string_view path = std::string_view(item).substr(3);  // relative to the work tree's top
    if (!path.starts_with(tree.prefix)) continue;
    path.remove_prefix(tree.prefix.size());
    if (InSkippedDir(path)) continue;
    changes.emplace_back(std::string(path), item.substr(0, 2));
  }
  if (changes.empty()) return std::string();
  std::sort(changes.begin(), changes.end());
  Sha256 sha;
  sha.Update("cairn-dirty-1\n");
  for (const auto& [path, letters] : changes) {
    auto it = by_path.find(path);
    sha.Update(letters);
    sha.Update(std::string_view("\0", 1));
    sha.Update(path);
    sha.Update(std::string_view("\0", 1));
    sha.Update(it == by_path.end() ? "-" : it->second->sha256);
    sha.Update("\n");
  }
  return sha.Finish().ToHex();
}

absl::Status ValidateSnapshotPaths(const CodeSnapshot& snap) {
  std::unordered_set<std::string_view> leaves;
  for (const SnapshotFile& f : snap.files) {
    std::string_view p = f.path;
    bool ok = !p.empty() && p.front() != '/' && p.back() != '/' && p.find('\0') == std::string_view::npos;
    for (size_t start = 0; ok && start <= p.size();) {
      size_t slash = p.find('/', start);
      if (slash == std::string_view::npos) slash = p.size();
      std::string_view seg = p.substr(start, slash - start);
      ok = !seg.empty() && seg != "." && seg != "..";
      start = slash + 1;
    }
    if (!ok) return absl::InvalidArgumentError(fmt::format("code snapshot lists an invalid path '{}'", f.path));
    if (f.mode != kRegularFileMode && f.mode != kExecutableFileMode && f.mode != kSymlinkMode) {
      return absl::InvalidArgumentError(fmt::format("code snapshot lists '{}' with invalid mode {:o}", f.path, f.mode));
    }
    if (!leaves.insert(p).second) {
      return absl::InvalidArgumentError(fmt::format("code snapshot lists '{}' twice", f.path));
    }
  }
  // No listed file or link may be a directory of another path: then every
  // directory created below `dest` is a real one and no write can be
  // redirected through a link.
  for (const SnapshotFile& f : snap.files) {
    std::string_view p = f.path;
    for (size_t slash = p.find('/'); slash != std::string_view::npos; slash = p.find('/', slash + 1)) {
      if (leaves.contains(p.substr(0, slash))) {
        return absl::InvalidArgumentError(
            fmt::format("code snapshot lists '{}' below the file '{}'", f.path, p.substr(0, slash)));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Changed(const std::string& path, std::string_view how) {
  return absl::FailedPreconditionError(
      fmt::format("{} {} since the code snapshot was taken; start the run again to snapshot the current code", path,
                  how));
}

// Creates the directories of `path` below `root_fd`.
absl::Status MakeParents(int root_fd, const std::string& path, const std::string& root,
                         std::unordered_set<std::string>& made) {
  for (size_t slash = path.find('/'); slash != std::string::npos; slash = path.find('/', slash + 1)) {
    std::string dir = path.substr(0, slash);
    if (made.contains(dir)) continue;
    if (::mkdirat(root_fd, dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return FileError("create directory", JoinPath(root, dir), errno);
    }
    made.insert(std::move(dir));
  }
  return absl::OkStatus();
}

absl::Status CopyInto(const CodeSnapshot& snap, int src_fd, const std::string& project_dir, int dst_fd,
                      const std::string& dest) {
  std::unordered_set<std::string> made;
  // Regular files first, links last: no link exists below `dest` while
  // anything is being written there.
  for (bool links : {false, true}) {
    for (const SnapshotFile& f : snap.files) {
      if ((f.mode == kSymlinkMode) != links) continue;
      const std::string shown = JoinPath(project_dir, f.path);
      RETURN_IF_ERROR(MakeParents(dst_fd, f.path, dest, made));
      if (links) {
        ASSIGN_OR_RETURN(std::optional<std::string> target, ReadLinkAt(src_fd, f.path, shown));
        if (!target) return Changed(shown, "was deleted or replaced");
        if (Sha256::Of(*target).ToHex() != f.sha256) return Changed(shown, "(a symlink) was changed");
        if (::symlinkat(target->c_str(), dst_fd, f.path.c_str()) != 0) {
          return FileError("create link", JoinPath(dest, f.path), errno);
        }
        continue;
      }
      const mode_t mode = f.mode == kExecutableFileMode ? 0755 : 0644;
      Fd out(::openat(dst_fd, f.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
      if (out.get() < 0) return FileError("create", JoinPath(dest, f.path), errno);
      if (::fchmod(out.get(), mode) != 0) return FileError("chmod", JoinPath(dest, f.path), errno);
      ASSIGN_OR_RETURN(std::optional<Hashed> h, HashFile(src_fd, f.path, shown, out.get()));
      if (!h) return Changed(shown, "was deleted or replaced");
      if (h->sha256 != f.sha256 || h->size != f.size) {
        return Changed(shown, fmt::format("was modified (sha256 {} at the snapshot, now {})", f.sha256, h->sha256));
      }
      // close() reports delayed write errors (e.g. a full disk on NFS).
      if (::close(out.Release()) != 0) return FileError("write", JoinPath(dest, f.path), errno);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CodeSnapshot> SnapshotCode(const std::string& project_dir) {
  return SnapshotCode(project_dir, SnapshotLimits());
}

absl::StatusOr<CodeSnapshot> SnapshotCode(const std::string& project_dir, const SnapshotLimits& limits) {
  Fd root(::open(project_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (root.get() < 0) {
    if (errno == ENOTDIR) {
      return absl::InvalidArgumentError(fmt::format("project folder {} is not a directory", project_dir));
    }
    return FileError("open project folder", project_dir, errno);
  }

  CodeSnapshot snap;
  std::vector<Entry> entries;
  bool truncated = false;
  ASSIGN_OR_RETURN(std::optional<GitTree> git, ReadGitTree(project_dir));
  if (git) {
    snap.git_commit = git->head;
    for (std::string& path : git->paths) {
      if (InSkippedDir(path)) continue;
      Entry e{.path = std::move(path)};
      ASSIGN_OR_RETURN(bool present, StatEntry(root.get(), e.path, JoinPath(project_dir, e.path), e));
      if (present) entries.push_back(std::move(e));
    }
  } else {
    FolderWalk walk(project_dir, std::max<uint64_t>(limits.max_files, 1) * kListingSlack);
    RETURN_IF_ERROR(walk.Run(root.get(), entries));
    truncated = walk.truncated();
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.path < b.path; });
  }
  RETURN_IF_ERROR(OverLimits(project_dir, entries, truncated, limits));

  snap.files.reserve(entries.size());
  for (const Entry& e : entries) {
    const std::string shown = JoinPath(project_dir, e.path);
    SnapshotFile f{.path = e.path, .mode = e.mode};
    if (e.is_link) {
      ASSIGN_OR_RETURN(std::optional<std::string> target, ReadLinkAt(root.get(), e.path, shown));
      if (!target) continue;  // deleted while we looked
      f.size = target->size();
      f.sha256 = Sha256::Of(*target).ToHex();
    } else {
      ASSIGN_OR_RETURN(std::optional<Hashed> h, HashFile(root.get(), e.path, shown));
      if (!h) continue;  // deleted or replaced by a link while we looked
      f.mode = h->mode;
      f.size = h->size;
      f.sha256 = std::move(h->sha256);
    }
    snap.total_bytes += f.size;
    snap.files.push_back(std::move(f));
  }
  // Files that grew while being hashed are caught here.
  if (snap.total_bytes > limits.max_bytes) {
    return absl::FailedPreconditionError(fmt::format("code snapshot of {} refused: {} (limit {})", project_dir,
                                                     HumanBytes(snap.total_bytes), HumanBytes(limits.max_bytes)));
  }
  snap.digest = SnapshotDigest(snap.files);
  if (git) {
    ASSIGN_OR_RETURN(snap.git_dirty_digest, DirtyDigest(project_dir, *git, snap.files));
  }
  return snap;
}

absl::Status MaterializeSnapshot(const CodeSnapshot& snap, const std::string& project_dir, const std::string& dest) {
  RETURN_IF_ERROR(ValidateSnapshotPaths(snap));
  std::string target = dest;
  while (target.size() > 1 && target.back() == '/') target.pop_back();
  struct stat st;
  if (::lstat(target.c_str(), &st) == 0) {
    return absl::AlreadyExistsError(fmt::format("cannot materialize the code snapshot: {} exists", dest));
  }
  std::error_code ec;
  std::filesystem::create_directories(DirName(target), ec);
  if (ec) return FileError("create directory", DirName(target), ec.value());

  Fd src(::open(project_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (src.get() < 0) return FileError("open project folder", project_dir, errno);
  const std::string tmp = fmt::format("{}.tmp-{}", target, NewRandomHex(8));
  if (::mkdir(tmp.c_str(), 0755) != 0) return FileError("create directory", tmp, errno);
  absl::Status status;
  {
    Fd dst(::open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    status = dst.get() < 0 ? FileError("open", tmp, errno) : CopyInto(snap, src.get(), project_dir, dst.get(), dest);
  }
  if (status.ok() && ::rename(tmp.c_str(), target.c_str()) != 0) {
    int err = errno;
    status = err == EEXIST || err == ENOTEMPTY
                 ? absl::AlreadyExistsError(fmt::format("cannot materialize the code snapshot: {} exists", dest))
                 : FileError("rename into", target, err);
  }
  if (!status.ok()) std::filesystem::remove_all(tmp, ec);
  return status;
}

}  // namespace cairn::pipeline
