#include "exec/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string_view>
#include <thread>

#include <fmt/format.h>

namespace cairn::exec {
namespace {

constexpr const char* kControllerNames[] = {"memory", "pids", "cpu", "cpuacct"};
constexpr uint64_t kCpuPeriodMicros = 100000;
// Job cgroups of dead processes younger than this are left alone.
constexpr time_t kStaleAfterSeconds = 60;

std::vector<std::string> Split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string_view::npos) end = s.size();
    out.emplace_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

bool Contains(const std::vector<std::string>& tokens, std::string_view t) {
  return std::find(tokens.begin(), tokens.end(), t) != tokens.end();
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto octal = [&](size_t j) { return j < s.size() && s[j] >= '0' && s[j] <= '7'; };
    if (s[i] == '\\' && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

struct CgroupMount {
  std::string root;         // the part of the hierarchy this mount shows
  std::string mount_point;
  bool v2 = false;
  std::vector<std::string> options;  // super options: v1 controller names among them
};

std::vector<CgroupMount> ParseMountInfo(const std::string& text) {
  std::vector<CgroupMount> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::vector<std::string> f = Split(line, ' ');
    auto dash = std::find(f.begin(), f.end(), "-");
    if (dash == f.end() || f.end() - dash < 4 || dash - f.begin() < 6) continue;
    const std::string& fstype = *(dash + 1);
    if (fstype != "cgroup" && fstype != "cgroup2") continue;
    out.push_back({Unescape(f[3]), Unescape(f[4]), fstype == "cgroup2", Split(*(dash + 3), ',')});
  }
  return out;
}

bool IsUnder(const std::string& path, const std::string& root) {
  if (root.empty() || root == "/") return true;
  std::string r = root;
  while (r.size() > 1 && r.back() == '/') r.pop_back();
  return path == r || (path.size() > r.size() && path.compare(0, r.size(), r) == 0 && path[r.size()] == '/');
}

// The directory of cgroup `path` (as /proc/self/cgroup names it) in `mount`,
// if the mount shows it.
std::optional<std::string> DirIn(const CgroupMount& mount, const std::string& path) {
  if (!IsUnder(path, mount.root)) return std::nullopt;
  std::string rel = mount.root == "/" ? path : path.substr(mount.root.size());
  while (!rel.empty() && rel.back() == '/') rel.pop_back();
  if (!rel.empty() && rel[0] != '/') rel = "/" + rel;
  return mount.mount_point + rel;
}

std::optional<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool WriteSmallFile(const std::string& path, std::string_view value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = ::write(fd, value.data(), value.size());
  ::close(fd);
  return n == static_cast<ssize_t>(value.size());
}

std::optional<uint64_t> ReadNumber(const std::string& path) {
  std::optional<std::string> text = ReadSmallFile(path);
  if (!text.has_value()) return std::nullopt;
  try {
    return std::stoull(*text);
  } catch (...) {
    return std::nullopt;
  }
}

// The value of `key` in a flat-keyed file ("key value" lines).
std::optional<uint64_t> ReadKey(const std::string& path, std::string_view key) {
  std::optional<std::string> text = ReadSmallFile(path);
  if (!text.has_value()) return std::nullopt;
  std::istringstream lines(*text);
  std::string k;
  uint64_t v = 0;
  while (lines >> k >> v) {
    if (k == key) return v;
  }
  return std::nullopt;
}

}  // namespace

CgroupLayout CgroupLayout::Parse(const std::string& mountinfo, const std::string& self_cgroup,
                                 const std::string& mount_root) {
  CgroupLayout layout;
  if (mount_root == "none") return layout;
  std::vector<CgroupMount> mounts = ParseMountInfo(mountinfo);
  std::erase_if(mounts, [&](const CgroupMount& m) { return !IsUnder(m.mount_point, mount_root); });

  std::map<std::string, std::string> v1_paths;  // controller -> own cgroup path
  std::optional<std::string> v2_path;
  std::istringstream lines(self_cgroup);
  std::string line;
  while (std::getline(lines, line)) {
    size_t a = line.find(':');
    size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    std::string controllers = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    if (controllers.empty()) {
      if (line.compare(0, a, "0") == 0) v2_path = path;
      continue;
    }
    for (const std::string& c : Split(controllers, ',')) v1_paths[c] = path;
  }

  for (int i = 0; i < 4; ++i) {
    const std::string name = kControllerNames[i];
    bool bound_to_v1 = false;
    if (auto it = v1_paths.find(name); it != v1_paths.end()) {
      bound_to_v1 = true;
      for (const CgroupMount& m : mounts) {
        if (m.v2 || !Contains(m.options, name)) continue;
        if (std::optional<std::string> dir = DirIn(m, it->second)) {
          layout.places_[i] = Place{*dir, false};
          break;
        }
      }
    }
    if (bound_to_v1 || !v2_path.has_value()) continue;
    for (const CgroupMount& m : mounts) {
      if (!m.v2) continue;
      if (std::optional<std::string> dir = DirIn(m, *v2_path)) {
        layout.places_[i] = Place{*dir, true};
        break;
      }
    }
  }
  return layout;
}

CgroupLayout CgroupLayout::Detect(const std::string& mount_root) {
  if (mount_root == "none") return CgroupLayout();
  std::optional<std::string> mountinfo = ReadSmallFile("/proc/self/mountinfo");
  std::optional<std::string> self = ReadSmallFile("/proc/self/cgroup");
  if (!mountinfo.has_value() || !self.has_value()) return CgroupLayout();
  CgroupLayout layout = Parse(*mountinfo, *self, mount_root);
  for (int i = 0; i < 4; ++i) {
    std::optional<Place>& place = layout.places_[i];
    if (!place.has_value()) continue;
    if (::access(place->parent_dir.c_str(), W_OK) != 0) {
      place.reset();
      continue;
    }
    // A v2 child gets only the controllers its parent enables for its
    // subtree; CPU usage (cpu.stat) is there regardless.
    if (place->v2 && static_cast<CgroupController>(i) != CgroupController::kCpuAcct) {
      std::optional<std::string> enabled = ReadSmallFile(place->parent_dir + "/cgroup.subtree_control");
      std::vector<std::string> tokens;
      if (enabled.has_value()) {
        std::istringstream in(*enabled);
        for (std::string t; in >> t;) tokens.push_back(t);
      }
      if (!Contains(tokens, kControllerNames[i])) place.reset();
    }
  }
  return layout;
}

bool CgroupLayout::empty() const {
  for (const auto& p : places_) {
    if (p.has_value()) return false;
  }
  return true;
}

std::string CgroupLayout::Describe() const {
  std::string out;
  for (int i = 0; i < 4; ++i) {
    if (!out.empty()) out += "; ";
    const auto& p = places_[i];
    out += p.has_value() ? fmt::format("{}: {} {}", kControllerNames[i], p->v2 ? "v2" : "v1", p->parent_dir)
                         : fmt::format("{}: none", kControllerNames[i]);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<JobCgroup>> JobCgroup::Create(const CgroupLayout& layout, const std::string& name,
                                                             const CgroupLimits& limits) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    return absl::InvalidArgumentError(fmt::format("bad cgroup name '{}'", name));
  }
  auto cg = std::unique_ptr<JobCgroup>(new JobCgroup());
  // Co-mounted v1 controllers (cpu,cpuacct) and every v2 controller share one directory.
  std::map<std::string, std::string> made;  // parent dir -> job dir
  auto dir_for = [&](CgroupController c, bool required) -> std::optional<std::string> {
    const std::optional<CgroupLayout::Place>& place = layout.place(c);
    if (!place.has_value()) return std::nullopt;
    if (auto it = made.find(place->parent_dir); it != made.end()) return it->second;
    std::string dir = place->parent_dir + "/" + name;
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return std::nullopt;
    // v1: "tasks" moves one thread; written with "0" by the (single-threaded)
    // forked child, the kernel skips the global threadgroup lock, whose RCU
    // grace period cost ~10 ms per job through cgroup.procs. (v2 offers only
    // cgroup.procs for domain cgroups.)
    int fd = ::open((dir + (place->v2 ? "/cgroup.procs" : "/tasks")).c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      ::rmdir(dir.c_str());
      return std::nullopt;
    }
    cg->dirs_.push_back(dir);
    cg->procs_files_.push_back({fd, required});
    if (place->v2 && ::access((dir + "/cgroup.kill").c_str(), W_OK) == 0) cg->kill_file_ = dir + "/cgroup.kill";
    made[place->parent_dir] = dir;
    return dir;
  };

  if (std::optional<std::string> dir = dir_for(CgroupController::kMemory, true)) {
    cg->memory_dir_ = *dir;
    cg->memory_v2_ = layout.place(CgroupController::kMemory)->v2;
    if (limits.memory_bytes == 0) {
      cg->memory_limited_ = false;
    } else if (cg->memory_v2_) {
      cg->memory_limited_ = WriteSmallFile(*dir + "/memory.max", std::to_string(limits.memory_bytes));
      // Without swap the limit is a limit on memory, not on resident memory.
      WriteSmallFile(*dir + "/memory.swap.max", "0");
    } else {
      cg->memory_limited_ = WriteSmallFile(*dir + "/memory.limit_in_bytes", std::to_string(limits.memory_bytes));
      WriteSmallFile(*dir + "/memory.memsw.limit_in_bytes", std::to_string(limits.memory_bytes));
    }
  }
  if (std::optional<std::string> dir = dir_for(CgroupController::kPids, true)) {
    cg->pids_dir_ = *dir;
    if (limits.max_processes > 0) {
      cg->pids_limited_ = WriteSmallFile(*dir + "/pids.max", std::to_string(limits.max_processes));
    }
  }
  if (std::optional<std::string> dir = limits.cpus > 0 ? dir_for(CgroupController::kCpu, false) : std::nullopt) {
    const uint64_t quota = kCpuPeriodMicros * static_cast<uint64_t>(limits.cpus);
    if (layout.place(CgroupController::kCpu)->v2) {
      cg->cpus_limited_ = WriteSmallFile(*dir + "/cpu.max", fmt::format("{} {}", quota, kCpuPeriodMicros));
    } else {
      cg->cpus_limited_ = WriteSmallFile(*dir + "/cpu.cfs_period_us", std::to_string(kCpuPeriodMicros)) &&
                          WriteSmallFile(*dir + "/cpu.cfs_quota_us", std::to_string(quota));
    }
  }
  if (std::optional<std::string> dir = dir_for(CgroupController::kCpuAcct, false)) {
    cg->cpu_usage_v2_ = layout.place(CgroupController::kCpuAcct)->v2;
    cg->cpu_usage_file_ = *dir + (cg->cpu_usage_v2_ ? "/cpu.stat" : "/cpuacct.usage");
  }
  if (cg->dirs_.empty()) return absl::UnavailableError("no cgroup could be created");
  cg->procs_file_ = (cg->pids_dir_.empty() ? cg->dirs_.front() : cg->pids_dir_) + "/cgroup.procs";
  return cg;
}

JobCgroup::~JobCgroup() {
  for (const ProcsFile& f : procs_files_) ::close(f.fd);
  KillAll(absl::Seconds(5));
  for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
    // Removal waits for the last process to be released; a SIGKILLed one
    // can take a moment.
    for (int attempt = 0; attempt < 200; ++attempt) {
      if (::rmdir(it->c_str()) == 0 || errno == ENOENT) break;
      if (errno != EBUSY) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
}

std::vector<std::string> JobCgroup::Procs() const {
  std::vector<std::string> out;
  std::optional<std::string> text = ReadSmallFile(procs_file_);
  if (!text.has_value()) return out;
  std::istringstream in(*text);
  for (std::string pid; in >> pid;) out.push_back(pid);
  return out;
}

bool JobCgroup::KillAll(absl::Duration patience) {
  const absl::Time deadline = absl::Now() + patience;
  if (!kill_file_.empty()) WriteSmallFile(kill_file_, "1");
  for (;;) {
    std::vector<std::string> procs = Procs();
    if (procs.empty()) return true;
    if (absl::Now() > deadline) return false;
    for (const std::string& p : procs) {
      char* end = nullptr;
      long pid = std::strtol(p.c_str(), &end, 10);
      if (pid > 1 && *end == '\0') ::kill(static_cast<pid_t>(pid), SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

std::optional<double> JobCgroup::CpuSeconds() const {
  if (cpu_usage_file_.empty()) return std::nullopt;
  if (cpu_usage_v2_) {
    std::optional<uint64_t> usec = ReadKey(cpu_usage_file_, "usage_usec");
    if (!usec.has_value()) return std::nullopt;
    return static_cast<double>(*usec) / 1e6;
  }
  std::optional<uint64_t> nsec = ReadNumber(cpu_usage_file_);
  if (!nsec.has_value()) return std::nullopt;
  return static_cast<double>(*nsec) / 1e9;
}

CgroupUsage JobCgroup::Usage() const {
  CgroupUsage u;
  u.cpu_seconds = CpuSeconds();
  if (!memory_dir_.empty()) {
    u.peak_memory_bytes = ReadNumber(memory_dir_ + (memory_v2_ ? "/memory.peak" : "/memory.max_usage_in_bytes"));
    u.oom_kills =
        ReadKey(memory_dir_ + (memory_v2_ ? "/memory.events" : "/memory.oom_control"), "oom_kill").value_or(0);
  }
  if (!pids_dir_.empty()) u.process_limit_hit = ReadKey(pids_dir_ + "/pids.events", "max").value_or(0) > 0;
  return u;
}

std::string JobCgroupName(const std::string& job_id) { return fmt::format("cairn-{}-{}", ::getpid(), job_id); }

int RemoveStaleJobCgroups(const CgroupLayout& layout) {
  int removed = 0;
  std::vector<std::string> parents;
  for (CgroupController c :
       {CgroupController::kMemory, CgroupController::kPids, CgroupController::kCpu, CgroupController::kCpuAcct}) {
    const std::optional<CgroupLayout::Place>& place = layout.place(c);
    if (place.has_value() && !Contains(parents, place->parent_dir)) parents.push_back(place->parent_dir);
  }
  for (const std::string& parent : parents) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(parent, ec)) {
      const std::string name = entry.path().filename().string();
      if (!name.starts_with("cairn-") || !entry.is_directory(ec)) continue;
      char* end = nullptr;
      const long pid = std::strtol(name.c_str() + 6, &end, 10);
      if (pid <= 0 || end == name.c_str() + 6 || *end != '-') continue;
      // A live owner (or a pid reused since, which we cannot tell apart) keeps its cgroups.
      if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
      // The owner may live in another pid namespace that shares the
      // hierarchy; its job's cgroup is empty only for a moment after it is
      // made, so leave young ones alone. rmdir refuses one with processes.
      struct stat st;
      if (::stat(entry.path().c_str(), &st) != 0 || ::time(nullptr) - st.st_mtime < kStaleAfterSeconds) continue;
      if (::rmdir(entry.path().c_str()) == 0) ++removed;
    }
  }
  return removed;
}

}  // namespace cairn::exec
