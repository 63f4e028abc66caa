#include "base/fault_injection_env.h"

#include <cassert>

namespace cairn {
namespace {

using Op = FaultInjectionEnv::Op;

class FaultSequentialFile final : public SequentialFile {
 public:
  FaultSequentialFile(FaultInjectionEnv& env, std::unique_ptr<SequentialFile> base)
      : env_(env), base_(std::move(base)) {}
  absl::StatusOr<size_t> Read(char* scratch, size_t n) override {
    RETURN_IF_ERROR(env_.MaybeFail(Op::kRead));
    return base_->Read(scratch, n);
  }
  absl::Status Skip(uint64_t n) override { return base_->Skip(n); }

 private:
  FaultInjectionEnv& env_;
  std::unique_ptr<SequentialFile> base_;
};

class FaultRandomAccessFile final : public RandomAccessFile {
 public:
  FaultRandomAccessFile(FaultInjectionEnv& env, std::unique_ptr<RandomAccessFile> base)
      : env_(env), base_(std::move(base)) {}
  absl::StatusOr<size_t> Read(uint64_t offset, char* scratch, size_t n) const override {
    RETURN_IF_ERROR(env_.MaybeFail(Op::kRead));
    return base_->Read(offset, scratch, n);
  }

 private:
  FaultInjectionEnv& env_;
  std::unique_ptr<RandomAccessFile> base_;
};

class FaultWritableFile final : public WritableFile {
 public:
  FaultWritableFile(FaultInjectionEnv& env, std::unique_ptr<WritableFile> base)
      : env_(env), base_(std::move(base)) {}
  absl::Status Append(std::string_view data) override {
    RETURN_IF_ERROR(env_.MaybeFail(Op::kAppend));
    return base_->Append(data);
  }
  absl::Status Sync() override {
    RETURN_IF_ERROR(env_.MaybeFail(Op::kSync));
    return base_->Sync();
  }
  absl::Status Close() override {
    RETURN_IF_ERROR(env_.MaybeFail(Op::kClose));
    return base_->Close();
  }

 private:
  FaultInjectionEnv& env_;
  std::unique_ptr<WritableFile> base_;
};

}  // namespace

std::string_view FaultInjectionEnv::OpName(Op op) {
  switch (op) {
    case Op::kCreate: return "create";
    case Op::kAppend: return "append";
    case Op::kSync: return "sync";
    case Op::kClose: return "close";
    case Op::kRead: return "read";
    case Op::kRename: return "rename";
    case Op::kDeleteFile: return "delete_file";
    case Op::kSyncDir: return "sync_dir";
    case Op::kCreateDirs: return "create_dirs";
  }
  return "?";
}

FaultInjectionEnv::FaultInjectionEnv(Env& base) : base_(base) {}

void FaultInjectionEnv::FailAfter(Op op, int n, absl::Status status) {
  assert(!status.ok() && n >= 0);
  absl::MutexLock lock(&mu_);
  rules_[static_cast<int>(op)] = Rule{n, std::move(status)};
}

void FaultInjectionEnv::FailWritesWithNoSpace() {
  const absl::Status no_space = absl::ResourceExhaustedError("injected: No space left on device");
  absl::MutexLock lock(&mu_);
  for (Op op : {Op::kCreate, Op::kAppend, Op::kSync, Op::kClose}) {
    rules_[static_cast<int>(op)] = Rule{0, no_space};
  }
}

void FaultInjectionEnv::ClearFailure(Op op) {
  absl::MutexLock lock(&mu_);
  rules_[static_cast<int>(op)].reset();
}

void FaultInjectionEnv::Reset() {
  absl::MutexLock lock(&mu_);
  for (auto& rule : rules_) rule.reset();
  counts_.fill(0);
}

int FaultInjectionEnv::CallCount(Op op) {
  absl::MutexLock lock(&mu_);
  return counts_[static_cast<int>(op)];
}

absl::Status FaultInjectionEnv::MaybeFail(Op op) {
  absl::MutexLock lock(&mu_);
  const int i = static_cast<int>(op);
  ++counts_[i];
  std::optional<Rule>& rule = rules_[i];
  if (!rule) return absl::OkStatus();
  if (rule->remaining_ok > 0) {
    --rule->remaining_ok;
    return absl::OkStatus();
  }
  return rule->status;
}

absl::StatusOr<std::unique_ptr<SequentialFile>> FaultInjectionEnv::NewSequentialFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<SequentialFile> file, base_.NewSequentialFile(path));
  return std::make_unique<FaultSequentialFile>(*this, std::move(file));
}

absl::StatusOr<std::unique_ptr<RandomAccessFile>> FaultInjectionEnv::NewRandomAccessFile(
    const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file, base_.NewRandomAccessFile(path));
  return std::make_unique<FaultRandomAccessFile>(*this, std::move(file));
}

absl::StatusOr<std::unique_ptr<WritableFile>> FaultInjectionEnv::NewWritableFile(const std::string& path) {
  RETURN_IF_ERROR(MaybeFail(Op::kCreate));
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, base_.NewWritableFile(path));
  return std::make_unique<FaultWritableFile>(*this, std::move(file));
}

absl::Status FaultInjectionEnv::DeleteFile(const std::string& path) {
  RETURN_IF_ERROR(MaybeFail(Op::kDeleteFile));
  return base_.DeleteFile(path);
}

absl::Status FaultInjectionEnv::CreateDirs(const std::string& dir) {
  RETURN_IF_ERROR(MaybeFail(Op::kCreateDirs));
  return base_.CreateDirs(dir);
}

absl::Status FaultInjectionEnv::RenameFile(const std::string& from, const std::string& to) {
  RETURN_IF_ERROR(MaybeFail(Op::kRename));
  return base_.RenameFile(from, to);
}

absl::Status FaultInjectionEnv::SyncFile(const std::string& path) {
  RETURN_IF_ERROR(MaybeFail(Op::kSync));
  return base_.SyncFile(path);
}

absl::Status FaultInjectionEnv::SyncFileSystem(const std::string& path) {
  RETURN_IF_ERROR(MaybeFail(Op::kSync));
  return base_.SyncFileSystem(path);
}

absl::Status FaultInjectionEnv::SyncDir(const std::string& dir) {
  RETURN_IF_ERROR(MaybeFail(Op::kSyncDir));
  return base_.SyncDir(dir);
}

}  // namespace cairn
