#include "tests/support/slurm_cluster.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/env.h"

extern char** environ;

namespace cairn::testing {
namespace {

constexpr const char* kDaemons[] = {"munged", "slurmctld", "slurmd"};
constexpr const char* kClients[] = {"sbatch", "squeue", "scontrol", "scancel", "sinfo"};

// The full path of `program` on PATH, or "" when absent. Daemons live in
// /usr/sbin, which a non-login PATH may lack, so that is searched too.
std::string FindProgram(const std::string& program) {
  std::string path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";
  path += ":/usr/sbin:/sbin";
  return FindExecutable(program, path);
}

// This process's environment with `overrides` replacing or adding variables.
std::vector<std::string> MergedEnvironment(const std::map<std::string, std::string>& overrides) {
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry = *e;
    std::string key = entry.substr(0, entry.find('='));
    if (overrides.count(key) == 0) out.push_back(entry);
  }
  for (const auto& [key, value] : overrides) out.push_back(key + "=" + value);
  return out;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Starts `args` as the leader of a new process group with stdout and stderr
// appended to `log_path`. The daemon gets SIGTERM if this process dies
// (a crashed or killed test leaves no cluster behind).
absl::StatusOr<pid_t> SpawnDaemon(std::vector<std::string> args, const std::map<std::string, std::string>& env,
                                  const std::string& log_path) {
  // Everything the child needs is prepared before fork: after it, only
  // async-signal-safe calls.
  std::vector<std::string> environment = MergedEnvironment(env);
  std::vector<char*> argv = CStrings(args);
  std::vector<char*> envp = CStrings(environment);
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log_fd < 0 || null_fd < 0) {
    if (log_fd >= 0) close(log_fd);
    if (null_fd >= 0) close(null_fd);
    return absl::UnavailableError(fmt::format("cannot open {}", log_path));
  }
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);  // the parent died before prctl
    dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(log_fd);
  close(null_fd);
  if (pid < 0) return absl::UnavailableError(fmt::format("cannot start {}: fork failed", args[0]));
  setpgid(pid, pid);  // also here, so that the group exists when we return
  return pid;
}

// A TCP port on 127.0.0.1 that was free a moment ago.
absl::StatusOr<int> FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::UnavailableError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return absl::UnavailableError("cannot bind a free port");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

std::string ShortHostName() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  std::string host = name;
  return host.substr(0, host.find('.'));
}

uint64_t TotalMemoryMib() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  while (meminfo >> key) {
    if (key == "MemTotal:") {
      meminfo >> kib;
      break;
    }
    meminfo.ignore(1 << 10, '\n');
  }
  return kib / 1024;
}

std::string CurrentUser() {
  passwd* pw = getpwuid(getuid());
  return pw != nullptr ? pw->pw_name : "root";
}

std::string Tail(const std::string& path, size_t max_lines) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  std::string out;
  for (size_t i = lines.size() > max_lines ? lines.size() - max_lines : 0; i < lines.size(); ++i) {
    out += lines[i] + "\n";
  }
  return out;
}

// Waits up to `timeout` for `pid` to exit; true when it did (and is reaped).
bool WaitWithTimeout(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || r < 0) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

absl::Status SlurmCluster::CheckAvailable() {
  std::vector<std::string> missing;
  for (const char* p : kDaemons) {
    if (FindProgram(p).empty()) missing.push_back(p);
  }
  for (const char* p : kClients) {
    if (FindProgram(p).empty()) missing.push_back(p);
  }
  if (!missing.empty()) {
    return absl::FailedPreconditionError(
        fmt::format("Slurm is not installed (missing {}); install slurm-wlm and munge (scripts/setup.sh)",
                    fmt::join(missing, ", ")));
  }
  if (geteuid() != 0) {
    return absl::FailedPreconditionError("a test Slurm cluster needs root: slurmd starts jobs as their owner");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SlurmCluster>> SlurmCluster::Start() {
  RETURN_IF_ERROR(CheckAvailable());
  auto cluster = std::unique_ptr<SlurmCluster>(new SlurmCluster());
  // munge's socket path must fit in sun_path (108 bytes): prefer a short base.
  const char* tmpdir = std::getenv("TMPDIR");
  std::string base = tmpdir != nullptr && *tmpdir != '\0' && std::strlen(tmpdir) < 40 ? tmpdir : "/tmp";
  std::string tmpl = base + "/cairn-slurm-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    return absl::UnavailableError(fmt::format("cannot create a directory under {}", base));
  }
  cluster->dir_ = tmpl;
  absl::Status s = cluster->Launch();
  if (s.ok()) s = cluster->WaitUntilIdle();
  if (!s.ok()) {
    std::string logs = cluster->LogTails();
    return absl::UnavailableError(fmt::format("the test Slurm cluster did not start: {}\n{}", s.message(), logs));
  }
  return cluster;
}

absl::Status SlurmCluster::Launch() {
  for (const char* sub : {"munge", "state", "spool", "log"}) {
    std::filesystem::create_directories(dir_ + "/" + sub);
  }
  // munged refuses a key that others can read.
  {
    std::ifstream random("/dev/urandom", std::ios::binary);
    std::string key(1024, '\0');
    random.read(key.data(), static_cast<std::streamsize>(key.size()));
    int fd = open((dir_ + "/munge/munge.key").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, key.data(), key.size()) != static_cast<ssize_t>(key.size())) {
      if (fd >= 0) close(fd);
      return absl::UnavailableError("cannot write the munge key");
    }
    close(fd);
  }
  std::ofstream(dir_ + "/plugstack.conf").close();

  ASSIGN_OR_RETURN(int ctld_port, FreePort());
  int slurmd_port = 0;
  do {
    ASSIGN_OR_RETURN(slurmd_port, FreePort());
  } while (slurmd_port == ctld_port);
  node_name_ = ShortHostName();
  cpus_ = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // slurmd drains a node that has less memory than configured: claim part.
  memory_mib_ = std::max<uint64_t>(TotalMemoryMib() * 3 / 4, 512);
  const std::string user = CurrentUser();

  // Why each setting: see PLATFORM-NOTES ("Slurm"). DefMemPerCPU keeps a job
  // from taking the whole node; batch_sched_delay=0 starts jobs at once;
  // KillWait=5 makes scancel and time limits end jobs quickly.
  std::string conf = fmt::format(
      "ClusterName=cairntest\n"
      "SlurmctldHost={node}(127.0.0.1)\n"
      "SlurmctldPort={ctld_port}\n"
      "SlurmdPort={slurmd_port}\n"
      "SlurmUser={user}\n"
      "SlurmdUser=root\n"
      "AuthType=auth/munge\n"
      "CredType=cred/munge\n"
      "AuthInfo=socket={dir}/munge/munge.socket\n"
      "StateSaveLocation={dir}/state\n"
      "SlurmdSpoolDir={dir}/spool\n"
      "SlurmctldPidFile={dir}/slurmctld.pid\n"
      "SlurmdPidFile={dir}/slurmd.pid\n"
      "SlurmctldLogFile={dir}/log/slurmctld.log\n"
      "SlurmdLogFile={dir}/log/slurmd.log\n"
      "PlugStackConfig={dir}/plugstack.conf\n"
      "ProctrackType=proctrack/linuxproc\n"
      "TaskPlugin=task/none\n"
      "JobAcctGatherType=jobacct_gather/none\n"
      "AccountingStorageType=accounting_storage/none\n"
      "JobCompType=jobcomp/none\n"
      "SelectType=select/cons_tres\n"
      "SelectTypeParameters=CR_Core_Memory\n"
      "DefMemPerCPU=256\n"
      "SchedulerParameters=batch_sched_delay=0\n"
      "MpiDefault=none\n"
      "ReturnToService=2\n"
      "MinJobAge=300\n"
      "KillWait=5\n"
      "NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN\n"
      "PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP\n",
      fmt::arg("node", node_name_), fmt::arg("ctld_port", ctld_port), fmt::arg("slurmd_port", slurmd_port),
      fmt::arg("user", user), fmt::arg("dir", dir_), fmt::arg("cpus", cpus_), fmt::arg("mem", memory_mib_),
      fmt::arg("partition", partition_));
  {
    std::ofstream out(dir_ + "/slurm.conf");
    out << conf;
    if (!out) return absl::UnavailableError("cannot write slurm.conf");
  }
  env_ = {{"SLURM_CONF", dir_ + "/slurm.conf"}};

  ASSIGN_OR_RETURN(
      pid_t munged,
      SpawnDaemon({FindProgram("munged"), "--foreground", "--force", "--socket=" + dir_ + "/munge/munge.socket",
                   "--key-file=" + dir_ + "/munge/munge.key", "--log-file=" + dir_ + "/log/munged.log",
                   "--pid-file=" + dir_ + "/munge/munged.pid", "--seed-file=" + dir_ + "/munge/munged.seed"},
                  env_, dir_ + "/log/munged.out"));
  daemons_.push_back(munged);
  // slurmctld authenticates through munge at start: wait for its socket.
  for (int i = 0; i < 200 && access((dir_ + "/munge/munge.socket").c_str(), F_OK) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSIGN_OR_RETURN(pid_t ctld, SpawnDaemon({FindProgram("slurmctld"), "-D", "-i"}, env_, dir_ + "/log/slurmctld.out"));
  daemons_.push_back(ctld);
  ASSIGN_OR_RETURN(pid_t slurmd, SpawnDaemon({FindProgram("slurmd"), "-D"}, env_, dir_ + "/log/slurmd.out"));
  daemons_.push_back(slurmd);
  return absl::OkStatus();
}

absl::Status SlurmCluster::WaitUntilIdle() {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    for (pid_t pid : daemons_) {
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        daemons_.erase(std::find(daemons_.begin(), daemons_.end(), pid));
        return absl::UnavailableError(fmt::format("a daemon (pid {}) exited", pid));
      }
    }
    CommandResult r = Run({"sinfo", "-h", "-n", node_name_, "-o", "%T"});
    last = r.output;
    if (r.exit_code == 0 && r.output.rfind("idle", 0) == 0) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::DeadlineExceededError(fmt::format("the node was not idle after 30 s (sinfo: '{}')", last));
}

CommandResult SlurmCluster::Run(const std::vector<std::string>& args) const {
  CommandResult result;
  if (args.empty()) return result;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return result;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  std::vector<std::string> argv_strings = args;
  std::vector<std::string> environment = MergedEnvironment(env_);
  std::vector<char*> argv = CStrings(argv_strings);
  std::vector<char*> envp = CStrings(environment);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    result.output = fmt::format("cannot run {}: {}", args[0], std::strerror(rc));
    return result;
  }
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) result.output.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

absl::Status SlurmCluster::CancelAllJobs() const {
  CommandResult cancelled = Run({"scancel", "--user=" + CurrentUser()});
  if (cancelled.exit_code != 0) return absl::UnavailableError(fmt::format("scancel failed: {}", cancelled.output));
  std::string left;
  for (int i = 0; i < 300; ++i) {
    CommandResult r = Run({"squeue", "-h", "-o", "%i %T"});
    if (r.exit_code != 0) return absl::UnavailableError(fmt::format("squeue failed: {}", r.output));
    if (r.output.empty()) return absl::OkStatus();
    left = r.output;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::DeadlineExceededError(fmt::format("jobs still in the queue after 30 s: {}", left));
}

std::string SlurmCluster::LogTails() const {
  std::string out;
  for (const char* log : {"munged.log", "munged.out", "slurmctld.log", "slurmctld.out", "slurmd.log", "slurmd.out"}) {
    std::string tail = Tail(dir_ + "/log/" + log, 15);
    if (!tail.empty()) out += fmt::format("--- {} ---\n{}", log, tail);
  }
  return out;
}

void SlurmCluster::Stop() {
  // Jobs first, so that no slurmstepd (outside slurmd's process group)
  // outlives the cluster.
  if (daemons_.size() == 3) CancelAllJobs().IgnoreError();
  // Stop in reverse order: slurmd, slurmctld, then munged they talk through.
  for (auto it = daemons_.rbegin(); it != daemons_.rend(); ++it) {
    kill(-*it, SIGTERM);
    if (!WaitWithTimeout(*it, std::chrono::seconds(5))) {
      kill(-*it, SIGKILL);
      WaitWithTimeout(*it, std::chrono::seconds(5));
    }
    // Whatever the leader left in its group.
    kill(-*it, SIGKILL);
  }
  daemons_.clear();
}

SlurmCluster::~SlurmCluster() {
  Stop();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

}  // namespace cairn::testing
