// PipelineSpec: a pipeline as written in `cairn.yaml` — its steps (commands
// with params, inputs, outputs and resources), how many run at once, the
// environment they run in and what triggers the pipeline — parsed and fully
// validated, plus the graph questions the scheduler asks of it (an order to
// run the steps in, a step's dependencies, what `cairn run STEP` must run).
// The format is documented for users in docs/pipelines.md.
//
// Parsing never throws and never asserts on input: every problem is
// kInvalidArgument with a message that points at the spot in the file,
//   "cairn.yaml:12:7: steps.train.inputs.data: expected dataset:NAME@REF[#SPLIT]
//    or step:STEP/OUTPUT, got \"foo\""
// (FILE:LINE:COL, 1-based, then the dotted path of the value, then what was
// expected and what was found). The first problem found is reported.
//
// A parsed spec is a plain value: `defaults:` are already merged into every
// step, `${param}` references in commands are already expanded into `argv`
// (the text as written stays in `command_template`, so that
// ApplyParamOverrides can expand it again).
//
// Thread-safety: plain values and stateless functions; a const PipelineSpec
// may be shared between threads.
//
// Usage:
//   ASSIGN_OR_RETURN(std::string text, env.ReadFileToString(dir + "/cairn.yaml"));
//   ASSIGN_OR_RETURN(PipelineSpec spec, ParsePipelineSpec(text, "cairn.yaml"));
//   RETURN_IF_ERROR(ApplyParamOverrides(spec, {"lr=0.01", "prepare.seed=7"}));
//   for (const std::string& name : TopologicalOrder(spec)) {
//     const StepSpec* step = spec.FindStep(name);   // never null here
//     ... submit step->argv with step->resources once Dependencies(*step) are done ...
//   }
#ifndef CAIRN_PIPELINE_SPEC_H_
#define CAIRN_PIPELINE_SPEC_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "base/json.h"
#include "base/status.h"
#include "exec/executor.h"

namespace cairn::pipeline {

// Where a value was written: 1-based line and column; 0 when unknown (a
// spec built in code).
struct SourceLocation {
  int line = 0;
  int column = 0;
};

// What a step input reads: a dataset commit (optionally one split of it) or
// an output of another step of the same pipeline.
struct InputRef {
  enum class Kind { kDataset, kStep };
  Kind kind = Kind::kDataset;
  std::string dataset, ref, split;  // kDataset: ref defaults to "main"; split may be empty (whole commit)
  std::string step, output;         // kStep

  // The canonical text: "dataset:NAME@REF" or "dataset:NAME@REF#SPLIT" (the
  // ref always written), or "step:STEP/OUTPUT". ParseInputRef(ToString())
  // gives back an equal InputRef.
  std::string ToString() const;
  bool operator==(const InputRef&) const = default;
};

struct StepInput {
  std::string name;  // mounted at /cairn/in/<name>
  InputRef ref;
  SourceLocation loc;
};

struct StepSpec {
  std::string name;
  // The command to run, after ${param} expansion. A string command becomes
  // {"/bin/sh", "-c", TEXT}.
  std::vector<std::string> argv;
  bool shell = false;  // true when the command was written as a string
  // The command as written, before expansion: one element (the shell text)
  // when `shell`, else one per argv element.
  std::vector<std::string> command_template;
  std::vector<std::pair<std::string, std::string>> params;  // in file order; values as written
  std::vector<StepInput> inputs;                            // in file order
  std::vector<std::string> outputs;                         // mounted at /cairn/out/<name>
  std::string role;  // "" or a word of [a-z0-9_-]; "evaluate" may read sealed splits
  bool network = false;
  int retries = 0;  // 0..10: extra attempts after a failure
  std::map<std::string, std::string> env;
  exec::Resources resources;       // exec's defaults, then the spec's `defaults:`, then the step's own
  std::vector<std::string> after;  // extra ordering edges: steps that must finish first
  SourceLocation loc;              // the step's name in the file
};

struct Triggers {
  bool datasets = false;  // re-run when a dataset branch the pipeline reads gets a new commit
  std::string cron;       // "" or a valid CronSchedule (pipeline/cron.h), UTC
  bool webhook = false;   // POST /api/cairn/v1/pipelines/NAME/trigger, HMAC-signed
};

struct PipelineSpec {
  std::string name;
  int max_parallel = 2;     // 1..64: steps running at once
  std::string environment;  // "" or an absolute path: the read-only root (exec::JobSpec::root_dir)
  Triggers triggers;
  std::vector<StepSpec> steps;  // in file order, names unique

  // The step named `name`, or nullptr. The pointer is valid until `steps`
  // changes.
  const StepSpec* FindStep(std::string_view name) const;
};

// Parses and validates a cairn.yaml text; `file_name` is only used in
// messages. kInvalidArgument ("FILE:LINE:COL: PATH: ...") for malformed YAML,
// unknown keys (the message lists the allowed ones), missing required keys,
// values of the wrong type or out of range, bad names, duplicate names,
// references to unknown steps or outputs, `${x}` where x is not a param of
// the step, and cycles (the message names one: "cycle: a -> b -> a", where
// "a -> b" means b needs a).
absl::StatusOr<PipelineSpec> ParsePipelineSpec(std::string_view yaml_text, std::string_view file_name);

// Applies command-line param overrides, all or nothing: "k=v" sets param k in
// every step that declares it (kInvalidArgument if none does); "step.k=v" in
// that step only (kInvalidArgument if the step or its param k is unknown).
// Param names never contain '.', so "a.b.k=v" is param k of step "a.b". The
// value is everything after the first '='. Re-expands argv of every step
// whose params changed. On error `spec` is unchanged.
absl::Status ApplyParamOverrides(PipelineSpec& spec, const std::vector<std::string>& overrides);

// Every step name, each after all of its dependencies; among steps that
// could go next, the one first in the file goes first. For a spec that did
// not come from ParsePipelineSpec, references to unknown steps are ignored
// and steps on a cycle come last in file order (never a crash).
std::vector<std::string> TopologicalOrder(const PipelineSpec& spec);

// The steps `step` directly needs: those whose outputs it reads, then those
// in its `after`, each once, in the order written.
std::vector<std::string> Dependencies(const StepSpec& step);

// `step` and every step it needs, directly or not, in TopologicalOrder's
// order: what `cairn run STEP` runs. Empty if there is no such step.
std::vector<std::string> StepWithAncestors(const PipelineSpec& spec, std::string_view step);

// Canonical JSON (object keys sorted, lists in spec order; durations in whole
// seconds, sizes in bytes), documented in docs/pipelines.md. The step object
// holds everything that decides what the step computes and how it is run:
//   {"after", "argv", "command_template", "env", "inputs" (name -> canonical
//    InputRef text), "name", "network", "outputs", "params" (name -> value),
//    "resources": {"cpu_time_s", "cpus", "gpus", "max_output_bytes",
//    "max_processes", "memory_bytes", "timeout_s"}, "retries", "role", "shell"}
// The pipeline object: {"environment", "max_parallel", "name", "steps" (step
// objects in file order), "triggers": {"cron", "datasets", "webhook"}}.
Json StepToJson(const StepSpec& step);
Json PipelineToJson(const PipelineSpec& spec);

// Read back what StepToJson / PipelineToJson wrote (a stored spec). Checks
// types and what ParsePipelineSpec guarantees — names, ranges, argv being the
// expansion of command_template, references and no cycles (PipelineFromJson)
// — and is kInvalidArgument naming the field otherwise. Locations are 0;
// params and inputs come back in name order (the JSON keeps them as objects).
absl::StatusOr<StepSpec> StepFromJson(const Json& json);
absl::StatusOr<PipelineSpec> PipelineFromJson(const Json& json);

// The pieces of the format, for other front-ends (CLI flags, API bodies).
// Each returns kInvalidArgument saying what was expected (no location).
//
// "dataset:NAME[@REF][#SPLIT]" or "step:STEP/OUTPUT".
absl::StatusOr<InputRef> ParseInputRef(std::string_view text);
// "512", "512B", "4KiB", "4K" (= KiB), "4KB" (= 1000 bytes), up to TiB/T/TB.
absl::StatusOr<uint64_t> ParseByteSize(std::string_view text);
// Integer + unit, units in decreasing order, each at most once: "90s",
// "10m", "1h30m", "2d". At most 366 days.
absl::StatusOr<absl::Duration> ParseSpecDuration(std::string_view text);

}  // namespace cairn::pipeline

#endif  // CAIRN_PIPELINE_SPEC_H_
