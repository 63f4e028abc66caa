#include "base/env.h"

#include <unistd.h>

#include <fmt/format.h>

#include "base/ids.h"

namespace cairn {

namespace {
constexpr size_t kReadChunk = 1 << 20;
}  // namespace

absl::StatusOr<std::string> Env::ReadFileToString(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<SequentialFile> file, NewSequentialFile(path));
  std::string out;
  // The size is a hint only: the file may change while we read it.
  if (absl::StatusOr<uint64_t> size = GetFileSize(path); size.ok()) out.reserve(*size + kReadChunk);
  size_t len = 0;
  for (;;) {
    out.resize(len + kReadChunk);
    ASSIGN_OR_RETURN(size_t n, file->Read(out.data() + len, kReadChunk));
    len += n;
    if (n == 0) break;
  }
  out.resize(len);
  return out;
}

absl::Status Env::WriteFileAtomic(const std::string& path, std::string_view data) {
  const std::string tmp = fmt::format("{}.tmp-{}", path, NewRandomHex(8));
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, NewWritableFile(tmp));
    RETURN_IF_ERROR(file->Append(data));
    RETURN_IF_ERROR(file->Sync());
    RETURN_IF_ERROR(file->Close());
    RETURN_IF_ERROR(RenameFile(tmp, path));
    return SyncDir(DirName(path));
  }();
  if (!status.ok() && FileExists(tmp)) DeleteFile(tmp).IgnoreError();
  return status;
}

std::string FindExecutable(const std::string& program, const std::string& search_path) {
  size_t start = 0;
  while (start <= search_path.size()) {
    size_t end = search_path.find(':', start);
    if (end == std::string::npos) end = search_path.size();
    if (end > start) {
      std::string candidate = JoinPath(search_path.substr(start, end - start), program);
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    start = end + 1;
  }
  return "";
}

std::string JoinPath(std::string_view a, std::string_view b) {
  if (a.empty()) return std::string(b);
  if (b.empty()) return std::string(a);
  while (!b.empty() && b.front() == '/') b.remove_prefix(1);
  std::string out(a);
  if (out.back() != '/') out += '/';
  out += b;
  return out;
}

std::string DirName(std::string_view path) {
  // Trailing slashes do not name a component: "a/b/" is "a/b".
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  const size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return ".";
  std::string_view dir = path.substr(0, slash);
  while (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
  if (dir.empty()) return "/";
  return std::string(dir);
}

}  // namespace cairn
