#include "data/tree_scanner.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <variant>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "data/glob.h"
#include "data/internal/scoped_fd.h"
#include "data/manifest.h"

namespace cairn::data {
namespace {

// Directories with more entries than this are stat'ed in batches of this
// size, so both threads can work on one huge flat directory.
constexpr size_t kStatBatch = 2048;
constexpr int kMaxThreads = 2;

std::string ErrnoText(int err) { return std::generic_category().message(err); }

absl::Status ErrnoStatus(int err, std::string message) {
  return absl::Status(absl::ErrnoToStatusCode(err), fmt::format("{}: {}", message, ErrnoText(err)));
}

// Owns a file descriptor.
using Fd = internal::ScopedFd;

// realpath(3) as a std::string; errno is preserved on failure.
bool RealPath(const std::string& path, std::string* out) {
  char* resolved = ::realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return false;
  *out = resolved;
  std::free(resolved);
  return true;
}

std::string ReadLinkAt(int dir_fd, const char* name) {
  char buf[PATH_MAX];
  ssize_t n = ::readlinkat(dir_fd, name, buf, sizeof(buf));
  if (n < 0) return "?";
  return std::string(buf, static_cast<size_t>(n));
}

const char* SpecialFileKind(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

int64_t ToNanos(const struct timespec& ts) { return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec; }

ScannedFile FromStat(std::string path, std::string disk_path, const struct stat& st) {
  ScannedFile f;
  f.path = std::move(path);
  f.disk_path = std::move(disk_path);
  f.size = static_cast<uint64_t>(st.st_size);
  f.mode = static_cast<uint32_t>(st.st_mode & 07777);
  f.mtime_ns = ToNanos(st.st_mtim);
  f.ctime_ns = ToNanos(st.st_ctim);
  f.inode = static_cast<uint64_t>(st.st_ino);
  f.device = static_cast<uint64_t>(st.st_dev);
  return f;
}

class Filters {
 public:
  explicit Filters(const ScanOptions& options) : include_(options.include), exclude_(options.exclude) {
    for (const std::string& e : exclude_) {
      // `P/**` covers everything below any directory matching P.
      if (e.size() > 3 && e.compare(e.size() - 3, 3, "/**") == 0) prune_.push_back(e.substr(0, e.size() - 3));
    }
  }

  absl::Status Validate() const {
    for (const std::string& g : include_) RETURN_IF_ERROR(ValidateGlob(g));
    for (const std::string& g : exclude_) RETURN_IF_ERROR(ValidateGlob(g));
    return absl::OkStatus();
  }

  bool Keep(std::string_view path) const {
    if (!include_.empty() &&
        std::none_of(include_.begin(), include_.end(), [&](const std::string& g) { return MatchGlob(g, path); })) {
      return false;
    }
    return std::none_of(exclude_.begin(), exclude_.end(), [&](const std::string& g) { return MatchGlob(g, path); });
  }

  // True if no file below directory `dir_path` could be kept.
  bool Prune(std::string_view dir_path) const {
    return std::any_of(prune_.begin(), prune_.end(), [&](const std::string& g) { return MatchGlob(g, dir_path); });
  }

 private:
  const std::vector<std::string>& include_;
  const std::vector<std::string>& exclude_;
  std::vector<std::string> prune_;
};

// One directory argument being scanned.
struct Root {
  std::string real;    // realpath of the argument
  std::string prefix;  // dataset path prefix ("" or ending in '/')
  std::unique_ptr<Fd> fd;
};

// The files under one directory in dataset-path order, as a sequence of
// parts: runs of files of this directory and subdirectories. Each part is
// filled by exactly one task, so that the result comes out sorted without
// sorting all paths at the end (comparing 200k long paths that share most
// of their bytes is a good part of a scan's time).
struct DirNode;
struct Part {
  std::vector<ScannedFile> files;  // a run of this directory's files
  std::unique_ptr<DirNode> dir;    // or a subdirectory
};
struct DirNode {
  std::vector<Part> parts;
};

// A directory to read into `node`. `rel` is relative to the root: "" for
// the root itself, otherwise ending in '/'.
struct DirTask {
  const Root* root;
  std::string rel;
  DirNode* node;
};

struct Entry {
  uint32_t name_offset;  // in OpenDir::names
  uint16_t name_size;
  unsigned char type;  // d_type, never DT_UNKNOWN
};

// A directory that has been listed and whose entries are being stat'ed;
// shared by the tasks doing so, closed when the last one is done.
class OpenDir {
 public:
  OpenDir(const Root* root, std::string rel, DIR* dir) : root_(root), rel_(std::move(rel)), dir_(dir) {}
  ~OpenDir() { ::closedir(dir_); }
  OpenDir(const OpenDir&) = delete;
  OpenDir& operator=(const OpenDir&) = delete;

  const Root& root() const { return *root_; }
  const std::string& rel() const { return rel_; }
  int fd() const { return ::dirfd(dir_); }
  std::string_view name(const Entry& e) const { return std::string_view(names_).substr(e.name_offset, e.name_size); }
  const std::vector<Entry>& entries() const { return entries_; }

  void AddEntry(std::string_view name, unsigned char type) {
    entries_.push_back(Entry{static_cast<uint32_t>(names_.size()), static_cast<uint16_t>(name.size()), type});
    names_.append(name);
    names_.push_back('\0');  // so that name(e).data() can be passed to *at() calls
  }
  // Sorts the entries as their full paths sort: a subdirectory's name
  // compares as if followed by '/' ("a.txt" < "a/x" < "a0").
  void SortEntries() {
    std::sort(entries_.begin(), entries_.end(), [this](const Entry& x, const Entry& y) {
      std::string_view a = name(x);
      std::string_view b = name(y);
      size_t n = std::min(a.size(), b.size());
      if (int c = std::memcmp(a.data(), b.data(), n); c != 0) return c < 0;
      if (a.size() == b.size()) return x.type != DT_DIR && y.type == DT_DIR;
      if (a.size() < b.size()) return x.type != DT_DIR || '/' < static_cast<unsigned char>(b[n]);
      return y.type == DT_DIR && static_cast<unsigned char>(a[n]) < '/';
    });
  }

 private:
  const Root* root_;
  std::string rel_;
  DIR* dir_;
  std::string names_;  // every entry's name, NUL-terminated, back to back
  std::vector<Entry> entries_;
};

// Entries [begin, end) of a listed directory, to stat into `out`.
struct StatTask {
  std::shared_ptr<const OpenDir> dir;
  size_t begin;
  size_t end;
  std::vector<ScannedFile>* out;
};

using Task = std::variant<DirTask, StatTask>;

// A problem found while scanning, kept with the dataset path it concerns
// so that the one reported does not depend on thread timing.
struct Problem {
  std::string path;
  absl::Status status;
};

// Walks directory trees with a small pool of workers sharing a queue of
// directories (and of batches of entries of huge directories).
class TreeWalk {
 public:
  explicit TreeWalk(const Filters& filters) : filters_(filters) {}

  // REQUIRES: before Run.
  void Add(const Root& root) {
    nodes_.push_back(std::make_unique<DirNode>());
    absl::MutexLock lock(&mu_);
    queue_.push_back(DirTask{&root, "", nodes_.back().get()});
  }

  // Runs the walk to completion. Returns the files of each root added, in
  // order, each list sorted by dataset path; problems go to `problems`.
  std::vector<std::vector<ScannedFile>> Run(std::vector<Problem>& problems) {
    int threads = std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, kMaxThreads);
    std::vector<std::vector<Problem>> found(threads);
    std::vector<std::thread> helpers;
    for (int i = 1; i < threads; ++i) helpers.emplace_back([this, &found, i] { Work(found[i]); });
    Work(found[0]);
    for (std::thread& t : helpers) t.join();
    for (auto& f : found) {
      for (Problem& p : f) problems.push_back(std::move(p));
    }
    std::vector<std::vector<ScannedFile>> out;
    for (const auto& node : nodes_) out.push_back(Flatten(*node));
    return out;
  }

 private:
  void Work(std::vector<Problem>& problems) {
    for (;;) {
      Task task;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &TreeWalk::HasTaskOrDone));
        if (queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop_front();
        ++active_;
      }
      if (auto* dir = std::get_if<DirTask>(&task)) {
        ReadDir(*dir, problems);
      } else {
        const StatTask& batch = std::get<StatTask>(task);
        for (size_t i = batch.begin; i < batch.end; ++i) {
          ProcessEntry(*batch.dir, batch.dir->entries()[i], *batch.out, problems);
        }
      }
      absl::MutexLock lock(&mu_);
      --active_;
    }
  }

  bool HasTaskOrDone() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || active_ == 0; }

  // Subdirectories go to the back of the queue; batches of a huge
  // directory's entries to the front, so that they are done before more
  // directories are opened and few directories stay open at a time.
  void Push(std::vector<Task>& dirs, std::vector<Task>& batches) {
    if (dirs.empty() && batches.empty()) return;
    absl::MutexLock lock(&mu_);
    for (Task& t : dirs) queue_.push_back(std::move(t));
    for (Task& t : batches) queue_.push_front(std::move(t));
  }

  static size_t CountFiles(const DirNode& node) {
    size_t n = 0;
    for (const Part& part : node.parts) n += part.dir != nullptr ? CountFiles(*part.dir) : part.files.size();
    return n;
  }

  static std::vector<ScannedFile> Flatten(DirNode& root) {
    std::vector<ScannedFile> out;
    out.reserve(CountFiles(root));
    std::vector<std::pair<DirNode*, size_t>> stack = {{&root, 0}};
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      if (next == node->parts.size()) {
        stack.pop_back();
        continue;
      }
      Part& part = node->parts[next++];
      if (part.dir != nullptr) {
        stack.emplace_back(part.dir.get(), 0);  // invalidates node and next, unused from here
      } else {
        out.insert(out.end(), std::make_move_iterator(part.files.begin()), std::make_move_iterator(part.files.end()));
      }
    }
    return out;
  }

  void ReadDir(const DirTask& task, std::vector<Problem>& problems) {
    const Root& root = *task.root;
    const char* rel = task.rel.empty() ? "." : task.rel.c_str();
    auto problem = [&](int err) {
      std::string disk = task.rel.empty() ? root.real : JoinDisk(root, task.rel.substr(0, task.rel.size() - 1), "");
      problems.push_back({root.prefix + task.rel, ErrnoStatus(err, fmt::format("cannot read directory '{}'", disk))});
    };
    int fd = ::openat(root.fd->get(), rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err != ENOENT) problem(err);  // ENOENT: removed since its parent was read
      return;
    }
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
      int err = errno;
      ::close(fd);
      problem(err);
      return;
    }
    auto dir = std::make_shared<OpenDir>(&root, task.rel, d);
    for (;;) {
      errno = 0;
      struct dirent* de = ::readdir(d);
      if (de == nullptr) {
        if (int err = errno; err != 0) {
          problem(err);
          return;
        }
        break;
      }
      const char* name = de->d_name;
      if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
      unsigned char type = de->d_type;
      if (type == DT_UNKNOWN) {
        // Some file systems do not fill d_type; ask, since directories
        // must be known before the entries are ordered.
        struct stat st;
        if (::fstatat(dir->fd(), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
          int err = errno;
          if (err != ENOENT) {
            problems.push_back({root.prefix + task.rel + name,
                                ErrnoStatus(err, fmt::format("cannot stat '{}'", JoinDisk(root, task.rel, name)))});
          }
          continue;
        }
        type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISLNK(st.st_mode) ? DT_LNK : S_ISREG(st.st_mode) ? DT_REG : DT_FIFO;
      }
      if (type == DT_DIR && filters_.Prune(root.prefix + task.rel + name)) continue;
      dir->AddEntry(name, type);
    }
    dir->SortEntries();

    // Parts: each subdirectory, and runs of files cut into batches.
    const std::vector<Entry>& entries = dir->entries();
    std::vector<std::pair<size_t, size_t>> ranges;  // per part: entry range
    for (size_t i = 0; i < entries.size();) {
      size_t j = i + 1;
      if (entries[i].type != DT_DIR) {
        while (j < entries.size() && entries[j].type != DT_DIR && j - i < kStatBatch) ++j;
      }
      ranges.emplace_back(i, j);
      i = j;
    }
    DirNode& node = *task.node;
    node.parts.resize(ranges.size());  // never resized again: tasks keep pointers into it
    std::vector<Task> dirs;
    std::vector<Task> batches;
    for (size_t p = 0; p < ranges.size(); ++p) {
      const Entry& first = entries[ranges[p].first];
      if (first.type == DT_DIR) {
        node.parts[p].dir = std::make_unique<DirNode>();
        std::string rel_dir = task.rel;
        rel_dir += dir->name(first);
        rel_dir += '/';
        dirs.push_back(DirTask{&root, std::move(rel_dir), node.parts[p].dir.get()});
      } else {
        batches.push_back(StatTask{dir, ranges[p].first, ranges[p].second, &node.parts[p].files});
      }
    }
    // This worker keeps one batch for itself.
    std::optional<StatTask> mine;
    if (!batches.empty()) {
      mine = std::move(std::get<StatTask>(batches.front()));
      batches.erase(batches.begin());
    }
    Push(dirs, batches);
    if (mine.has_value()) {
      mine->out->reserve(mine->end - mine->begin);
      for (size_t i = mine->begin; i < mine->end; ++i) ProcessEntry(*dir, entries[i], *mine->out, problems);
    }
  }

  static std::string JoinDisk(const Root& root, std::string_view rel, std::string_view name) {
    std::string s;
    s.reserve(root.real.size() + 1 + rel.size() + name.size());
    s += root.real;
    if (root.real != "/") s += '/';
    s += rel;
    s += name;
    return s;
  }

  void ProcessEntry(const OpenDir& dir, const Entry& e, std::vector<ScannedFile>& out,
                    std::vector<Problem>& problems) {
    const Root& root = dir.root();
    const std::string_view name = dir.name(e);
    std::string path;
    path.reserve(root.prefix.size() + dir.rel().size() + name.size());
    path += root.prefix;
    path += dir.rel();
    path += name;
    if (!filters_.Keep(path)) return;
    if (absl::Status s = ValidateDatasetPath(path); !s.ok()) {
      problems.push_back({path, absl::InvalidArgumentError(fmt::format(
                                    "cannot add '{}': {}", JoinDisk(root, dir.rel(), name), s.message()))});
      return;
    }
    if (e.type == DT_LNK) {
      AddSymlink(dir, name, std::move(path), out, problems);
      return;
    }
    struct stat st;
    if (::fstatat(dir.fd(), name.data(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      int err = errno;
      // ENOENT: removed while being scanned, as if scanned a moment later.
      if (err != ENOENT) {
        problems.push_back(
            {path, ErrnoStatus(err, fmt::format("cannot stat '{}'", JoinDisk(root, dir.rel(), name)))});
      }
      return;
    }
    if (S_ISREG(st.st_mode)) {
      out.push_back(FromStat(std::move(path), JoinDisk(root, dir.rel(), name), st));
    } else if (S_ISLNK(st.st_mode)) {
      AddSymlink(dir, name, std::move(path), out, problems);
    } else if (S_ISDIR(st.st_mode)) {
      problems.push_back({path, absl::AbortedError(fmt::format("'{}' changed while being scanned; try again",
                                                               JoinDisk(root, dir.rel(), name)))});
    } else {
      problems.push_back({path, absl::InvalidArgumentError(fmt::format(
                                    "cannot add '{}': it is {}; only regular files can be added",
                                    JoinDisk(root, dir.rel(), name), SpecialFileKind(st.st_mode)))});
    }
  }

  void AddSymlink(const OpenDir& dir, std::string_view name, std::string path, std::vector<ScannedFile>& out,
                  std::vector<Problem>& problems) {
    const Root& root = dir.root();
    std::string disk = JoinDisk(root, dir.rel(), name);
    std::string target = ReadLinkAt(dir.fd(), name.data());
    auto fail = [&](std::string_view why) {
      problems.push_back(
          {path, absl::InvalidArgumentError(fmt::format("cannot add symlink '{}' -> '{}': {}", disk, target, why))});
    };
    struct stat st;
    if (::fstatat(dir.fd(), name.data(), &st, 0) != 0) {
      int err = errno;
      if (err == ENOENT || err == ENOTDIR || err == ELOOP) {
        fail("it is dangling (its target does not exist)");
      } else {
        problems.push_back({path, ErrnoStatus(err, fmt::format("cannot follow symlink '{}' -> '{}'", disk, target))});
      }
      return;
    }
    if (S_ISDIR(st.st_mode)) {
      fail("it points to a directory; only symlinks to files are followed");
      return;
    }
    if (!S_ISREG(st.st_mode)) {
      fail(fmt::format("it points to {}; only regular files can be added", SpecialFileKind(st.st_mode)));
      return;
    }
    std::string resolved;
    if (!RealPath(disk, &resolved)) {
      int err = errno;
      fail(fmt::format("cannot resolve it: {}", ErrnoText(err)));
      return;
    }
    bool inside = root.real == "/" || (resolved.size() > root.real.size() + 1 &&
                                       resolved.compare(0, root.real.size(), root.real) == 0 &&
                                       resolved[root.real.size()] == '/');
    if (!inside) {
      fail(fmt::format("it resolves to '{}', outside the tree '{}' being added", resolved, root.real));
      return;
    }
    out.push_back(FromStat(std::move(path), std::move(disk), st));
  }

  const Filters& filters_;
  std::vector<std::unique_ptr<DirNode>> nodes_;  // one per root, in Add order
  absl::Mutex mu_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  int active_ ABSL_GUARDED_BY(mu_) = 0;
};

// The problem to report: the one at the smallest dataset path.
absl::Status FirstProblem(std::vector<Problem>& problems) {
  auto first = std::min_element(problems.begin(), problems.end(),
                                [](const Problem& a, const Problem& b) { return a.path < b.path; });
  if (problems.size() == 1) return first->status;
  return absl::Status(first->status.code(),
                      fmt::format("{} (and {} more problems)", first->status.message(), problems.size() - 1));
}

// Two arguments can yield the same dataset path, or a file "a" next to a
// directory "a/...". Neither can happen within one directory argument.
absl::Status CheckCollisions(const std::vector<ScannedFile>& files, bool several_args) {
  for (size_t i = 1; i < files.size(); ++i) {
    if (files[i].path == files[i - 1].path) {
      return absl::InvalidArgumentError(fmt::format("'{}' and '{}' would both be added as '{}'",
                                                    files[i - 1].disk_path, files[i].disk_path, files[i].path));
    }
  }
  if (!several_args) return absl::OkStatus();
  // "a" and "a/b" need not be adjacent in sorted order ("a", "a.txt",
  // "a/b"), so look every ancestor directory up among the files.
  absl::flat_hash_map<std::string_view, size_t, std::hash<std::string_view>> index;
  index.reserve(files.size());
  for (size_t i = 0; i < files.size(); ++i) index.emplace(files[i].path, i);
  for (const ScannedFile& f : files) {
    std::string_view p = f.path;
    for (size_t slash = p.find('/'); slash != std::string_view::npos; slash = p.find('/', slash + 1)) {
      auto it = index.find(p.substr(0, slash));
      if (it != index.end()) {
        return absl::InvalidArgumentError(fmt::format("'{}' would be added as file '{}', but '{}' needs it to be a directory",
                                                      files[it->second].disk_path, it->first, f.disk_path));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<ScannedFile>> ScanTree(const std::vector<std::string>& args, const ScanOptions& options) {
  Filters filters(options);
  RETURN_IF_ERROR(filters.Validate());
  std::string prefix = options.prefix;
  if (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (!prefix.empty()) {
    if (absl::Status s = ValidateDatasetPath(prefix); !s.ok()) {
      return absl::InvalidArgumentError(fmt::format("bad prefix: {}", s.message()));
    }
    prefix += '/';
  }

  std::vector<ScannedFile> files;
  std::vector<std::unique_ptr<Root>> roots;
  std::vector<Problem> problems;
  for (const std::string& arg : args) {
    std::string real;
    if (!RealPath(arg, &real)) {
      int err = errno;
      if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(fmt::format("'{}' does not exist", arg));
      return ErrnoStatus(err, fmt::format("cannot resolve '{}'", arg));
    }
    struct stat st;
    if (::stat(real.c_str(), &st) != 0) {
      int err = errno;
      return ErrnoStatus(err, fmt::format("cannot stat '{}'", arg));
    }
    if (S_ISDIR(st.st_mode)) {
      int fd = ::open(real.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0) {
        int err = errno;
        return ErrnoStatus(err, fmt::format("cannot read directory '{}'", arg));
      }
      roots.push_back(std::make_unique<Root>(Root{real, prefix, std::make_unique<Fd>(fd)}));
      continue;
    }
    if (!S_ISREG(st.st_mode)) {
      return absl::InvalidArgumentError(
          fmt::format("cannot add '{}': it is {}; only regular files can be added", arg, SpecialFileKind(st.st_mode)));
    }
    std::string_view base = arg;
    while (base.size() > 1 && base.back() == '/') base.remove_suffix(1);
    if (size_t slash = base.rfind('/'); slash != std::string_view::npos) base.remove_prefix(slash + 1);
    std::string path = prefix + std::string(base);
    if (!filters.Keep(path)) continue;
    if (absl::Status s = ValidateDatasetPath(path); !s.ok()) {
      problems.push_back({path, absl::InvalidArgumentError(fmt::format("cannot add '{}': {}", arg, s.message()))});
      continue;
    }
    files.push_back(FromStat(std::move(path), std::move(real), st));
  }

  // Each list is sorted; merge them (the usual single argument needs nothing).
  std::sort(files.begin(), files.end(), [](const ScannedFile& a, const ScannedFile& b) { return a.path < b.path; });
  if (!roots.empty()) {
    TreeWalk walk(filters);
    for (const auto& root : roots) walk.Add(*root);
    for (std::vector<ScannedFile>& run : walk.Run(problems)) {
      if (files.empty()) {
        files = std::move(run);
        continue;
      }
      size_t mid = files.size();
      files.insert(files.end(), std::make_move_iterator(run.begin()), std::make_move_iterator(run.end()));
      std::inplace_merge(files.begin(), files.begin() + static_cast<std::ptrdiff_t>(mid), files.end(),
                         [](const ScannedFile& a, const ScannedFile& b) { return a.path < b.path; });
    }
  }
  if (!problems.empty()) return FirstProblem(problems);
  RETURN_IF_ERROR(CheckCollisions(files, args.size() > 1));
  return files;
}

}  // namespace cairn::data
