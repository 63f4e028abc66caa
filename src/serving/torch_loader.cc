#include "serving/torch_loader.h"

#include <dlfcn.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace cairn::serving {
namespace {

// The directory of the running executable, or "" when /proc is unavailable.
std::string ExecutableDir() {
  std::error_code ec;
  std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  return exe.parent_path().string();
}

// Opened libraries' entry points, by path. dlopen is process-wide by nature,
// so this cache is too: it only saves repeated dlopen/dlsym calls and never
// changes what a load returns. Handles are never closed (see the header).
class EntryPointCache {
 public:
  absl::StatusOr<TorchBackendEntryPoint> Open(const std::string& path) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(path);
    if (it != entries_.end()) return it->second;
    // RTLD_LOCAL keeps libtorch's many symbols out of the global namespace,
    // where they could clash with another library the host loads.
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* why = ::dlerror();
      return absl::FailedPreconditionError(
          fmt::format("TorchScript support is not installed correctly: cannot load {}: {}", path,
                      why != nullptr ? why : "unknown dlopen error"));
    }
    ::dlerror();  // clear any stale error before dlsym
    void* symbol = ::dlsym(handle, kTorchEntryPoint);
    if (symbol == nullptr) {
      // The handle stays open: closing a library that may have started
      // threads (libtorch, OpenMP) is not safe, and this is a one-off error.
      return absl::FailedPreconditionError(fmt::format(
          "{} is not a compatible TorchScript backend: it has no entry point {} (built by another version?)",
          path, kTorchEntryPoint));
    }
    auto entry = reinterpret_cast<TorchBackendEntryPoint>(symbol);
    entries_.emplace(path, entry);
    return entry;
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, TorchBackendEntryPoint> entries_ ABSL_GUARDED_BY(mu_);
};

EntryPointCache& Cache() {
  static auto* cache = new EntryPointCache();  // never destroyed: libraries are never unloaded
  return *cache;
}

absl::StatusCode ToStatusCode(int code) {
  if (code <= 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return absl::StatusCode::kInternal;
  }
  return static_cast<absl::StatusCode>(code);
}

}  // namespace

std::vector<std::string> TorchLibraryCandidates(const BackendOptions& options) {
  // An explicit choice (option or environment) is the only candidate: a
  // wrong path should be reported, not silently replaced by another build.
  if (!options.torch_library.empty()) return {options.torch_library};
  const char* env = std::getenv("CAIRN_TORCH_BACKEND");
  if (env != nullptr && *env != '\0') return {env};
  std::vector<std::string> candidates;
  std::string dir = ExecutableDir();
  if (!dir.empty()) {
    candidates.push_back((std::filesystem::path(dir) / kTorchLibraryName).string());
    candidates.push_back(
        (std::filesystem::path(dir).parent_path() / "lib" / "cairn" / kTorchLibraryName).lexically_normal().string());
  }
  return candidates;
}

absl::StatusOr<std::unique_ptr<ModelBackend>> LoadTorchScriptModel(const ModelDescriptor& descriptor,
                                                                   const BackendOptions& options) {
  if (descriptor.flavor != Flavor::kTorchScript) {
    return absl::InvalidArgumentError(
        fmt::format("LoadTorchScriptModel: model in {} is not a TorchScript model", descriptor.model_dir));
  }
  std::vector<std::string> candidates = TorchLibraryCandidates(options);
  std::string found;
  for (const std::string& path : candidates) {
    if (::access(path.c_str(), R_OK) == 0) {
      found = path;
      break;
    }
  }
  if (found.empty()) {
    std::string looked;
    for (const std::string& path : candidates) {
      if (!looked.empty()) looked += ", ";
      looked += path;
    }
    return absl::FailedPreconditionError(
        fmt::format("TorchScript support is not installed: {} not found (looked in {})", kTorchLibraryName,
                    looked.empty() ? "no candidate path: set CAIRN_TORCH_BACKEND" : looked));
  }
  ASSIGN_OR_RETURN(TorchBackendEntryPoint entry, Cache().Open(found));

  std::array<char, 2048> error{};
  ModelBackend* raw = nullptr;
  int code = entry(&descriptor, &options, &raw, error.data(), error.size());
  std::unique_ptr<ModelBackend> backend(raw);
  if (code != 0) {
    error.back() = '\0';  // do not trust the library to terminate the message
    return absl::Status(ToStatusCode(code), error.data());
  }
  if (backend == nullptr) {
    return absl::InternalError(fmt::format("{} reported success but returned no model", found));
  }
  return backend;
}

}  // namespace cairn::serving
