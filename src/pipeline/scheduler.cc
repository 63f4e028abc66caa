#include "pipeline/scheduler.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <system_error>

#include <fmt/format.h>

#include "absl/container/flat_hash_map.h"
#include "base/ids.h"
#include "base/sha256.h"
#include "exec/environment.h"
#include "exec/job_files.h"
#include "pipeline/code_snapshot.h"
#include "pipeline/spec.h"
#include "pipeline/step_data.h"
#include "pipeline/step_metrics.h"
#include "pipeline/triggers.h"
#include "pipeline/work_dir_gc.h"

namespace cairn::pipeline {
namespace {

namespace fs = std::filesystem;

constexpr char kRecordMount[] = "_cairn";  // /cairn/out/_cairn: the SDK's record file when offline
constexpr char kRecordFile[] = "records.jsonl";

// The dataset a step output is committed to.
std::string OutputDataset(const std::string& pipeline, const std::string& step, const std::string& output) {
  return fmt::format("{}.{}.{}", pipeline, step, output);
}

std::string Short(const std::string& id) { return id.substr(0, 12); }

}  // namespace

// One pipeline run being executed by this scheduler.
struct PipelineScheduler::ActiveRun {
  std::string id;  // set before the run's thread starts, then read-only
  absl::Mutex mu;
  PipelineRunRecord run ABSL_GUARDED_BY(mu);
  PipelineSpec spec;  // set by Prepare, then read-only
  std::vector<const StepSpec*> steps;  // run.steps[i] is steps[i]
  absl::flat_hash_map<std::string, size_t> index;  // step name -> position
  std::string code_dir;
  CodeSnapshot code;
  exec::EnvironmentInfo environment;
  std::string experiment_id;
  Digest environment_artifact, code_artifact;
  exec::Executor* executor = nullptr;
  std::map<std::string, std::pair<data::Dataset, data::DatasetCommit>> resolved;  // "NAME@REF" -> commit
  std::atomic<bool> cancel{false};
  std::set<std::string> running_jobs ABSL_GUARDED_BY(mu);  // job ids
  std::thread thread;
  bool finished ABSL_GUARDED_BY(mu) = false;
  std::map<std::string, std::string> input_digests ABSL_GUARDED_BY(mu);  // see ContentDigest
};

PipelineScheduler::PipelineScheduler(const SchedulerDeps& deps) : deps_(deps) {}

absl::StatusOr<std::unique_ptr<PipelineScheduler>> PipelineScheduler::Create(const SchedulerDeps& deps) {
  if (deps.env == nullptr || deps.tracking == nullptr || deps.datasets == nullptr || deps.chunks == nullptr ||
      deps.objects == nullptr || deps.store == nullptr || deps.work_dir.empty()) {
    return absl::InvalidArgumentError("PipelineScheduler: every dependency must be given");
  }
  auto s = std::unique_ptr<PipelineScheduler>(new PipelineScheduler(deps));
  std::error_code ec;
  for (const char* sub : {"owners", "code", "inputs", "jobs"}) {
    fs::create_directories(fs::path(deps.work_dir) / sub, ec);
    if (ec) return absl::PermissionDeniedError(fmt::format("cannot create {}/{}: {}", deps.work_dir, sub, ec.message()));
  }
  // Steps run as an unprivileged user: they must be able to reach their
  // mounts' parents' contents (the folders themselves are bind-mounted).
  ::chmod(deps.work_dir.c_str(), 0755);
  for (exec::Executor* e : deps.executors) s->AddExecutor(e);
  s->owner_ = NewRandomHex(8);
  ASSIGN_OR_RETURN(s->owner_lock_, deps.env->LockFile(deps.work_dir + "/owners/" + s->owner_ + ".lock"));
  RETURN_IF_ERROR(s->Recover());
  return s;
}

PipelineScheduler::~PipelineScheduler() {
  stopping_ = true;
  std::vector<ActiveRun*> runs;
  {
    absl::MutexLock l(&mu_);
    for (auto& [id, a] : active_) runs.push_back(a.get());
  }
  for (ActiveRun* a : runs) {
    if (a->thread.joinable()) a->thread.join();
  }
  // Our lock file goes with us; the runs left unfinished are found by the
  // next Recover (their owner's lock is free).
  std::error_code ec;
  owner_lock_.reset();
  fs::remove(fs::path(deps_.work_dir) / "owners" / (owner_ + ".lock"), ec);
}

void PipelineScheduler::AddExecutor(exec::Executor* executor) {
  absl::MutexLock l(&mu_);
  executors_[executor->name()] = executor;
}

exec::Executor* PipelineScheduler::ExecutorFor(const std::string& name) {
  absl::MutexLock l(&mu_);
  auto it = executors_.find(name);
  return it == executors_.end() ? nullptr : it->second;
}

absl::StatusOr<PipelineRecord> PipelineScheduler::Register(const std::string& spec_text, const std::string& file_name,
                                                           const std::string& project_dir) {
  ASSIGN_OR_RETURN(PipelineSpec spec, ParsePipelineSpec(spec_text, file_name));
  if (project_dir.empty() || project_dir[0] != '/') {
    return absl::InvalidArgumentError(fmt::format("project_dir must be an absolute path, got '{}'", project_dir));
  }
  std::error_code ec;
  if (!fs::is_directory(project_dir, ec)) {
    return absl::InvalidArgumentError(fmt::format("project_dir {} is not a folder", project_dir));
  }
  ASSIGN_OR_RETURN(PipelineRecord p, deps_.store->UpsertPipeline(spec.name, spec_text, file_name, project_dir));
  RETURN_IF_ERROR(RecordTriggerBaselines(*deps_.store, *deps_.datasets, spec));
  return p;
}

absl::StatusOr<std::string> PipelineScheduler::Start(const RunRequest& request) {
  if (stopping_) return absl::UnavailableError("the scheduler is stopping");
  ASSIGN_OR_RETURN(PipelineRecord p, deps_.store->GetPipeline(request.pipeline));
  ASSIGN_OR_RETURN(PipelineSpec spec, ParsePipelineSpec(p.spec_text, p.file_name));
  RETURN_IF_ERROR(ApplyParamOverrides(spec, request.overrides));
  if (ExecutorFor(request.executor) == nullptr) {
    std::string names;
    {
      absl::MutexLock l(&mu_);
      for (const auto& [n, e] : executors_) names += (names.empty() ? "" : ", ") + n;
    }
    return absl::InvalidArgumentError(
        fmt::format("unknown or unavailable executor '{}' (available: {})", request.executor, names));
  }
  std::vector<std::string> order = TopologicalOrder(spec);
  if (!request.step.empty()) {
    if (spec.FindStep(request.step) == nullptr) {
      return absl::NotFoundError(fmt::format("pipeline '{}' has no step '{}'", spec.name, request.step));
    }
    std::vector<std::string> wanted = StepWithAncestors(spec, request.step);
    std::set<std::string> keep(wanted.begin(), wanted.end());
    std::erase_if(order, [&](const std::string& s) { return !keep.contains(s); });
  }
  PipelineRunRecord run;
  run.id = NewRandomHex(16);
  run.pipeline = spec.name;
  run.status = kPending;
  run.cause = request.cause;
  run.overrides = request.overrides;
  run.target_step = request.step;
  run.executor = request.executor;
  run.no_cache = request.no_cache;
  run.owner = owner_;
  run.owner_is_server = deps_.is_server;
  run.created_at_ms = deps_.env->NowMicros() / 1000;
  for (const std::string& s : order) run.steps.push_back(StepRecord{.step = s});
  RETURN_IF_ERROR(deps_.store->CreateRun(run));
  const std::string id = run.id;
  RETURN_IF_ERROR(Launch(std::move(run), /*resume=*/false));
  return id;
}

absl::Status PipelineScheduler::Launch(PipelineRunRecord run, bool resume) {
  auto active = std::make_unique<ActiveRun>();
  ActiveRun* a = active.get();
  const std::string id = run.id;
  a->id = id;
  {
    absl::MutexLock l(&a->mu);
    a->run = std::move(run);
  }
  absl::MutexLock l(&mu_);
  if (active_.contains(id)) return absl::AlreadyExistsError(fmt::format("pipeline run {} is already running", id));
  // Finished runs are dropped here so that a long-lived server stays small.
  for (auto it = active_.begin(); it != active_.end();) {
    bool done;
    {
      absl::MutexLock rl(&it->second->mu);
      done = it->second->finished;
    }
    if (done) {
      if (it->second->thread.joinable()) it->second->thread.join();
      it = active_.erase(it);
    } else {
      ++it;
    }
  }
  active_[id] = std::move(active);
  a->thread = std::thread([this, a] { RunPipeline(*a); });
  return absl::OkStatus();
}

absl::StatusOr<PipelineRunRecord> PipelineScheduler::Wait(const std::string& id, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    ASSIGN_OR_RETURN(PipelineRunRecord r, deps_.store->GetRun(id));
    if (IsFinalState(r.status) || absl::Now() >= deadline) return r;
    ActiveRun* a = nullptr;
    {
      absl::MutexLock l(&mu_);
      auto it = active_.find(id);
      if (it != active_.end()) a = it->second.get();
    }
    if (a != nullptr) {
      absl::MutexLock l(&a->mu);
      auto done = [a]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(a->mu) { return a->finished; };
      a->mu.AwaitWithDeadline(absl::Condition(&done), std::min(deadline, absl::Now() + absl::Milliseconds(500)));
    } else {
      absl::SleepFor(absl::Milliseconds(100));  // run by another process: poll
    }
  }
}

absl::Status PipelineScheduler::Cancel(const std::string& id) {
  std::string run_id = id;
  if (absl::IsNotFound(deps_.store->GetRun(id).status())) {
    auto step = deps_.store->FindStepByRunId(id);
    if (!step.ok()) return absl::NotFoundError(fmt::format("no pipeline run or step run {}", id));
    run_id = step->first;
  }
  ASSIGN_OR_RETURN(PipelineRunRecord r, deps_.store->GetRun(run_id));
  if (IsFinalState(r.status)) return absl::OkStatus();
  ActiveRun* a = nullptr;
  {
    absl::MutexLock l(&mu_);
    auto it = active_.find(run_id);
    if (it != active_.end()) a = it->second.get();
  }
  if (a == nullptr) {
    ASSIGN_OR_RETURN(bool alive, OwnerAlive(r.owner));
    if (alive) {
      return absl::FailedPreconditionError(
          fmt::format("pipeline run {} is run by another cairn process; cancel it there (or through its server)",
                      Short(run_id)));
    }
    return FailOrphanedRun(r, "cancelled (the process that ran it had stopped)");
  }
  a->cancel = true;
  std::set<std::string> jobs;
  {
    absl::MutexLock l(&a->mu);
    jobs = a->running_jobs;
  }
  for (const std::string& job : jobs) {
    if (a->executor != nullptr) (void)a->executor->Cancel(job);
  }
  return absl::OkStatus();
}

absl::StatusOr<exec::LogChunk> PipelineScheduler::ReadLog(const std::string& run_id, uint64_t offset,
                                                          size_t max_bytes) {
  ASSIGN_OR_RETURN(auto found, deps_.store->FindStepByRunId(run_id));
  const StepRecord& s = found.second;
  if (s.job_dir.empty()) return absl::NotFoundError(fmt::format("run {} has no log yet", run_id));
  // The job folder, whoever ran it (this process, an earlier one, a Slurm
  // node); a final step's job has ended, so its log is complete.
  return exec::ReadJobLog(s.job_dir, offset, max_bytes, IsFinalState(s.status));
}

absl::Status PipelineScheduler::StoreArtifactFile(const std::string& file, const std::string& artifact_path) {
  ASSIGN_OR_RETURN(auto writer, deps_.objects->NewWriter());
  std::ifstream in(file, std::ios::binary);
  if (!in) return absl::NotFoundError(fmt::format("cannot read {}", file));
  std::string buf(1 << 20, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) RETURN_IF_ERROR(writer->Append(std::string_view(buf.data(), in.gcount())));
  }
  ASSIGN_OR_RETURN(store::ObjectInfo info, writer->Commit());
  return deps_.tracking->PutArtifact(artifact_path, {info.digest.ToHex(), static_cast<int64_t>(info.size)});
}

absl::StatusOr<bool> PipelineScheduler::OwnerAlive(const std::string& owner) {
  if (owner == owner_) return true;
  if (owner.empty()) return false;
  const std::string path = deps_.work_dir + "/owners/" + owner + ".lock";
  if (!deps_.env->FileExists(path)) return false;
  absl::StatusOr<std::unique_ptr<FileLock>> lock = deps_.env->LockFile(path);
  if (absl::IsUnavailable(lock.status())) return true;
  RETURN_IF_ERROR(lock.status());
  return false;
}

void PipelineScheduler::CancelOrphanedJob(const StepRecord& s) {
  exec::Executor* e = ExecutorFor(s.executor);
  if (e == nullptr || s.job_id.empty()) return;
  // A Slurm job may still run after its scheduler died: take it over to stop it.
  absl::Status adopted = e->Adopt(s.job_id, s.job_dir);
  if (adopted.ok()) (void)e->Cancel(s.job_id);
}

absl::Status PipelineScheduler::FailOrphanedRun(PipelineRunRecord run, const std::string& why) {
  const int64_t now = deps_.env->NowMicros() / 1000;
  for (StepRecord& s : run.steps) {
    if (IsFinalState(s.status)) continue;
    if (s.status == kRunning) {
      s.status = kFailed;
      s.reason = why;
      if (!s.run_id.empty()) {
        (void)deps_.tracking->UpdateRun({.run_id = s.run_id, .status = "FAILED", .end_time = now});
        (void)deps_.tracking->LogBatch(s.run_id, {}, {}, std::vector<tracking::Tag>{{"cairn.reason", why}});
      }
      CancelOrphanedJob(s);
    } else {
      s.status = kCancelled;
      s.reason = "not run: " + why;
    }
    s.ended_at_ms = now;
    RETURN_IF_ERROR(deps_.store->UpdateStep(run.id, s));
  }
  run.status = kFailed;
  run.reason = why;
  run.ended_at_ms = now;
  return deps_.store->UpdateRun(run);
}

absl::Status PipelineScheduler::Recover() {
  ASSIGN_OR_RETURN(std::vector<PipelineRunRecord> runs, deps_.store->ActiveRuns());
  for (PipelineRunRecord& r : runs) {
    {
      absl::MutexLock l(&mu_);
      if (active_.contains(r.id)) continue;
    }
    ASSIGN_OR_RETURN(bool alive, OwnerAlive(r.owner));
    if (alive) continue;
    if (r.owner_is_server && deps_.is_server && !stopping_) {
      // Resume: steps that were running lost their process; they run again
      // (a new attempt), finished steps keep their outputs.
      const int64_t now = deps_.env->NowMicros() / 1000;
      std::vector<std::string> interrupted;
      for (StepRecord& s : r.steps) {
        if (s.status == kSucceeded || s.status == kCached || s.status == kPending) continue;
        if (s.status != kRunning) {
          // Stopped by the shutdown itself (cancelled, or skipped after it): run again.
          s.status = kPending;
          s.reason.clear();
          RETURN_IF_ERROR(deps_.store->UpdateStep(r.id, s));
          continue;
        }
        interrupted.push_back(s.step);
        if (!s.run_id.empty()) {
          (void)deps_.tracking->UpdateRun({.run_id = s.run_id, .status = "FAILED", .end_time = now});
          (void)deps_.tracking->LogBatch(
              s.run_id, {}, {},
              std::vector<tracking::Tag>{{"cairn.reason", "interrupted: the server stopped while the step ran"}});
        }
        CancelOrphanedJob(s);
        s.status = kPending;
        s.reason = "interrupted by a server restart; run again";
        RETURN_IF_ERROR(deps_.store->UpdateStep(r.id, s));
      }
      r.reason = interrupted.empty() ? "resumed after a server restart"
                                     : fmt::format("resumed after a server restart (re-running {})",
                                                   fmt::join(interrupted, ", "));
      r.owner = owner_;
      RETURN_IF_ERROR(deps_.store->UpdateRun(r));
      RETURN_IF_ERROR(Launch(std::move(r), /*resume=*/true));
    } else {
      std::vector<std::string> running;
      for (const StepRecord& s : r.steps) {
        if (s.status == kRunning) running.push_back(s.step);
      }
      RETURN_IF_ERROR(FailOrphanedRun(
          r, running.empty()
                 ? std::string("the cairn process running this pipeline stopped before it finished")
                 : fmt::format("the cairn process running this pipeline stopped while {} ran", fmt::join(running, ", "))));
    }
  }
  return absl::OkStatus();
}

absl::Status PipelineScheduler::Prepare(ActiveRun& a) {
  PipelineRunRecord run;
  {
    absl::MutexLock l(&a.mu);
    run = a.run;
  }
  ASSIGN_OR_RETURN(PipelineRecord p, deps_.store->GetPipeline(run.pipeline));
  ASSIGN_OR_RETURN(a.spec, ParsePipelineSpec(p.spec_text, p.file_name));
  RETURN_IF_ERROR(ApplyParamOverrides(a.spec, run.overrides));
  a.executor = ExecutorFor(run.executor);
  if (a.executor == nullptr) return absl::FailedPreconditionError(fmt::format("no executor '{}'", run.executor));
  for (size_t i = 0; i < run.steps.size(); ++i) {
    const StepSpec* s = a.spec.FindStep(run.steps[i].step);
    if (s == nullptr) {
      return absl::FailedPreconditionError(
          fmt::format("step '{}' is no longer in the pipeline's spec", run.steps[i].step));
    }
    a.steps.push_back(s);
    a.index[s->name] = i;
  }

  // The code, frozen: later edits of the project cannot change this run.
  ASSIGN_OR_RETURN(a.code, SnapshotCode(p.project_dir));
  a.code_dir = deps_.work_dir + "/code/" + a.code.digest;
  if (deps_.env->FileExists(a.code_dir)) {
    TouchWorkDir(a.code_dir);  // in use: `cairn gc` keeps it
  } else {
    const std::string tmp = a.code_dir + ".tmp-" + NewRandomHex(8);
    RETURN_IF_ERROR(MaterializeSnapshot(a.code, p.project_dir, tmp));
    std::error_code ec;
    fs::rename(tmp, a.code_dir, ec);
    if (ec) fs::remove_all(tmp, ec);  // another run made it first
  }
  ASSIGN_OR_RETURN(a.environment, exec::CaptureEnvironment(a.spec.environment));

  // Artifacts shared by every step of this run: stored once.
  Json code_json = {{"digest", a.code.digest},
                    {"git_commit", a.code.git_commit},
                    {"git_dirty_digest", a.code.git_dirty_digest},
                    {"project_dir", p.project_dir},
                    {"files", Json::array()}};
  for (const SnapshotFile& f : a.code.files) {
    code_json["files"].push_back({{"path", f.path}, {"mode", f.mode}, {"size", f.size}, {"sha256", f.sha256}});
  }
  ASSIGN_OR_RETURN(a.code_artifact, deps_.objects->Put(code_json.dump(2)));
  ASSIGN_OR_RETURN(a.environment_artifact, deps_.objects->Put(a.environment.ToJson().dump(2)));

  absl::StatusOr<tracking::Experiment> exp = deps_.tracking->GetExperimentByName(a.spec.name);
  if (absl::IsNotFound(exp.status())) {
    absl::StatusOr<std::string> id = deps_.tracking->CreateExperiment(
        a.spec.name, "", std::vector<tracking::Tag>{{"cairn.pipeline", a.spec.name}});
    if (absl::IsAlreadyExists(id.status())) {
      ASSIGN_OR_RETURN(exp, deps_.tracking->GetExperimentByName(a.spec.name));
      a.experiment_id = exp->experiment_id;
    } else {
      RETURN_IF_ERROR(id.status());
      a.experiment_id = *id;
    }
  } else {
    RETURN_IF_ERROR(exp.status());
    a.experiment_id = exp->experiment_id;
  }

  // Every dataset input resolved now, once: all steps of a run see the same
  // commit even if the branch moves meanwhile.
  std::vector<std::string> refusals;
  for (const StepSpec* s : a.steps) {
    for (const StepInput& in : s->inputs) {
      if (in.ref.kind != InputRef::Kind::kDataset) continue;
      const std::string key = in.ref.dataset + "@" + in.ref.ref;
      if (!a.resolved.contains(key)) {
        absl::StatusOr<data::Dataset> ds = deps_.datasets->GetDataset(data::kDefaultProject, in.ref.dataset);
        if (!ds.ok()) {
          return absl::Status(ds.status().code(), fmt::format("{}:{}:{}: step '{}' input '{}': {}", p.file_name,
                                                              in.loc.line, in.loc.column, s->name, in.name,
                                                              ds.status().message()));
        }
        absl::StatusOr<data::DatasetCommit> c = deps_.datasets->Resolve(*ds, in.ref.ref);
        if (!c.ok()) {
          return absl::Status(c.status().code(),
                              fmt::format("{}:{}:{}: step '{}' input '{}': dataset '{}' has no ref '{}': {}",
                                          p.file_name, in.loc.line, in.loc.column, s->name, in.name, in.ref.dataset,
                                          in.ref.ref, c.status().message()));
        }
        a.resolved[key] = {*ds, *c};
      }
      const data::DatasetCommit& commit = a.resolved[key].second;
      if (!in.ref.split.empty()) {
        const data::Split* split = commit.FindSplit(in.ref.split);
        if (split == nullptr) {
          return absl::InvalidArgumentError(fmt::format("{}:{}:{}: step '{}' input '{}': dataset '{}' at {} has no "
                                                        "split '{}'",
                                                        p.file_name, in.loc.line, in.loc.column, s->name, in.name,
                                                        in.ref.dataset, Short(commit.id), in.ref.split));
        }
        if (split->sealed && s->role != "evaluate") {
          refusals.push_back(fmt::format(
              "step '{}' (role '{}') asks for the sealed split '{}' of dataset '{}' as input '{}': only a step with "
              "role 'evaluate' may read a sealed split",
              s->name, s->role.empty() ? "none" : s->role, in.ref.split, in.ref.dataset, in.name));
          absl::MutexLock l(&a.mu);
          StepRecord& rec = a.run.steps[a.index[s->name]];
          rec.status = kRefused;
          rec.reason = refusals.back();
        }
      }
    }
  }
  {
    absl::MutexLock l(&a.mu);
    a.run.code_digest = a.code.digest;
    a.run.env_digest = a.environment.Digest();
  }
  if (!refusals.empty()) {
    return absl::PermissionDeniedError(fmt::format("refused before any step started: {}", fmt::join(refusals, "; ")));
  }
  return absl::OkStatus();
}

void PipelineScheduler::RunPipeline(ActiveRun& a) {
  const int64_t start = deps_.env->NowMicros() / 1000;
  {
    absl::MutexLock l(&a.mu);
    a.run.status = kRunning;
    if (a.run.started_at_ms == 0) a.run.started_at_ms = start;
    a.run.owner = owner_;
  }
  PipelineRunRecord snapshot;
  {
    absl::MutexLock l(&a.mu);
    snapshot = a.run;
  }
  absl::Status status = deps_.store->UpdateRun(snapshot);
  if (status.ok()) status = Prepare(a);

  if (status.ok()) {
    const int limit = std::max(1, a.spec.max_parallel);
    std::vector<std::thread> workers;
    absl::Mutex sched_mu;
    int running = 0;
    std::vector<bool> launched(a.steps.size(), false);
    for (;;) {
      // Steps whose dependencies are final: run, skip or cancel them.
      bool all_final = true;
      std::vector<size_t> ready;
      {
        absl::MutexLock l(&a.mu);
        for (size_t i = 0; i < a.steps.size(); ++i) {
          StepRecord& rec = a.run.steps[i];
          if (IsFinalState(rec.status)) continue;
          all_final = false;
          if (launched[i]) continue;
          bool deps_done = true;
          std::string failed_dep;
          for (const std::string& d : Dependencies(*a.steps[i])) {
            auto it = a.index.find(d);
            if (it == a.index.end()) continue;  // not part of this run (cannot happen: ancestors are kept)
            const std::string& ds = a.run.steps[it->second].status;
            if (!IsFinalState(ds)) deps_done = false;
            if (IsFinalState(ds) && ds != kSucceeded && ds != kCached) failed_dep = d;
          }
          if (a.cancel) {
            rec.status = kCancelled;
            rec.reason = "pipeline run cancelled";
          } else if (!failed_dep.empty()) {
            rec.status = kSkipped;
            rec.reason = fmt::format("upstream step '{}' did not succeed", failed_dep);
          } else if (deps_done) {
            ready.push_back(i);
            continue;
          } else {
            continue;
          }
          rec.ended_at_ms = deps_.env->NowMicros() / 1000;
          (void)deps_.store->UpdateStep(a.run.id, rec);
        }
      }
      if (all_final) break;
      for (size_t i : ready) {
        {
          absl::MutexLock l(&sched_mu);
          auto below = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(sched_mu) { return running < limit; };
          sched_mu.Await(absl::Condition(&below));
          ++running;
        }
        launched[i] = true;
        workers.emplace_back([this, &a, i, &sched_mu, &running] {
          RunStep(a, i);
          absl::MutexLock l(&sched_mu);
          --running;
        });
      }
      // Wait for a step to end (or anything to change) before looking again.
      {
        absl::MutexLock l(&sched_mu);
        const int before = running;
        auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(sched_mu) { return running < before || running == 0; };
        if (ready.empty()) sched_mu.AwaitWithTimeout(absl::Condition(&changed), absl::Milliseconds(200));
      }
      if (stopping_) {
        a.cancel = true;
      }
    }
    for (std::thread& t : workers) t.join();
  }

  const int64_t now = deps_.env->NowMicros() / 1000;
  {
    absl::MutexLock l(&a.mu);
    if (!status.ok()) {
      for (StepRecord& rec : a.run.steps) {
        if (IsFinalState(rec.status)) continue;
        rec.status = kSkipped;
        rec.reason = "not run: the pipeline run failed before it started";
        rec.ended_at_ms = now;
        (void)deps_.store->UpdateStep(a.run.id, rec);
      }
      for (StepRecord& rec : a.run.steps) {
        if (rec.status == kRefused) (void)deps_.store->UpdateStep(a.run.id, rec);
      }
      a.run.status = kFailed;
      a.run.reason = std::string(status.message());
    } else if (stopping_ && deps_.is_server) {
      // Left RUNNING for the next server to resume (Recover).
    } else {
      std::vector<std::string> failed;
      bool cancelled = a.cancel;
      for (const StepRecord& rec : a.run.steps) {
        if (rec.status == kFailed || rec.status == kRefused) failed.push_back(rec.step);
        if (rec.status == kCancelled) cancelled = true;
      }
      if (!failed.empty()) {
        a.run.status = kFailed;
        a.run.reason = fmt::format("failed step(s): {}", fmt::join(failed, ", "));
      } else if (cancelled) {
        a.run.status = kCancelled;
        a.run.reason = "cancelled";
      } else {
        a.run.status = kSucceeded;
      }
    }
    if (IsFinalState(a.run.status)) a.run.ended_at_ms = now;
    (void)deps_.store->UpdateRun(a.run);
  }
  absl::MutexLock l(&a.mu);
  a.finished = true;
}

absl::StatusOr<std::string> PipelineScheduler::ContentDigest(ActiveRun& a, const data::Dataset& ds,
                                                             const data::DatasetCommit& commit,
                                                             const FileSelection& selection) {
  const std::string key =
      commit.id + "#" + selection.split + (selection.exclude_sealed ? "!unsealed" : "!full");
  {
    absl::MutexLock l(&a.mu);
    auto it = a.input_digests.find(key);
    if (it != a.input_digests.end()) return it->second;
  }
  // What the step sees, not which commit it came from: a new commit that
  // leaves a split's files as they were keeps the steps reading that split
  // cached.
  ASSIGN_OR_RETURN(std::vector<data::ManifestFile> files, SelectFiles(*deps_.datasets, ds, commit, selection));
  Sha256 h;
  for (const data::ManifestFile& f : files) {
    h.Update(fmt::format("{}\n{:o} {}\n", f.path, f.mode, f.size));
    for (const data::ChunkRef& c : f.chunks) h.Update(c.digest.ToHex());
    h.Update("\n");
  }
  std::string digest = h.Finish().ToHex();
  absl::MutexLock l(&a.mu);
  a.input_digests[key] = digest;
  return digest;
}

void PipelineScheduler::RunStep(ActiveRun& a, size_t index) {
  StepRecord rec;
  {
    absl::MutexLock l(&a.mu);
    rec = a.run.steps[index];
  }
  absl::Status s = ExecuteStep(a, index, rec);
  if (!s.ok()) {
    rec.status = a.cancel ? kCancelled : kFailed;
    rec.reason = std::string(s.message());
  }
  rec.ended_at_ms = deps_.env->NowMicros() / 1000;
  (void)deps_.store->UpdateStep(a.id, rec);
  {
    absl::MutexLock l(&a.mu);
    a.run.steps[index] = rec;
  }
}

absl::Status PipelineScheduler::ExecuteStep(ActiveRun& a, size_t index, StepRecord& rec) {
  const StepSpec& step = *a.steps[index];
  std::string run_id;
  {
    absl::MutexLock l(&a.mu);
    run_id = a.run.id;
  }
  rec.started_at_ms = deps_.env->NowMicros() / 1000;
  rec.executor = a.executor->name();

  // Inputs: what each one is (its digest), and where it is materialised.
  struct Resolved {
    std::string name;
    data::Dataset ds;
    data::DatasetCommit commit;
    FileSelection selection;
    std::string label;  // "NAME#SPLIT" or "NAME"
  };
  std::vector<Resolved> inputs;
  Json input_digests = Json::object();
  for (const StepInput& in : step.inputs) {
    Resolved r{.name = in.name};
    if (in.ref.kind == InputRef::Kind::kDataset) {
      const auto& [ds, commit] = a.resolved.at(in.ref.dataset + "@" + in.ref.ref);
      r.ds = ds;
      r.commit = commit;
      r.selection.split = in.ref.split;
      r.label = in.ref.split.empty() ? in.ref.dataset : in.ref.dataset + "#" + in.ref.split;
    } else {
      std::string commit_id;
      {
        absl::MutexLock l(&a.mu);
        const StepRecord& up = a.run.steps.at(a.index.at(in.ref.step));
        if (up.outputs.contains(in.ref.output)) commit_id = up.outputs[in.ref.output].get<std::string>();
      }
      if (commit_id.empty()) {
        return absl::FailedPreconditionError(
            fmt::format("input '{}': step '{}' produced no output '{}'", in.name, in.ref.step, in.ref.output));
      }
      ASSIGN_OR_RETURN(r.commit, deps_.datasets->GetCommit(commit_id));
      ASSIGN_OR_RETURN(r.ds, deps_.datasets->GetDatasetById(r.commit.dataset_id));
      r.label = r.ds.name;
    }
    r.selection.exclude_sealed = step.role != "evaluate";
    bool excluded = false;
    if (r.selection.exclude_sealed && r.selection.split.empty()) {
      for (const data::Split& sp : r.commit.splits) excluded |= sp.sealed;
    }
    ASSIGN_OR_RETURN(std::string digest, ContentDigest(a, r.ds, r.commit, r.selection));
    input_digests[in.name] = digest;
    rec.inputs[in.name] = {{"dataset", r.ds.name},
                           {"commit", r.commit.id},
                           {"split", r.selection.split},
                           {"sealed_excluded", excluded}};
    inputs.push_back(std::move(r));
  }

  Json params = Json::object();
  for (const auto& [k, v] : step.params) params[k] = v;
  const Json key_json = {{"version", 1},
                         {"argv", step.argv},
                         {"env", step.env},
                         {"code", a.code.digest},
                         {"environment", a.environment.Digest()},
                         {"root", a.spec.environment},
                         {"params", params},
                         {"inputs", input_digests},
                         {"outputs", step.outputs}};
  rec.cache_key = Sha256::Of(key_json.dump()).ToHex();

  bool no_cache;
  {
    absl::MutexLock l(&a.mu);
    no_cache = a.run.no_cache;
  }
  if (!no_cache) {
    ASSIGN_OR_RETURN(std::optional<CacheEntry> hit, deps_.store->LookupCache(rec.cache_key));
    bool usable = hit.has_value();
    if (usable) {
      for (const std::string& o : step.outputs) {
        if (!hit->outputs.contains(o) || !deps_.datasets->GetCommit(hit->outputs[o].get<std::string>()).ok()) {
          usable = false;  // its outputs were deleted: run again
        }
      }
    }
    if (usable) {
      rec.status = kCached;
      rec.run_id = hit->run_id;
      rec.outputs = hit->outputs;
      rec.reason = "cache hit: this step ran with the same code, environment, params and inputs in run " +
                   hit->run_id;
      return absl::OkStatus();
    }
  }

  // Materialise inputs once per (commit, selection), shared by every run.
  std::vector<exec::Mount> mounts;
  for (const Resolved& r : inputs) {
    std::string dir = deps_.work_dir + "/inputs/" + r.commit.id;
    dir += r.selection.split.empty() ? "-all" : "-split-" + r.selection.split;
    dir += r.selection.exclude_sealed ? "-unsealed" : "-full";
    RETURN_IF_ERROR(MaterializeCommit(*deps_.datasets, r.ds, r.commit, r.selection, dir));
    mounts.push_back({r.name, dir});
  }

  // A step resumed after a restart continues its attempt numbering (its
  // earlier attempt's run and job folder stay as they were).
  const int first_attempt = rec.attempt + 1;
  const int last_attempt = rec.attempt + 1 + std::max(0, step.retries);
  for (int attempt = first_attempt; attempt <= last_attempt; ++attempt) {
    if (a.cancel) return absl::CancelledError("pipeline run cancelled");
    rec.attempt = attempt;
    rec.outputs = Json::object();
    // The MLflow run of this attempt, with everything known before it runs.
    std::vector<tracking::Tag> tags = {
        {"mlflow.runName", step.name},
        {"mlflow.source.type", "PROJECT"},
        {"mlflow.source.name", a.spec.name},
        {"cairn.pipeline", a.spec.name},
        {"cairn.pipeline_run", run_id},
        {"cairn.step", step.name},
        {"cairn.attempt", std::to_string(attempt)},
        {"cairn.command", step.shell ? step.argv.back() : Json(step.argv).dump()},
        {"cairn.cache_key", rec.cache_key},
        {"cairn.code.digest", a.code.digest},
        {"cairn.env.digest", a.environment.Digest()},
        {"cairn.env.python", a.environment.python},
        {"cairn.env.os", a.environment.os},
        {"cairn.env.host", a.environment.host},
        {"cairn.executor", a.executor->name()},
    };
    if (!step.role.empty()) tags.push_back({"cairn.role", step.role});
    if (!a.code.git_commit.empty()) {
      tags.push_back({"mlflow.source.git.commit", a.code.git_commit});
      tags.push_back({"cairn.code.git_commit", a.code.git_commit});
      tags.push_back({"cairn.code.git_dirty", a.code.git_dirty_digest.empty() ? "false" : a.code.git_dirty_digest});
    }
    std::vector<std::string> splits_read;
    for (const auto& [name, in] : rec.inputs.items()) {
      std::string label = in["dataset"].get<std::string>();
      if (!in["split"].get<std::string>().empty()) label += "#" + in["split"].get<std::string>();
      if (in["sealed_excluded"].get<bool>()) label += " (sealed splits excluded)";
      splits_read.push_back(label);
    }
    tags.push_back({"cairn.data_read", fmt::format("{}", fmt::join(splits_read, ", "))});
    ASSIGN_OR_RETURN(tracking::Run mrun,
                     deps_.tracking->CreateRun({.experiment_id = a.experiment_id,
                                                .user_id = "cairn-pipeline",
                                                .run_name = step.name,
                                                .start_time = deps_.env->NowMicros() / 1000,
                                                .tags = tags}));
    rec.run_id = mrun.info.run_id;
    const std::string artifact_root = fmt::format("{}/{}/artifacts/", a.experiment_id, rec.run_id);
    std::vector<tracking::Param> mparams;
    for (const auto& [k, v] : step.params) mparams.push_back({k, v});
    RETURN_IF_ERROR(deps_.tracking->LogBatch(rec.run_id, {}, mparams, {}));
    std::vector<tracking::DatasetInput> mlinputs;
    for (const Resolved& r : inputs) {
      tracking::DatasetInput di;
      di.dataset.name = r.label;
      di.dataset.digest = r.commit.id;
      di.dataset.source_type = "cairn";
      di.dataset.source = "cairn:dataset/" + r.ds.name + "@" + r.commit.id;
      di.tags.push_back({"mlflow.data.context", step.role.empty() ? r.name : step.role});
      mlinputs.push_back(std::move(di));
    }
    if (!mlinputs.empty()) RETURN_IF_ERROR(deps_.tracking->LogInputs(rec.run_id, mlinputs));
    RETURN_IF_ERROR(deps_.tracking->PutArtifact(
        artifact_root + "cairn/code.json",
        {a.code_artifact.ToHex(), static_cast<int64_t>(*deps_.objects->Size(a.code_artifact))}));
    RETURN_IF_ERROR(deps_.tracking->PutArtifact(
        artifact_root + "cairn/environment.json",
        {a.environment_artifact.ToHex(), static_cast<int64_t>(*deps_.objects->Size(a.environment_artifact))}));

    // The job.
    const std::string job_dir = fmt::format("{}/jobs/{}/{}.{}", deps_.work_dir, run_id, step.name, attempt);
    std::error_code ec;
    fs::remove_all(job_dir, ec);
    fs::create_directories(job_dir + "/out", ec);
    if (ec) return absl::PermissionDeniedError(fmt::format("cannot create {}: {}", job_dir, ec.message()));
    ::chmod((deps_.work_dir + "/jobs/" + run_id).c_str(), 0755);
    ::chmod(job_dir.c_str(), 0755);
    ::chmod((job_dir + "/out").c_str(), 0755);
    exec::JobSpec job;
    job.name = fmt::format("{}.{}", a.spec.name, step.name);
    job.argv = step.argv;
    job.env = step.env;
    for (const auto& [k, v] : step.params) {
      std::string upper;
      for (char c : k) upper += std::isalnum(static_cast<unsigned char>(c)) ? std::toupper(c) : '_';
      job.env["CAIRN_PARAM_" + upper] = v;
    }
    job.env["CAIRN_RUN_ID"] = rec.run_id;
    job.env["CAIRN_PIPELINE"] = a.spec.name;
    job.env["CAIRN_STEP"] = step.name;
    job.env["CAIRN_RECORD_FILE"] = fmt::format("/cairn/out/{}/{}", kRecordMount, kRecordFile);
    job.code_dir = a.code_dir;
    job.inputs = mounts;
    for (const std::string& o : step.outputs) {
      fs::create_directories(job_dir + "/out/" + o, ec);
      job.outputs.push_back({o, job_dir + "/out/" + o});
    }
    fs::create_directories(job_dir + "/out/" + kRecordMount, ec);
    job.outputs.push_back({kRecordMount, job_dir + "/out/" + kRecordMount});
    job.root_dir = a.spec.environment;
    job.network = step.network;
    job.resources = step.resources;
    job.job_dir = job_dir;

    absl::StatusOr<exec::JobId> job_id = a.executor->Submit(job);
    if (!job_id.ok()) {
      (void)deps_.tracking->UpdateRun(
          {.run_id = rec.run_id, .status = "FAILED", .end_time = deps_.env->NowMicros() / 1000});
      return job_id.status();
    }
    rec.job_id = *job_id;
    rec.job_dir = job_dir;
    rec.status = kRunning;
    rec.reason.clear();
    {
      absl::MutexLock l(&a.mu);
      a.running_jobs.insert(rec.job_id);
      a.run.steps[index] = rec;
    }
    RETURN_IF_ERROR(deps_.store->UpdateStep(run_id, rec));
    if (a.cancel) (void)a.executor->Cancel(rec.job_id);

    // Follow the log: metric lines become MLflow metrics as they come.
    StepRecordParser parser;
    uint64_t offset = 0;
    exec::JobStatus js;
    auto drain = [&]() -> absl::Status {
      for (;;) {
        ASSIGN_OR_RETURN(exec::LogChunk c, a.executor->ReadLog(rec.job_id, offset, 1 << 20));
        offset = c.next_offset;
        parser.Feed(c.bytes);
        if (c.bytes.size() < (1u << 20)) return absl::OkStatus();
      }
    };
    std::vector<std::string> record_errors;
    uint64_t errors_omitted = 0;
    // Logs what was parsed so far, in batches within MLflow's limits. A
    // refused batch (e.g. a param changing value) must not fail the step: it
    // is reported in the tag cairn.record_errors.
    auto log_records = [&](StepRecords got) {
      record_errors.insert(record_errors.end(), got.errors.begin(), got.errors.end());
      errors_omitted += got.errors_omitted;
      for (const StepRecords& batch : SplitIntoBatches(std::move(got))) {
        if (batch.empty()) continue;
        if (absl::Status s = deps_.tracking->LogBatch(rec.run_id, batch.metrics, batch.params, batch.tags); !s.ok()) {
          record_errors.push_back(std::string(s.message()));
        }
      }
    };
    for (;;) {
      ASSIGN_OR_RETURN(js, a.executor->Wait(rec.job_id, absl::Milliseconds(500)));
      if (a.cancel && !exec::IsFinal(js.state)) (void)a.executor->Cancel(rec.job_id);
      if (stopping_ && !exec::IsFinal(js.state)) (void)a.executor->Cancel(rec.job_id);
      RETURN_IF_ERROR(drain());
      if (exec::IsFinal(js.state)) break;
      log_records(parser.Take());
    }
    {
      absl::MutexLock l(&a.mu);
      a.running_jobs.erase(rec.job_id);
    }
    parser.Finish();
    log_records(parser.Take());
    absl::StatusOr<StepRecords> sdk = ParseSdkRecordFile(job_dir + "/out/" + kRecordMount + "/" + kRecordFile);
    if (sdk.ok()) {
      log_records(*std::move(sdk));
    } else if (!absl::IsNotFound(sdk.status())) {
      record_errors.push_back(fmt::format("SDK record file: {}", sdk.status().message()));
    }
    StepRecords end;
    const int64_t now_ms = deps_.env->NowMicros() / 1000;
    end.metrics.push_back({"system/cpu_seconds", js.cpu_seconds, now_ms, 0});
    end.metrics.push_back({"system/peak_memory_mb", static_cast<double>(js.peak_memory_bytes) / (1 << 20), now_ms, 0});
    end.tags.push_back({"cairn.exit_code", js.exit_code ? std::to_string(*js.exit_code) : ""});
    if (!js.reason.empty()) end.tags.push_back({"cairn.reason", js.reason});
    end.tags.push_back({"cairn.state", exec::JobStateName(js.state)});
    if (errors_omitted > 0) record_errors.push_back(fmt::format("... and {} more", errors_omitted));
    if (!record_errors.empty()) {
      end.tags.push_back({"cairn.record_errors", fmt::format("{}", fmt::join(record_errors, "\n")).substr(0, 4000)});
    }
    if (absl::Status lb = deps_.tracking->LogBatch(rec.run_id, end.metrics, end.params, end.tags); !lb.ok()) {
      return Annotate(lb, "recording the step's end");
    }
    // Artifacts the SDK logged inside the sandbox (copied next to its record file).
    {
      const fs::path art_dir = fs::path(job_dir) / "out" / kRecordMount / "artifacts";
      std::error_code aec;
      for (auto it = fs::recursive_directory_iterator(art_dir, aec); !aec && it != fs::recursive_directory_iterator();
           it.increment(aec)) {
        std::error_code fec;
        if (!it->is_regular_file(fec) || it->is_symlink(fec)) continue;  // a link could point anywhere on the host
        RETURN_IF_ERROR(StoreArtifactFile(it->path().string(),
                                          artifact_root + fs::relative(it->path(), art_dir, fec).generic_string()));
      }
    }
    // The whole log as an artifact.
    RETURN_IF_ERROR(StoreArtifactFile(job_dir + "/" + exec::kJobLogFile, artifact_root + "logs/output.log"));

    if (js.state == exec::JobState::kSucceeded) {
      for (const std::string& o : step.outputs) {
        const std::string ds_name = OutputDataset(a.spec.name, step.name, o);
        absl::StatusOr<data::Dataset> ds = deps_.datasets->GetDataset(data::kDefaultProject, ds_name);
        if (absl::IsNotFound(ds.status())) {
          ds = deps_.datasets->CreateDataset(data::kDefaultProject, ds_name,
                                             fmt::format("output '{}' of step '{}' of pipeline '{}'", o, step.name,
                                                         a.spec.name),
                                             /*encrypted=*/false);
          if (absl::IsAlreadyExists(ds.status())) ds = deps_.datasets->GetDataset(data::kDefaultProject, ds_name);
        }
        RETURN_IF_ERROR(ds.status());
        ASSIGN_OR_RETURN(data::DatasetCommit c,
                         CommitDirectory(*deps_.datasets, *deps_.chunks, *ds, job_dir + "/out/" + o, "main",
                                         fmt::format("output '{}' of run {} (pipeline {}, step {}, pipeline run {})", o,
                                                     rec.run_id, a.spec.name, step.name, run_id),
                                         "cairn-run:" + rec.run_id));
        rec.outputs[o] = c.id;
        RETURN_IF_ERROR(deps_.tracking->LogBatch(rec.run_id, {}, {},
                                                 std::vector<tracking::Tag>{{"cairn.output." + o, c.id}}));
      }
      RETURN_IF_ERROR(deps_.tracking
                          ->UpdateRun({.run_id = rec.run_id, .status = "FINISHED",
                                       .end_time = deps_.env->NowMicros() / 1000})
                          .status());
      RETURN_IF_ERROR(deps_.store->PutCache(rec.cache_key, {rec.run_id, rec.outputs}));
      rec.status = kSucceeded;
      rec.reason.clear();
      // The job's output folders are committed: free the disk.
      fs::remove_all(job_dir + "/out", ec);
      return absl::OkStatus();
    }
    const bool cancelled = js.state == exec::JobState::kCancelled || a.cancel;
    RETURN_IF_ERROR(deps_.tracking
                        ->UpdateRun({.run_id = rec.run_id,
                                     .status = cancelled ? "KILLED" : "FAILED",
                                     .end_time = deps_.env->NowMicros() / 1000})
                        .status());
    rec.status = cancelled ? kCancelled : kFailed;
    rec.reason = js.reason.empty() ? exec::JobStateName(js.state) : js.reason;
    if (cancelled) return absl::OkStatus();
    if (attempt < last_attempt) {
      rec.reason += fmt::format(" (attempt {} of {}; retrying)", attempt, last_attempt);
      RETURN_IF_ERROR(deps_.store->UpdateStep(run_id, rec));
    }
  }
  return absl::OkStatus();
}

}  // namespace cairn::pipeline
