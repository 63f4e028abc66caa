#include "cli/server_command.h"

#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstdio>

#include "api/data_directory.h"
#include "api/inference_api.h"
#include "api/local_registry.h"
#include "api/mlflow_api.h"
#include "api/pipeline_api.h"
#include "base/json.h"
#include "base/logging.h"
#include "cli/cli_common.h"
#include "db/sqlite_database.h"
#include "http/http.h"
#include "serving/inference_plane.h"
#include "store/fsck.h"

namespace cairn::cli {

absl::Status RunServer(const ServerOptions& options) {
  RETURN_IF_ERROR(InitLogging(options.log_level, options.data_dir + "/logs/cairn.log"));
  const sigset_t stop_signals = BlockStopSignals();

  auto env = NewPosixEnv();
  ASSIGN_OR_RETURN(auto dir, api::DataDirectory::Open(*env, options.data_dir));
  // The scheduler starts with the server: it resumes the pipeline runs a
  // crashed server left and watches the triggers.
  if (auto p = dir->pipelines({.server = true}); !p.ok()) {
    return Annotate(p.status(), "cannot start the pipeline scheduler");
  }
  // The embedded inference plane: serves the registry's deployments on this
  // same port (/v2/..., /metrics), following alias moves.
  api::LocalRegistry model_source(*dir);
  serving::PlaneOptions plane_options;
  plane_options.cache_dir = dir->path() + "/serving/models";
  plane_options.payload_log_dir = dir->path() + "/logs/predictions";
  plane_options.payload_sample_rate = options.payload_sample;
  ASSIGN_OR_RETURN(auto plane, serving::InferencePlane::Create(model_source, plane_options, *env));
  if (absl::Status s = plane->Start(); !s.ok()) return Annotate(s, "cannot start the inference plane");
  http::Router router = api::BuildRouter(*dir);
  api::AddInferenceRoutes(*plane, router);
  http::Server::Options server_options;
  server_options.host = options.host;
  server_options.port = options.port;
  auto server = http::Server::Create(server_options, std::move(router));
  if (!server.ok()) {
    return Annotate(server.status(), fmt::format("cannot listen on {}:{}", options.host, options.port));
  }
  std::printf("Cairn server listening on http://%s:%d\n", options.host.c_str(), (*server)->port());
  std::fflush(stdout);
  spdlog::info("Cairn {} serving data directory {} on {}:{}", CAIRN_VERSION, dir->path(), options.host,
               (*server)->port());

  int sig = WaitForStopSignal(stop_signals);
  spdlog::info("received signal {}, shutting down", sig);
  (*server)->Stop();
  plane->Stop();
  return absl::OkStatus();
}

absl::StatusOr<int> RunFsck(const std::string& data_dir, bool json) {
  auto env = NewPosixEnv();
  if (!env->FileExists(data_dir + "/cairn.db")) {
    return absl::NotFoundError(fmt::format("{} is not a Cairn data directory (no cairn.db)", data_dir));
  }
  ASSIGN_OR_RETURN(auto dir, api::DataDirectory::Open(*env, data_dir, api::DataDirectory::Role::kClient));
  std::vector<std::string> problems;

  // 1. Every object hashes to its name.
  uint64_t last_report = 0;
  auto report = store::FsckObjectStore(*env, dir->objects_path(), [&](uint64_t done) {
    if (!json && done - last_report >= (256ull << 20)) {
      last_report = done;
      std::fprintf(stderr, "\rchecked %.1f GiB of objects", static_cast<double>(done) / (1ull << 30));
    }
  });
  if (last_report > 0) std::fprintf(stderr, "\n");
  if (!report.ok()) return Annotate(report.status(), "object store check failed");
  for (const store::FsckProblem& p : report->problems) {
    problems.push_back(fmt::format("object {}: {} ({})", p.path, store::FsckProblemKindName(p.kind), p.detail));
  }

  // 2. The database is intact.
  ASSIGN_OR_RETURN(auto conn, dir->database().Connect());
  ASSIGN_OR_RETURN(auto db_problems, db::IntegrityCheck(*conn));
  for (const std::string& p : db_problems) problems.push_back("database: " + p);
  ASSIGN_OR_RETURN(auto tracking_problems, dir->tracking().CheckConsistency());
  for (const std::string& p : tracking_problems) problems.push_back("tracking: " + p);

  // 3. Every artifact record points at a present object of the recorded size.
  uint64_t artifacts = 0;
  RETURN_IF_ERROR(dir->tracking().ForEachArtifactDigest(
      [&](const std::string& path, const tracking::ArtifactFile& file) -> absl::Status {
        ++artifacts;
        auto digest = Digest::FromHex(file.digest);
        if (!digest.ok()) {
          problems.push_back(fmt::format("artifact {}: malformed digest '{}'", path, file.digest));
          return absl::OkStatus();
        }
        auto size = dir->objects().Size(*digest);
        if (!size.ok()) {
          problems.push_back(fmt::format("artifact {}: object {} is missing", path, file.digest));
        } else if (*size != static_cast<uint64_t>(file.size)) {
          problems.push_back(fmt::format("artifact {}: object {} has {} bytes, recorded {}", path, file.digest,
                                         *size, file.size));
        }
        return absl::OkStatus();
      }));

  // 4. Datasets: index entries, manifests, commits, refs.
  uint64_t dataset_files = 0;
  ASSIGN_OR_RETURN(auto data_problems, dir->datasets().CheckConsistency(dir->objects(), &dataset_files));
  for (const std::string& p : data_problems) problems.push_back("datasets: " + p);

  if (json) {
    Json out = {{"objects_checked", report->objects_checked},
                {"dataset_files_checked", dataset_files},
                {"bytes_checked", report->bytes_checked},
                {"artifacts_checked", artifacts},
                {"problems", problems},
                {"clean", problems.empty()}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("checked %llu objects (%llu bytes), %llu artifact records, %llu dataset files, database integrity\n",
                static_cast<unsigned long long>(report->objects_checked),
                static_cast<unsigned long long>(report->bytes_checked), static_cast<unsigned long long>(artifacts),
                static_cast<unsigned long long>(dataset_files));
    for (const std::string& p : problems) std::printf("PROBLEM %s\n", p.c_str());
    std::printf(problems.empty() ? "clean\n" : "%zu problem(s) found\n", problems.size());
  }
  return static_cast<int>(problems.size());
}

}  // namespace cairn::cli
