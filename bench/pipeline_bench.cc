// Pipeline scheduling benchmarks (JSON lines on stdout):
//   pipeline_schedule: a 1,000-step DAG of no-op sandboxed steps through the
//     scheduler (each step a tracked run: cache lookup, MLflow run with tags,
//     params, artifacts, log ingest, status updates), against the same 1,000
//     no-op jobs submitted straight to the sandbox executor with the same
//     parallelism. The difference per step is the scheduler's overhead.
//     Target: <= 5 ms per step.
//   pipeline_cached_rerun: re-running a 100-step pipeline whose every step
//     is in the run cache (code snapshot, environment capture, 100 cache
//     hits, all recorded). Target: <= 1 s.
// Usage: pipeline_bench [--steps 1000] [--cached-steps 100] [--parallel 2]
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>

#include "base/json.h"
#include "data/chunk_store.h"
#include "data/dataset_store.h"
#include "db/sqlite_database.h"
#include "exec/sandbox_executor.h"
#include "pipeline/scheduler.h"
#include "store/local_object_store.h"
#include "tracking/tracking_store.h"

namespace cairn {
namespace {

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Step i depends on i-1 and i/2: a DAG that is wide enough to run `parallel`
// steps at once most of the time.
std::string DagSpec(const std::string& name, int steps, int parallel) {
  std::string y = fmt::format("name: {}\nmax_parallel: {}\nsteps:\n", name, parallel);
  for (int i = 0; i < steps; ++i) {
    // Distinct commands: identical steps would share one cache key.
    y += fmt::format("  s{}:\n    command: [\"true\", \"{}\"]\n", i, i);
    std::vector<std::string> after;
    if (i >= 2) after.push_back(fmt::format("s{}", i - 2));
    if (i >= 4 && i / 2 != i - 2) after.push_back(fmt::format("s{}", i / 2));
    if (!after.empty()) y += fmt::format("    after: [{}]\n", fmt::join(after, ", "));
  }
  return y;
}

struct Stores {
  std::unique_ptr<Env> env = NewPosixEnv();
  std::unique_ptr<db::Database> db;
  std::unique_ptr<store::ObjectStore> objects;
  std::unique_ptr<tracking::TrackingStore> tracking;
  std::unique_ptr<data::ChunkStore> chunks;
  std::unique_ptr<data::DatasetStore> datasets;
  std::unique_ptr<pipeline::PipelineStore> store;
};

absl::Status Open(Stores& s, const std::string& dir) {
  ASSIGN_OR_RETURN(s.db, db::OpenSqliteDatabase({.path = dir + "/cairn.db"}));
  ASSIGN_OR_RETURN(s.objects, store::LocalObjectStore::Create(*s.env, dir + "/objects"));
  ASSIGN_OR_RETURN(s.tracking, tracking::TrackingStore::Create(*s.db, *s.env));
  ASSIGN_OR_RETURN(s.chunks, data::ChunkStore::Create(*s.db, *s.objects, *s.env));
  ASSIGN_OR_RETURN(s.datasets, data::DatasetStore::Create(*s.db, *s.chunks, nullptr, *s.env));
  ASSIGN_OR_RETURN(s.store, pipeline::PipelineStore::Create(*s.db, *s.env));
  return absl::OkStatus();
}

// The same no-op jobs straight through the executor, `parallel` at a time.
absl::StatusOr<double> BareExecutor(exec::Executor& ex, const std::string& dir, int jobs, int parallel) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<exec::JobId> running;
  for (int i = 0; i < jobs; ++i) {
    if (static_cast<int>(running.size()) == parallel) {
      RETURN_IF_ERROR(ex.Wait(running.front(), absl::InfiniteDuration()).status());
      running.erase(running.begin());
    }
    exec::JobSpec spec;
    spec.argv = {"true"};
    spec.job_dir = fmt::format("{}/bare/{}", dir, i);
    std::filesystem::create_directories(spec.job_dir);
    ASSIGN_OR_RETURN(exec::JobId id, ex.Submit(spec));
    running.push_back(id);
  }
  for (const exec::JobId& id : running) RETURN_IF_ERROR(ex.Wait(id, absl::InfiniteDuration()).status());
  return Seconds(start);
}

absl::Status Main(int steps, int cached_steps, int parallel) {
  struct TempDir {
    std::string p;
    TempDir() {
      std::string t = "/tmp/cairn-pipeline-bench-XXXXXX";
      p = ::mkdtemp(t.data()) != nullptr ? t : "/tmp/cairn-pipeline-bench";
      ::chmod(p.c_str(), 0755);  // steps run as an unprivileged user
    }
    ~TempDir() {
      std::error_code ec;
      std::filesystem::remove_all(p, ec);
    }
    const std::string& path() const { return p; }
  } tmp;
  Stores s;
  RETURN_IF_ERROR(Open(s, tmp.path()));
  ASSIGN_OR_RETURN(auto executor, exec::SandboxExecutor::Create(exec::SandboxOptions{}));
  ASSIGN_OR_RETURN(auto sched, pipeline::PipelineScheduler::Create({.env = s.env.get(),
                                                                    .tracking = s.tracking.get(),
                                                                    .datasets = s.datasets.get(),
                                                                    .chunks = s.chunks.get(),
                                                                    .objects = s.objects.get(),
                                                                    .store = s.store.get(),
                                                                    .executors = {executor.get()},
                                                                    .work_dir = tmp.path() + "/work"}));
  const std::string project = tmp.path() + "/project";
  std::filesystem::create_directories(project);
  std::ofstream(project + "/README") << "bench\n";

  // 1. The 1,000-step DAG.
  ASSIGN_OR_RETURN(double bare, BareExecutor(*executor, tmp.path(), steps, parallel));
  RETURN_IF_ERROR(sched->Register(DagSpec("dag", steps, parallel), "cairn.yaml", project).status());
  auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(std::string id, sched->Start({.pipeline = "dag"}));
  ASSIGN_OR_RETURN(pipeline::PipelineRunRecord run, sched->Wait(id, absl::InfiniteDuration()));
  const double total = Seconds(start);
  if (run.status != pipeline::kSucceeded) return absl::InternalError("the DAG run failed: " + run.reason);
  const double overhead_ms = (total - bare) / steps * 1000;
  std::printf("%s\n", Json({{"bench", "pipeline_schedule"},
                            {"steps", steps},
                            {"max_parallel", parallel},
                            {"pipeline_s", total},
                            {"bare_executor_s", bare},
                            {"per_step_total_ms", total / steps * 1000},
                            {"overhead_ms_per_step", overhead_ms},
                            {"target_ms", 5}})
                          .dump()
                          .c_str());
  std::fflush(stdout);

  // 2. A fully cached 100-step rerun.
  RETURN_IF_ERROR(sched->Register(DagSpec("cached", cached_steps, parallel), "cairn.yaml", project).status());
  ASSIGN_OR_RETURN(id, sched->Start({.pipeline = "cached"}));
  ASSIGN_OR_RETURN(run, sched->Wait(id, absl::InfiniteDuration()));
  if (run.status != pipeline::kSucceeded) return absl::InternalError("the first run failed: " + run.reason);
  start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(id, sched->Start({.pipeline = "cached"}));
  ASSIGN_OR_RETURN(run, sched->Wait(id, absl::InfiniteDuration()));
  const double rerun = Seconds(start);
  int cached = 0;
  for (const auto& st : run.steps) cached += st.status == pipeline::kCached;
  std::printf("%s\n", Json({{"bench", "pipeline_cached_rerun"},
                            {"steps", cached_steps},
                            {"cached", cached},
                            {"seconds", rerun},
                            {"target_s", 1}})
                          .dump()
                          .c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace cairn

int main(int argc, char** argv) {
  int steps = 1000, cached = 100, parallel = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--steps") == 0) steps = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--cached-steps") == 0) cached = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--parallel") == 0) parallel = std::atoi(argv[i + 1]);
  }
  absl::Status s = cairn::Main(steps, cached, parallel);
  if (!s.ok()) {
    std::fprintf(stderr, "pipeline_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
