#include "base/mem_env.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include <fmt/format.h>

namespace cairn {

struct MemEnv::FileState {
  absl::Mutex mu;
  std::string data ABSL_GUARDED_BY(mu);
  // Length at the last successful Sync(); nullopt if never synced.
  std::optional<size_t> synced_size ABSL_GUARDED_BY(mu);
  int64_t mtime_micros ABSL_GUARDED_BY(mu) = 0;
};

namespace {

using FileState = MemEnv::FileState;

class MemSequentialFile final : public SequentialFile {
 public:
  explicit MemSequentialFile(std::shared_ptr<FileState> file) : file_(std::move(file)) {}

  absl::StatusOr<size_t> Read(char* scratch, size_t n) override {
    absl::MutexLock lock(&file_->mu);
    if (pos_ >= file_->data.size()) return size_t{0};
    size_t k = std::min<uint64_t>(n, file_->data.size() - pos_);
    std::memcpy(scratch, file_->data.data() + pos_, k);
    pos_ += k;
    return k;
  }

  absl::Status Skip(uint64_t n) override {
    absl::MutexLock lock(&file_->mu);
    pos_ = std::min<uint64_t>(pos_ + n, file_->data.size());
    return absl::OkStatus();
  }

 private:
  std::shared_ptr<FileState> file_;
  uint64_t pos_ = 0;
};

class MemRandomAccessFile final : public RandomAccessFile {
 public:
  explicit MemRandomAccessFile(std::shared_ptr<FileState> file) : file_(std::move(file)) {}

  absl::StatusOr<size_t> Read(uint64_t offset, char* scratch, size_t n) const override {
    absl::MutexLock lock(&file_->mu);
    if (offset >= file_->data.size()) return size_t{0};
    size_t k = std::min<uint64_t>(n, file_->data.size() - offset);
    std::memcpy(scratch, file_->data.data() + offset, k);
    return k;
  }

 private:
  std::shared_ptr<FileState> file_;
};

class MemWritableFile final : public WritableFile {
 public:
  MemWritableFile(std::string path, std::shared_ptr<FileState> file)
      : path_(std::move(path)), file_(std::move(file)) {}

  absl::Status Append(std::string_view data) override {
    if (closed_) return absl::FailedPreconditionError(fmt::format("append {}: file is closed", path_));
    absl::MutexLock lock(&file_->mu);
    file_->data.append(data);
    return absl::OkStatus();
  }

  absl::Status Sync() override {
    if (closed_) return absl::FailedPreconditionError(fmt::format("sync {}: file is closed", path_));
    absl::MutexLock lock(&file_->mu);
    file_->synced_size = file_->data.size();
    return absl::OkStatus();
  }

  absl::Status Close() override {
    if (closed_) return absl::FailedPreconditionError(fmt::format("close {}: file is closed", path_));
    closed_ = true;
    return absl::OkStatus();
  }

 private:
  const std::string path_;
  std::shared_ptr<FileState> file_;
  bool closed_ = false;
};

int64_t RealNowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t RealMonotonicMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

MemEnv::MemEnv() = default;
MemEnv::~MemEnv() = default;

std::string MemEnv::Normalize(const std::string& path) {
  const bool absolute = !path.empty() && path[0] == '/';
  std::string out = absolute ? "/" : "";
  size_t pos = 0;
  while (pos < path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string::npos) slash = path.size();
    std::string_view part(path.data() + pos, slash - pos);
    pos = slash + 1;
    if (part.empty() || part == ".") continue;
    if (!out.empty() && out.back() != '/') out += '/';
    out += part;
  }
  if (out.empty()) return ".";
  return out;
}

bool MemEnv::DirExistsLocked(const std::string& norm) const {
  return norm == "/" || norm == "." || dirs_.contains(norm);
}

absl::StatusOr<std::shared_ptr<FileState>> MemEnv::FindFile(const std::string& path, std::string_view op) {
  const std::string norm = Normalize(path);
  absl::MutexLock lock(&mu_);
  auto it = files_.find(norm);
  if (it == files_.end()) {
    if (DirExistsLocked(norm)) {
      return absl::FailedPreconditionError(fmt::format("{} {}: Is a directory", op, path));
    }
    return absl::NotFoundError(fmt::format("{} {}: No such file or directory", op, path));
  }
  return it->second;
}

absl::StatusOr<std::unique_ptr<SequentialFile>> MemEnv::NewSequentialFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::shared_ptr<FileState> file, FindFile(path, "open"));
  return std::make_unique<MemSequentialFile>(std::move(file));
}

absl::StatusOr<std::unique_ptr<RandomAccessFile>> MemEnv::NewRandomAccessFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::shared_ptr<FileState> file, FindFile(path, "open"));
  return std::make_unique<MemRandomAccessFile>(std::move(file));
}

absl::StatusOr<std::unique_ptr<WritableFile>> MemEnv::NewWritableFile(const std::string& path) {
  const std::string norm = Normalize(path);
  const int64_t now = NowMicros();
  absl::MutexLock lock(&mu_);
  if (DirExistsLocked(norm)) {
    return absl::FailedPreconditionError(fmt::format("create {}: Is a directory", path));
  }
  if (!DirExistsLocked(DirName(norm))) {
    return absl::NotFoundError(fmt::format("create {}: No such file or directory", path));
  }
  auto file = std::make_shared<FileState>();
  {
    absl::MutexLock file_lock(&file->mu);
    file->mtime_micros = now;
  }
  files_[norm] = file;
  return std::make_unique<MemWritableFile>(path, std::move(file));
}

bool MemEnv::FileExists(const std::string& path) {
  const std::string norm = Normalize(path);
  absl::MutexLock lock(&mu_);
  return files_.contains(norm) || DirExistsLocked(norm);
}

absl::StatusOr<uint64_t> MemEnv::GetFileSize(const std::string& path) {
  const std::string norm = Normalize(path);
  std::shared_ptr<FileState> file;
  {
    absl::MutexLock lock(&mu_);
    auto it = files_.find(norm);
    if (it == files_.end()) {
      if (DirExistsLocked(norm)) return uint64_t{0};
      return absl::NotFoundError(fmt::format("stat {}: No such file or directory", path));
    }
    file = it->second;
  }
  absl::MutexLock lock(&file->mu);
  return static_cast<uint64_t>(file->data.size());
}

absl::StatusOr<std::vector<FileInfo>> MemEnv::GetChildren(const std::string& dir) {
  const std::string norm = Normalize(dir);
  std::vector<FileInfo> out;
  std::vector<std::shared_ptr<FileState>> states;
  {
    absl::MutexLock lock(&mu_);
    if (!DirExistsLocked(norm)) {
      if (files_.contains(norm)) {
        return absl::NotFoundError(fmt::format("opendir {}: Not a directory", dir));
      }
      return absl::NotFoundError(fmt::format("opendir {}: No such file or directory", dir));
    }
    // Relative paths in "." have no prefix; everything else is "<dir>/".
    const std::string prefix = norm == "." ? "" : (norm == "/" ? "/" : norm + "/");
    auto direct_child = [&](const std::string& p) -> std::optional<std::string> {
      if (p.size() <= prefix.size() || p.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
      if (prefix.empty() && p[0] == '/') return std::nullopt;
      std::string rest = p.substr(prefix.size());
      if (rest.find('/') != std::string::npos) return std::nullopt;
      return rest;
    };
    for (auto it = dirs_.lower_bound(prefix); it != dirs_.end(); ++it) {
      if (it->compare(0, prefix.size(), prefix) != 0) break;
      if (auto name = direct_child(*it)) out.push_back(FileInfo{*name, true, 0});
    }
    for (auto it = files_.lower_bound(prefix); it != files_.end(); ++it) {
      if (it->first.compare(0, prefix.size(), prefix) != 0) break;
      if (auto name = direct_child(it->first)) {
        out.push_back(FileInfo{*name, false, 0});
        states.push_back(it->second);
      }
    }
  }
  // Lock order is mu_ before a file's mu; sizes are read after releasing
  // mu_ anyway, to keep the namespace lock short.
  size_t s = 0;
  for (FileInfo& info : out) {
    if (info.is_dir) continue;
    absl::MutexLock lock(&states[s]->mu);
    info.size = states[s]->data.size();
    info.mtime_micros = states[s]->mtime_micros;
    ++s;
  }
  return out;
}

absl::Status MemEnv::DeleteFile(const std::string& path) {
  const std::string norm = Normalize(path);
  absl::MutexLock lock(&mu_);
  if (files_.erase(norm) == 0) {
    if (DirExistsLocked(norm)) return absl::FailedPreconditionError(fmt::format("unlink {}: Is a directory", path));
    return absl::NotFoundError(fmt::format("unlink {}: No such file or directory", path));
  }
  return absl::OkStatus();
}

absl::Status MemEnv::CreateDirs(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("CreateDirs: empty path");
  const std::string norm = Normalize(dir);
  absl::MutexLock lock(&mu_);
  // Check every ancestor first so that a failure creates nothing.
  std::vector<std::string> chain;
  for (std::string p = norm; p != "/" && p != "."; p = DirName(p)) chain.push_back(p);
  for (const std::string& p : chain) {
    if (files_.contains(p)) {
      return absl::AlreadyExistsError(fmt::format("mkdir {}: exists and is not a directory", p));
    }
  }
  for (const std::string& p : chain) dirs_.insert(p);
  return absl::OkStatus();
}

absl::Status MemEnv::DeleteDir(const std::string& dir) {
  const std::string norm = Normalize(dir);
  absl::MutexLock lock(&mu_);
  if (!dirs_.contains(norm)) {
    if (files_.contains(norm)) return absl::NotFoundError(fmt::format("rmdir {}: Not a directory", dir));
    return absl::NotFoundError(fmt::format("rmdir {}: No such file or directory", dir));
  }
  const std::string prefix = norm + "/";
  auto has_child = [&](const auto& container, auto key_of) {
    auto it = container.lower_bound(prefix);
    return it != container.end() && key_of(*it).compare(0, prefix.size(), prefix) == 0;
  };
  if (has_child(dirs_, [](const std::string& s) -> const std::string& { return s; }) ||
      has_child(files_, [](const auto& kv) -> const std::string& { return kv.first; })) {
    return absl::FailedPreconditionError(fmt::format("rmdir {}: Directory not empty", dir));
  }
  dirs_.erase(norm);
  return absl::OkStatus();
}

absl::Status MemEnv::SyncFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::shared_ptr<FileState> file, FindFile(path, "sync"));
  absl::MutexLock lock(&file->mu);
  file->synced_size = file->data.size();
  return absl::OkStatus();
}

namespace {
class MemFileLock final : public FileLock {
 public:
  MemFileLock(absl::Mutex& mu, std::set<std::string>& locked, std::string path)
      : mu_(mu), locked_(locked), path_(std::move(path)) {}
  ~MemFileLock() override {
    absl::MutexLock lock(&mu_);
    locked_.erase(path_);
  }

 private:
  absl::Mutex& mu_;
  std::set<std::string>& locked_;
  const std::string path_;
};
}  // namespace

absl::StatusOr<std::unique_ptr<FileLock>> MemEnv::LockFile(const std::string& path) {
  const std::string norm = Normalize(path);
  if (!FileExists(path)) {
    ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, NewWritableFile(path));
    RETURN_IF_ERROR(f->Close());
  }
  absl::MutexLock lock(&mu_);
  if (!locked_.insert(norm).second) return absl::UnavailableError(fmt::format("{} is locked by another writer", path));
  return std::unique_ptr<FileLock>(new MemFileLock(mu_, locked_, norm));
}

absl::Status MemEnv::SyncFileSystem(const std::string& path) {
  std::vector<std::shared_ptr<FileState>> states;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [p, file] : files_) states.push_back(file);
  }
  for (const auto& f : states) {
    absl::MutexLock lock(&f->mu);
    f->synced_size = f->data.size();
  }
  return absl::OkStatus();
}

absl::Status MemEnv::TouchFile(const std::string& path) {
  const int64_t now = NowMicros();
  ASSIGN_OR_RETURN(std::shared_ptr<FileState> file, FindFile(path, "touch"));
  absl::MutexLock lock(&file->mu);
  file->mtime_micros = now;
  return absl::OkStatus();
}

absl::Status MemEnv::RenameFile(const std::string& from, const std::string& to) {
  const std::string nfrom = Normalize(from);
  const std::string nto = Normalize(to);
  absl::MutexLock lock(&mu_);
  auto it = files_.find(nfrom);
  if (it == files_.end()) {
    return absl::NotFoundError(fmt::format("rename {} -> {}: No such file or directory", from, to));
  }
  if (DirExistsLocked(nto)) {
    return absl::FailedPreconditionError(fmt::format("rename {} -> {}: Is a directory", from, to));
  }
  if (!DirExistsLocked(DirName(nto))) {
    return absl::NotFoundError(fmt::format("rename {} -> {}: No such file or directory", from, to));
  }
  if (nfrom == nto) return absl::OkStatus();
  std::shared_ptr<FileState> file = std::move(it->second);
  files_.erase(it);
  files_[nto] = std::move(file);
  return absl::OkStatus();
}

absl::Status MemEnv::SyncDir(const std::string& dir) {
  const std::string norm = Normalize(dir);
  absl::MutexLock lock(&mu_);
  if (!DirExistsLocked(norm)) return absl::NotFoundError(fmt::format("open {}: No such file or directory", dir));
  return absl::OkStatus();
}

int64_t MemEnv::NowMicros() {
  absl::MutexLock lock(&clock_mu_);
  if (fake_now_) return *fake_now_;
  return RealNowMicros();
}

int64_t MemEnv::MonotonicMicros() {
  absl::MutexLock lock(&clock_mu_);
  if (fake_now_) return fake_monotonic_;
  return RealMonotonicMicros();
}

void MemEnv::SleepForMicros(int64_t micros) {
  {
    absl::MutexLock lock(&clock_mu_);
    if (fake_now_) {
      if (micros > 0) {
        *fake_now_ += micros;
        fake_monotonic_ += micros;
      }
      return;
    }
  }
  if (micros > 0) std::this_thread::sleep_for(std::chrono::microseconds(micros));
}

void MemEnv::SetNowMicros(int64_t micros) {
  absl::MutexLock lock(&clock_mu_);
  if (!fake_now_) {
    fake_monotonic_ = RealMonotonicMicros();
  } else {
    fake_monotonic_ += std::max<int64_t>(0, micros - *fake_now_);
  }
  fake_now_ = micros;
}

void MemEnv::AdvanceMicros(int64_t micros) {
  absl::MutexLock lock(&clock_mu_);
  if (!fake_now_) {
    fake_now_ = RealNowMicros();
    fake_monotonic_ = RealMonotonicMicros();
  }
  *fake_now_ += micros;
  fake_monotonic_ += micros;
}

void MemEnv::DropUnsyncedData() {
  absl::MutexLock lock(&mu_);
  for (auto it = files_.begin(); it != files_.end();) {
    FileState& f = *it->second;
    absl::MutexLock file_lock(&f.mu);
    if (!f.synced_size) {
      it = files_.erase(it);
      continue;
    }
    f.data.resize(std::min(f.data.size(), *f.synced_size));
    ++it;
  }
}

uint64_t MemEnv::TotalFileBytes() {
  std::vector<std::shared_ptr<FileState>> states;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [path, file] : files_) states.push_back(file);
  }
  uint64_t total = 0;
  for (const auto& f : states) {
    absl::MutexLock lock(&f->mu);
    total += f->data.size();
  }
  return total;
}

std::unique_ptr<MemEnv> NewMemEnv() { return std::make_unique<MemEnv>(); }

}  // namespace cairn
