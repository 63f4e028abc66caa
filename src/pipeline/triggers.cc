#include "pipeline/triggers.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <set>

#include <fmt/format.h>

#include "absl/strings/numbers.h"
#include "base/logging.h"
#include "pipeline/cron.h"
#include "pipeline/spec.h"

namespace cairn::pipeline {

std::string SignWebhook(const std::string& secret, std::string_view body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &len);
  std::string out = "sha256=";
  for (unsigned int i = 0; i < len; ++i) out += fmt::format("{:02x}", mac[i]);
  return out;
}

absl::Status VerifyWebhook(const std::string& secret, std::string_view body, std::string_view signature) {
  if (signature.empty()) {
    return absl::UnauthenticatedError(
        "missing signature: send X-Cairn-Signature: sha256=HEX (HMAC-SHA256 of the body with the pipeline's "
        "webhook secret; `cairn pipelines show NAME --secret` prints it)");
  }
  const std::string expected = SignWebhook(secret, body);
  if (signature.size() != expected.size() || CRYPTO_memcmp(signature.data(), expected.data(), expected.size()) != 0) {
    return absl::UnauthenticatedError("the webhook signature does not match the body");
  }
  return absl::OkStatus();
}

namespace {

// Every dataset branch the pipeline reads (refs that are commit ids or tags
// never move, so they never fire).
std::set<std::pair<std::string, std::string>> DatasetBranches(const PipelineSpec& spec) {
  std::set<std::pair<std::string, std::string>> branches;
  for (const StepSpec& s : spec.steps) {
    for (const StepInput& in : s.inputs) {
      if (in.ref.kind == InputRef::Kind::kDataset) branches.insert({in.ref.dataset, in.ref.ref});
    }
  }
  return branches;
}

std::string HeadKey(const std::string& dataset, const std::string& branch) { return "head:" + dataset + "@" + branch; }

}  // namespace

absl::Status RecordTriggerBaselines(PipelineStore& store, data::DatasetStore& datasets, const PipelineSpec& spec) {
  if (!spec.triggers.datasets) return absl::OkStatus();
  for (const auto& [name, branch] : DatasetBranches(spec)) {
    const std::string key = HeadKey(name, branch);
    ASSIGN_OR_RETURN(std::optional<std::string> seen, store.GetTriggerState(spec.name, key));
    if (seen) continue;
    std::string head;
    if (absl::StatusOr<data::Dataset> ds = datasets.GetDataset(data::kDefaultProject, name); ds.ok()) {
      absl::StatusOr<std::optional<data::DatasetCommit>> h = datasets.Head(*ds, branch);
      if (h.ok() && h->has_value()) head = (*h)->id;
    }
    RETURN_IF_ERROR(store.SetTriggerState(spec.name, key, head));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TriggerLoop>> TriggerLoop::Create(PipelineStore& store, data::DatasetStore& datasets,
                                                                 PipelineScheduler& scheduler, Env& env,
                                                                 absl::Duration interval) {
  return std::unique_ptr<TriggerLoop>(new TriggerLoop(store, datasets, scheduler, env, interval));
}

TriggerLoop::~TriggerLoop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void TriggerLoop::Start() {
  thread_ = std::thread([this] {
    while (!stop_.WaitForNotificationWithTimeout(interval_)) {
      absl::StatusOr<std::vector<std::string>> started = CheckOnce(absl::FromUnixMicros(env_.NowMicros()));
      if (!started.ok()) spdlog::warn("pipeline triggers: {}", started.status().ToString());
    }
  });
}

absl::StatusOr<bool> TriggerLoop::HasPendingRun(const std::string& pipeline, const std::string& kind) {
  ASSIGN_OR_RETURN(std::vector<PipelineRunRecord> active, store_.ActiveRuns());
  for (const PipelineRunRecord& r : active) {
    if (r.pipeline == pipeline && r.cause.value("kind", "") == kind) return true;
  }
  return false;
}

absl::StatusOr<std::vector<std::string>> TriggerLoop::CheckOnce(absl::Time now) {
  std::vector<std::string> started;
  ASSIGN_OR_RETURN(std::vector<PipelineRecord> pipelines, store_.ListPipelines());
  for (const PipelineRecord& p : pipelines) {
    absl::StatusOr<PipelineSpec> spec = ParsePipelineSpec(p.spec_text, p.file_name);
    if (!spec.ok()) continue;  // validated when registered; a newer parser may refuse it: skip, do not crash
    if (spec->triggers.datasets) {
      const std::set<std::pair<std::string, std::string>> branches = DatasetBranches(*spec);
      Json changed = Json::array();
      std::vector<std::pair<std::string, std::string>> new_heads;
      for (const auto& [name, branch] : branches) {
        absl::StatusOr<data::Dataset> ds = datasets_.GetDataset(data::kDefaultProject, name);
        if (!ds.ok()) continue;
        absl::StatusOr<std::optional<data::DatasetCommit>> head = datasets_.Head(*ds, branch);
        if (!head.ok() || !head->has_value()) continue;
        const std::string key = HeadKey(name, branch);
        ASSIGN_OR_RETURN(std::optional<std::string> seen, store_.GetTriggerState(p.name, key));
        if (!seen) {
          RETURN_IF_ERROR(store_.SetTriggerState(p.name, key, (*head)->id));  // baseline
          continue;
        }
        if (*seen != (*head)->id) {
          changed.push_back({{"dataset", name}, {"branch", branch}, {"commit", (*head)->id}, {"previous", *seen}});
          new_heads.push_back({key, (*head)->id});
        }
      }
      if (!changed.empty()) {
        ASSIGN_OR_RETURN(bool pending, HasPendingRun(p.name, "dataset_commit"));
        if (!pending) {
          absl::StatusOr<std::string> id =
              scheduler_.Start({.pipeline = p.name, .cause = {{"kind", "dataset_commit"}, {"commits", changed}}});
          if (id.ok()) {
            started.push_back(*id);
            for (const auto& [key, commit] : new_heads) RETURN_IF_ERROR(store_.SetTriggerState(p.name, key, commit));
            spdlog::info("pipeline {}: new data ({}), started run {}", p.name, changed.dump(), *id);
          } else {
            spdlog::warn("pipeline {}: could not start a run for new data: {}", p.name, id.status().ToString());
          }
        }
      }
    }
    if (!spec->triggers.cron.empty()) {
      absl::StatusOr<CronSchedule> cron = CronSchedule::Parse(spec->triggers.cron);
      if (!cron.ok()) continue;
      ASSIGN_OR_RETURN(std::optional<std::string> last, store_.GetTriggerState(p.name, "cron"));
      int64_t last_ms = 0;
      if (!last || !absl::SimpleAtoi(*last, &last_ms)) {
        RETURN_IF_ERROR(store_.SetTriggerState(p.name, "cron", std::to_string(absl::ToUnixMillis(now))));
        continue;
      }
      const absl::Time due = cron->Next(absl::FromUnixMillis(last_ms));
      if (due <= now) {
        // Fire once even if several firings were missed while stopped.
        RETURN_IF_ERROR(store_.SetTriggerState(p.name, "cron", std::to_string(absl::ToUnixMillis(now))));
        absl::StatusOr<std::string> id = scheduler_.Start(
            {.pipeline = p.name,
             .cause = {{"kind", "cron"}, {"schedule", spec->triggers.cron}, {"due", absl::FormatTime(due)}}});
        if (id.ok()) {
          started.push_back(*id);
        } else {
          spdlog::warn("pipeline {}: cron run not started: {}", p.name, id.status().ToString());
        }
      }
    }
  }
  return started;
}

}  // namespace cairn::pipeline
