// What starts pipeline runs without a person: a new commit on a dataset
// branch a pipeline reads, a cron schedule, and a signed webhook (a git
// server calling on push). Each started run records its cause.
//
// TriggerLoop polls (every `interval`, default 1 s) instead of hooking the
// commit path, because commits also come from embedded CLI processes that
// bypass the server. It remembers the last head it saw per dataset branch
// and the last cron firing in PipelineStore, so a server restart neither
// misses a commit made while it was down nor fires twice. A dataset trigger
// does not fire for a branch first seen (that sets the baseline), and does
// not start a run while another dataset-triggered run of the same pipeline is
// still pending or running (commits made meanwhile are picked up by the next
// check: the newest head wins). The baseline is normally recorded when the
// pipeline is registered (RecordTriggerBaselines).
//
// Thread-safety: thread-safe; one background thread.
//
// Usage:
//   ASSIGN_OR_RETURN(auto loop, TriggerLoop::Create(store, datasets, scheduler, env));
//   loop->Start();   // stopped by the destructor
#ifndef CAIRN_PIPELINE_TRIGGERS_H_
#define CAIRN_PIPELINE_TRIGGERS_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "base/env.h"
#include "data/dataset_store.h"
#include "pipeline/pipeline_store.h"
#include "pipeline/scheduler.h"
#include "pipeline/spec.h"

namespace cairn::pipeline {

// "sha256=" + hex HMAC-SHA256 of `body` keyed by `secret` (the secret's text).
std::string SignWebhook(const std::string& secret, std::string_view body);
// kUnauthenticated unless `signature` (the X-Cairn-Signature or
// X-Hub-Signature-256 header) is SignWebhook(secret, body); compared in
// constant time.
absl::Status VerifyWebhook(const std::string& secret, std::string_view body, std::string_view signature);

// Remembers the current head of every dataset branch `spec` reads as the
// point after which new commits trigger it (a branch without commits yet:
// its first commit will). Keeps what was recorded before. Called when a
// pipeline is registered, so that a commit made right after registration,
// before the loop's first look, still triggers.
absl::Status RecordTriggerBaselines(PipelineStore& store, data::DatasetStore& datasets, const PipelineSpec& spec);

class TriggerLoop {
 public:
  // Nothing owned; all must outlive the loop.
  static absl::StatusOr<std::unique_ptr<TriggerLoop>> Create(PipelineStore& store, data::DatasetStore& datasets,
                                                             PipelineScheduler& scheduler, Env& env,
                                                             absl::Duration interval = absl::Seconds(1));
  ~TriggerLoop();
  TriggerLoop(const TriggerLoop&) = delete;
  TriggerLoop& operator=(const TriggerLoop&) = delete;

  void Start();
  // One pass over every pipeline's triggers at time `now`; returns the ids
  // of the runs it started.
  absl::StatusOr<std::vector<std::string>> CheckOnce(absl::Time now);

 private:
  TriggerLoop(PipelineStore& store, data::DatasetStore& datasets, PipelineScheduler& scheduler, Env& env,
              absl::Duration interval)
      : store_(store), datasets_(datasets), scheduler_(scheduler), env_(env), interval_(interval) {}
  absl::StatusOr<bool> HasPendingRun(const std::string& pipeline, const std::string& kind);

  PipelineStore& store_;
  data::DatasetStore& datasets_;
  PipelineScheduler& scheduler_;
  Env& env_;
  const absl::Duration interval_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace cairn::pipeline

#endif  // CAIRN_PIPELINE_TRIGGERS_H_
