#include "pipeline/spec.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "base/testing.h"

namespace cairn::pipeline {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::StartsWith;

constexpr char kFile[] = "cairn.yaml";

// The example of docs/pipelines.md.
constexpr char kFullExample[] = R"(name: tumours
max_parallel: 3
environment: /opt/envs/py311
defaults:
  resources: {cpus: 2, memory: 2GiB, timeout: 30m}
  retries: 1
triggers:
  datasets: true
  cron: "0 3 * * *"
  webhook: true
steps:
  prepare:
    command: python3 prepare.py --seed ${seed} --out $CAIRN_OUT/clean
    params: {seed: 1, note: "a b"}
    inputs:
      raw: dataset:tumours@main#train
    outputs: [clean]
    role: prepare
    env: {OMP_NUM_THREADS: "1"}
    resources: {memory: 1GiB, gpus: 0, cpu_time: 5m, processes: 64, output_size: 1GiB}
  train:
    command: [python3, train.py, --lr, "${lr}", --literal, "$${lr}"]
    params: {lr: "0.1"}
    inputs:
      data: step:prepare/clean
      extra: dataset:scans
    outputs: [model, metrics]
    role: train
    network: true
    retries: 0
    resources: {gpus: 1, timeout: 1h30m}
  evaluate:
    command: python3 evaluate.py
    inputs:
      model: step:train/model
      test: dataset:tumours@v2#test
    outputs: [report]
    role: evaluate
    after: [prepare]
)";

// The error message of parsing `yaml`, or "OK".
std::string ErrorOf(std::string_view yaml) {
  absl::StatusOr<PipelineSpec> spec = ParsePipelineSpec(yaml, kFile);
  if (spec.ok()) return "OK";
  if (spec.status().code() != absl::StatusCode::kInvalidArgument) return "wrong code: " + spec.status().ToString();
  return std::string(spec.status().message());
}

// A spec with one step whose body is `step_body` (indented by the caller
// at 4 spaces).
std::string OneStep(std::string_view step_body) { return fmt::format("name: p\nsteps:\n  s:\n{}", step_body); }

// --- The full example ---------------------------------------------------

TEST(PipelineSpecTest, ParsesTheFullExample) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec, ParsePipelineSpec(kFullExample, kFile));
  EXPECT_EQ(spec.name, "tumours");
  EXPECT_EQ(spec.max_parallel, 3);
  EXPECT_EQ(spec.environment, "/opt/envs/py311");
  EXPECT_TRUE(spec.triggers.datasets);
  EXPECT_EQ(spec.triggers.cron, "0 3 * * *");
  EXPECT_TRUE(spec.triggers.webhook);
  ASSERT_EQ(spec.steps.size(), 3u);

  const StepSpec& prepare = spec.steps[0];
  EXPECT_EQ(prepare.name, "prepare");
  EXPECT_TRUE(prepare.shell);
  EXPECT_THAT(prepare.argv, ElementsAre("/bin/sh", "-c", "python3 prepare.py --seed 1 --out $CAIRN_OUT/clean"));
  EXPECT_THAT(prepare.command_template, ElementsAre("python3 prepare.py --seed ${seed} --out $CAIRN_OUT/clean"));
  EXPECT_THAT(prepare.params, ElementsAre(Pair("seed", "1"), Pair("note", "a b")));
  ASSERT_EQ(prepare.inputs.size(), 1u);
  EXPECT_EQ(prepare.inputs[0].name, "raw");
  EXPECT_EQ(prepare.inputs[0].ref.kind, InputRef::Kind::kDataset);
  EXPECT_EQ(prepare.inputs[0].ref.dataset, "tumours");
  EXPECT_EQ(prepare.inputs[0].ref.ref, "main");
  EXPECT_EQ(prepare.inputs[0].ref.split, "train");
  EXPECT_EQ(prepare.inputs[0].loc.line, 16);
  EXPECT_EQ(prepare.inputs[0].loc.column, 12);
  EXPECT_THAT(prepare.outputs, ElementsAre("clean"));
  EXPECT_EQ(prepare.role, "prepare");
  EXPECT_FALSE(prepare.network);
  EXPECT_EQ(prepare.retries, 1);  // from defaults
  EXPECT_THAT(prepare.env, ElementsAre(Pair("OMP_NUM_THREADS", "1")));
  EXPECT_EQ(prepare.loc.line, 12);
  EXPECT_EQ(prepare.loc.column, 3);
  // Resources: the step's own over the defaults, field by field.
  EXPECT_EQ(prepare.resources.cpus, 2);
  EXPECT_EQ(prepare.resources.memory_bytes, 1ull << 30);
  EXPECT_EQ(prepare.resources.wall_timeout, absl::Minutes(30));
  EXPECT_EQ(prepare.resources.cpu_time, absl::Minutes(5));
  EXPECT_EQ(prepare.resources.max_processes, 64);
  EXPECT_EQ(prepare.resources.max_output_bytes, 1ull << 30);

  const StepSpec& train = spec.steps[1];
  EXPECT_FALSE(train.shell);
  EXPECT_THAT(train.argv, ElementsAre("python3", "train.py", "--lr", "0.1", "--literal", "${lr}"));
  ASSERT_EQ(train.inputs.size(), 2u);
  EXPECT_EQ(train.inputs[0].ref.kind, InputRef::Kind::kStep);
  EXPECT_EQ(train.inputs[0].ref.step, "prepare");
  EXPECT_EQ(train.inputs[0].ref.output, "clean");
  EXPECT_EQ(train.inputs[1].ref.ToString(), "dataset:scans@main");
  EXPECT_TRUE(train.network);
  EXPECT_EQ(train.retries, 0);  // the step's own 0 beats the default 1
  EXPECT_EQ(train.resources.gpus, 1);
  EXPECT_EQ(train.resources.memory_bytes, 2ull << 30);
  EXPECT_EQ(train.resources.wall_timeout, absl::Minutes(90));

  const StepSpec& evaluate = spec.steps[2];
  EXPECT_EQ(evaluate.role, "evaluate");
  EXPECT_THAT(evaluate.after, ElementsAre("prepare"));
  EXPECT_EQ(evaluate.inputs[1].ref.ToString(), "dataset:tumours@v2#test");
  EXPECT_EQ(spec.FindStep("train"), &spec.steps[1]);
  EXPECT_EQ(spec.FindStep("nope"), nullptr);
}

TEST(PipelineSpecTest, MinimalSpecGetsDefaults) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec, ParsePipelineSpec("name: p\nsteps:\n  s:\n    command: [true]\n", kFile));
  EXPECT_EQ(spec.max_parallel, 2);
  EXPECT_EQ(spec.environment, "");
  EXPECT_FALSE(spec.triggers.datasets);
  EXPECT_EQ(spec.triggers.cron, "");
  const StepSpec& s = spec.steps[0];
  EXPECT_THAT(s.argv, ElementsAre("true"));
  EXPECT_EQ(s.role, "");
  EXPECT_FALSE(s.network);
  EXPECT_EQ(s.retries, 0);
  const exec::Resources defaults;
  EXPECT_EQ(s.resources.cpus, defaults.cpus);
  EXPECT_EQ(s.resources.memory_bytes, defaults.memory_bytes);
  EXPECT_EQ(s.resources.wall_timeout, defaults.wall_timeout);
  EXPECT_EQ(s.resources.max_output_bytes, defaults.max_output_bytes);
}

TEST(PipelineSpecTest, FullExampleRoundTripsThroughJson) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec, ParsePipelineSpec(kFullExample, kFile));
  const Json json = PipelineToJson(spec);
  ASSERT_OK_AND_ASSIGN(PipelineSpec back, PipelineFromJson(json));
  EXPECT_EQ(PipelineToJson(back), json);
  // Through text as well, as a store would keep it.
  ASSERT_OK_AND_ASSIGN(Json reparsed, ParseJson(json.dump()));
  ASSERT_OK_AND_ASSIGN(PipelineSpec back2, PipelineFromJson(reparsed));
  EXPECT_EQ(PipelineToJson(back2).dump(), json.dump());

  EXPECT_EQ(back.name, spec.name);
  EXPECT_EQ(back.triggers.cron, spec.triggers.cron);
  ASSERT_EQ(back.steps.size(), spec.steps.size());
  for (size_t i = 0; i < spec.steps.size(); ++i) {
    EXPECT_EQ(back.steps[i].argv, spec.steps[i].argv);
    EXPECT_EQ(back.steps[i].command_template, spec.steps[i].command_template);
    EXPECT_EQ(back.steps[i].resources.wall_timeout, spec.steps[i].resources.wall_timeout);
    EXPECT_EQ(back.steps[i].resources.memory_bytes, spec.steps[i].resources.memory_bytes);
    EXPECT_EQ(back.steps[i].after, spec.steps[i].after);
    EXPECT_EQ(back.steps[i].env, spec.steps[i].env);
    EXPECT_EQ(TopologicalOrder(back), TopologicalOrder(spec));
  }
}

TEST(PipelineSpecTest, JsonIsCanonical) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec, ParsePipelineSpec(kFullExample, kFile));
  const Json step = StepToJson(spec.steps[0]);
  EXPECT_EQ(step["argv"], Json({"/bin/sh", "-c", "python3 prepare.py --seed 1 --out $CAIRN_OUT/clean"}));
  EXPECT_EQ(step["params"], Json({{"note", "a b"}, {"seed", "1"}}));
  EXPECT_EQ(step["inputs"], Json({{"raw", "dataset:tumours@main#train"}}));
  EXPECT_EQ(step["resources"]["memory_bytes"], 1ull << 30);
  EXPECT_EQ(step["resources"]["timeout_s"], 1800);
  EXPECT_EQ(step["resources"]["cpu_time_s"], 300);
  // Object keys come out sorted, so equal specs give equal text.
  const std::string text = step.dump();
  EXPECT_THAT(text, StartsWith("{\"after\":[],\"argv\":"));
  // Key order in the file does not matter.
  ASSERT_OK_AND_ASSIGN(PipelineSpec a,
                       ParsePipelineSpec("name: p\nsteps:\n  s: {command: x, env: {A: '1', B: '2'}}\n", kFile));
  ASSERT_OK_AND_ASSIGN(PipelineSpec b,
                       ParsePipelineSpec("steps:\n  s: {env: {B: '2', A: '1'}, command: x}\nname: p\n", kFile));
  EXPECT_EQ(PipelineToJson(a).dump(), PipelineToJson(b).dump());
}

TEST(PipelineSpecTest, FromJsonRejectsWhatTheParserWould) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec, ParsePipelineSpec(kFullExample, kFile));
  const Json good = PipelineToJson(spec);
  {
    Json j = good;
    j["steps"][1]["argv"][3] = "0.5";  // no longer the expansion of the template
    EXPECT_THAT(PipelineFromJson(j), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("steps.train.argv")));
  }
  {
    Json j = good;
    j["steps"][0]["after"] = Json({"evaluate"});  // evaluate needs train needs prepare
    EXPECT_THAT(PipelineFromJson(j), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cycle: ")));
  }
  {
    Json j = good;
    j["steps"][2]["inputs"]["model"] = "step:train/weights";
    EXPECT_THAT(PipelineFromJson(j), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no such output")));
  }
  {
    Json j = good;
    j["steps"][0]["resources"]["cpus"] = -1;
    EXPECT_THAT(PipelineFromJson(j),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("steps.prepare.resources.cpus")));
  }
  {
    Json j = good;
    j["steps"][1]["name"] = "prepare";
    EXPECT_THAT(PipelineFromJson(j), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("two steps")));
  }
  {
    Json j = good;
    j["steps"][0].erase("role");
    EXPECT_THAT(PipelineFromJson(j), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("steps.prepare.role")));
  }
  EXPECT_THAT(PipelineFromJson(Json::array()), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(StepFromJson(Json("x")), StatusIs(absl::StatusCode::kInvalidArgument));
}

// --- Every kind of error, with its position -----------------------------

TEST(PipelineSpecErrorTest, InvalidYaml) {
  EXPECT_THAT(ErrorOf("name: p\nsteps: [a\n"), StartsWith("cairn.yaml:3:1: invalid YAML: "));
  EXPECT_THAT(ErrorOf("name: p\n  bad: indent\n"), StartsWith("cairn.yaml:2:"));
  EXPECT_THAT(ErrorOf("name: p\n---\nname: q\n"),
              StartsWith("cairn.yaml:2:1: expected one YAML document, got a second one"));
}

// Found by fuzzing: yaml-cpp quotes the offending byte raw, and messages
// must stay UTF-8 (they end up in JSON).
TEST(PipelineSpecErrorTest, InvalidYamlMessagesAreUtf8) {
  EXPECT_EQ(ErrorOf("name: \"\\\x8c\"\n"), "cairn.yaml:1:10: invalid YAML: unknown escape character: \\x8c");
}

TEST(PipelineSpecErrorTest, DeepNesting) {
  const std::string deep = "name: p\nsteps: " + std::string(3000, '[') + std::string(3000, ']') + "\n";
  EXPECT_THAT(ErrorOf(deep),
              ::testing::MatchesRegex("cairn\\.yaml:2:[0-9]+: invalid YAML: nested deeper than [0-9]+ levels"));
}

TEST(PipelineSpecErrorTest, TopLevelShape) {
  EXPECT_EQ(ErrorOf(""),
            "cairn.yaml:1:1: expected a map of pipeline settings with at least name: and steps:, got nothing");
  EXPECT_EQ(ErrorOf("- a\n- b\n"),
            "cairn.yaml:1:1: expected a map of pipeline settings with at least name: and steps:, got a list");
  EXPECT_EQ(ErrorOf("steps:\n  s: {command: x}\n"), "cairn.yaml:1:1: missing required key \"name\"");
  EXPECT_EQ(ErrorOf("name: p\n"), "cairn.yaml:1:1: missing required key \"steps\"");
  EXPECT_EQ(ErrorOf("name: p\nsteps: {}\n"),
            "cairn.yaml:2:8: steps: expected a map of steps (name: {command: ...}) with at least one step, got a map");
  EXPECT_EQ(
      ErrorOf("name: p\nsteps:\n"),
      "cairn.yaml:2:1: steps: expected a map of steps (name: {command: ...}) with at least one step, got nothing");
}

TEST(PipelineSpecErrorTest, UnknownKeysListTheAllowedOnes) {
  EXPECT_EQ(ErrorOf("name: p\nstep:\n  s: {command: x}\n"),
            "cairn.yaml:2:1: unknown key \"step\" (did you mean \"steps\"? allowed: name, max_parallel, environment, "
            "defaults, triggers, steps)");
  EXPECT_EQ(ErrorOf(OneStep("    comand: x\n")),
            "cairn.yaml:4:5: steps.s: unknown key \"comand\" (did you mean \"command\"? allowed: command, params, "
            "inputs, outputs, role, network, retries, env, resources, after)");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    resources: {cpu: 2}\n")),
            "cairn.yaml:5:17: steps.s.resources: unknown key \"cpu\" (did you mean \"cpus\"? allowed: cpus, memory, "
            "gpus, timeout, cpu_time, processes, output_size)");
  EXPECT_EQ(ErrorOf("name: p\ntriggers: {git: true}\nsteps:\n  s: {command: x}\n"),
            "cairn.yaml:2:12: triggers: unknown key \"git\" (allowed: datasets, cron, webhook)");
  EXPECT_EQ(ErrorOf("name: p\ndefaults: {env: {}}\nsteps:\n  s: {command: x}\n"),
            "cairn.yaml:2:12: defaults: unknown key \"env\" (allowed: resources, network, retries)");
}

TEST(PipelineSpecErrorTest, MissingCommand) {
  EXPECT_EQ(ErrorOf(OneStep("    outputs: [a]\n")), "cairn.yaml:3:3: steps.s: missing required key \"command\"");
}

TEST(PipelineSpecErrorTest, BadNames) {
  EXPECT_EQ(ErrorOf("name: my pipeline\nsteps:\n  s: {command: x}\n"),
            "cairn.yaml:1:7: name: expected a pipeline name of 1-64 [A-Za-z0-9_.-] (not . or ..), got \"my "
            "pipeline\"");
  EXPECT_EQ(ErrorOf("name: p\nsteps:\n  bad/step: {command: x}\n"),
            "cairn.yaml:3:3: steps: expected a step name of 1-64 [A-Za-z0-9_.-] (not . or ..), got \"bad/step\"");
  EXPECT_EQ(ErrorOf("name: p\nsteps:\n  ..: {command: x}\n"),
            "cairn.yaml:3:3: steps: expected a step name of 1-64 [A-Za-z0-9_.-] (not . or ..), got \"..\"");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    inputs: {'a b': dataset:d}\n")),
            "cairn.yaml:5:14: steps.s.inputs: expected an input name of 1-64 [A-Za-z0-9_.-] (not . or ..), got \"a "
            "b\"");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    outputs: [ok, 'no/slash']\n")),
            "cairn.yaml:5:19: steps.s.outputs[1]: expected an output name of 1-64 [A-Za-z0-9_.-] (not . or ..), got "
            "\"no/slash\"");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    params: {a.b: 1}\n")),
            "cairn.yaml:5:14: steps.s.params: expected a param name of [A-Za-z_][A-Za-z0-9_]{0,63}, got \"a.b\"");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    role: Train\n")),
            "cairn.yaml:5:11: steps.s.role: expected a role word of 1-64 [a-z0-9_-] (e.g. prepare, train, evaluate), "
            "got \"Train\"");
  EXPECT_THAT(ErrorOf(OneStep(std::string("    command: x\n    outputs: [") + std::string(65, 'o') + "]\n")),
              HasSubstr("cairn.yaml:5:15: steps.s.outputs[0]: expected an output name"));
}

TEST(PipelineSpecErrorTest, EnvironmentVariables) {
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    env: {1X: a}\n")),
            "cairn.yaml:5:11: steps.s.env: expected a variable name of [A-Za-z_][A-Za-z0-9_]*, got \"1X\"");
  for (const char* name : {"PATH", "HOME", "LANG", "CAIRN_JOB_ID"}) {
    EXPECT_EQ(ErrorOf(OneStep(fmt::format("    command: x\n    env: {{{}: a}}\n", name))),
              fmt::format("cairn.yaml:5:11: steps.s.env: expected a variable the sandbox does not set itself (not "
                          "PATH, HOME, LANG or CAIRN_*), got \"{}\"",
                          name));
  }
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    env: {A: [1]}\n")),
            "cairn.yaml:5:14: steps.s.env.A: expected a single value (text, number or boolean), got a list");
}

TEST(PipelineSpecErrorTest, DuplicateNames) {
  EXPECT_EQ(ErrorOf("name: p\nsteps:\n  s: {command: x}\n  s: {command: y}\n"),
            "cairn.yaml:4:3: steps: duplicate key \"s\"");
  EXPECT_EQ(ErrorOf("name: p\nname: q\nsteps:\n  s: {command: x}\n"), "cairn.yaml:2:1: duplicate key \"name\"");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    outputs: [a, b, a]\n")),
            "cairn.yaml:5:21: steps.s.outputs[2]: output \"a\" is listed twice");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    inputs:\n      a: dataset:d\n      a: dataset:e\n")),
            "cairn.yaml:7:7: steps.s.inputs: duplicate key \"a\"");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    params: {a: 1, a: 2}\n")),
            "cairn.yaml:5:20: steps.s.params: duplicate key \"a\"");
  EXPECT_EQ(ErrorOf("name: p\nsteps:\n  a: {command: x}\n  s: {command: x, after: [a, a]}\n"),
            "cairn.yaml:4:30: steps.s.after[1]: step \"a\" is listed twice");
}

TEST(PipelineSpecErrorTest, WrongTypesAndRanges) {
  EXPECT_EQ(ErrorOf("name: p\nmax_parallel: 0\nsteps:\n  s: {command: x}\n"),
            "cairn.yaml:2:15: max_parallel: expected an integer from 1 to 64, got \"0\"");
  EXPECT_EQ(ErrorOf("name: p\nmax_parallel: 65\nsteps:\n  s: {command: x}\n"),
            "cairn.yaml:2:15: max_parallel: expected an integer from 1 to 64, got \"65\"");
  EXPECT_EQ(ErrorOf("name: p\nmax_parallel: 2.5\nsteps:\n  s: {command: x}\n"),
            "cairn.yaml:2:15: max_parallel: expected an integer from 1 to 64, got \"2.5\"");
  EXPECT_EQ(ErrorOf("name: p\nenvironment: envs/py\nsteps:\n  s: {command: x}\n"),
            "cairn.yaml:2:14: environment: expected an absolute path of an environment folder, got \"envs/py\"");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    network: maybe\n")),
            "cairn.yaml:5:14: steps.s.network: expected true or false, got \"maybe\"");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    retries: 11\n")),
            "cairn.yaml:5:14: steps.s.retries: expected an integer from 0 to 10, got \"11\"");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    retries: -1\n")),
            "cairn.yaml:5:14: steps.s.retries: expected an integer from 0 to 10, got \"-1\"");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    retries:\n")),
            "cairn.yaml:5:5: steps.s.retries: expected an integer from 0 to 10, got nothing");
  EXPECT_EQ(ErrorOf(OneStep("    command: {a: b}\n")),
            "cairn.yaml:4:14: steps.s.command: expected a command: a text (run with /bin/sh -c) or a list of "
            "arguments, got a map");
  EXPECT_EQ(ErrorOf(OneStep("    command: []\n")),
            "cairn.yaml:4:14: steps.s.command: expected a command: a text (run with /bin/sh -c) or a list of "
            "arguments, got a list");
  EXPECT_EQ(ErrorOf(OneStep("    command: ''\n")),
            "cairn.yaml:4:14: steps.s.command: expected a command: a text (run with /bin/sh -c) or a list of "
            "arguments, got \"\"");
  EXPECT_EQ(ErrorOf(OneStep("    command: [a, [b]]\n")),
            "cairn.yaml:4:18: steps.s.command[1]: expected an argument (a text, number or boolean), got a list");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    params: {a: [1, 2]}\n")),
            "cairn.yaml:5:17: steps.s.params.a: expected a single value (text, number or boolean), got a list");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    params: [a]\n")),
            "cairn.yaml:5:13: steps.s.params: expected a map of params (name: value), got a list");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    outputs: a\n")),
            "cairn.yaml:5:14: steps.s.outputs: expected a list of output names, got \"a\"");
  EXPECT_EQ(ErrorOf("name: p\nsteps:\n  s: [x]\n"),
            "cairn.yaml:3:6: steps.s: expected a map describing the step (command, inputs, outputs, ...), got a list");
  EXPECT_EQ(ErrorOf("name: p\nsteps:\n  ? [a]\n  : {command: x}\n"),
            "cairn.yaml:3:5: steps: expected a key name, got a list");
}

TEST(PipelineSpecErrorTest, Resources) {
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    resources: {memory: 2 GB}\n")), "OK");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    resources: {memory: 2.5GiB}\n")),
            "cairn.yaml:5:25: steps.s.resources.memory: expected a size above 0 like 512MiB, 2GiB or 1073741824, got "
            "\"2.5GiB\"");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    resources: {memory: 0}\n")),
            "cairn.yaml:5:25: steps.s.resources.memory: expected a size above 0 like 512MiB, 2GiB or 1073741824, got "
            "\"0\"");
  EXPECT_THAT(ErrorOf(OneStep("    command: x\n    resources: {output_size: 99999999999T}\n")),
              HasSubstr("steps.s.resources.output_size: expected a size above 0"));
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    resources: {timeout: 10}\n")),
            "cairn.yaml:5:26: steps.s.resources.timeout: expected a duration above 0 like 90s, 10m or 1h30m, got "
            "\"10\"");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    resources: {timeout: 0s}\n")),
            "cairn.yaml:5:26: steps.s.resources.timeout: expected a duration above 0 like 90s, 10m or 1h30m, got "
            "\"0s\"");
  EXPECT_THAT(ErrorOf(OneStep("    command: x\n    resources: {timeout: 30m1h}\n")),
              HasSubstr("steps.s.resources.timeout: expected a duration"));
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    resources: {cpu_time: 0s}\n")), "OK");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    resources: {cpus: 0}\n")),
            "cairn.yaml:5:23: steps.s.resources.cpus: expected an integer from 1 to 1024, got \"0\"");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    resources: {gpus: 65}\n")),
            "cairn.yaml:5:23: steps.s.resources.gpus: expected an integer from 0 to 64, got \"65\"");
  EXPECT_THAT(ErrorOf(OneStep("    command: x\n    resources: {processes: 99999999999999999999}\n")),
              HasSubstr("steps.s.resources.processes: expected an integer from 1 to 1000000"));
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    resources: 4\n")),
            "cairn.yaml:5:16: steps.s.resources: expected a map of resources (cpus, memory, gpus, timeout, ...), got "
            "\"4\"");
}

TEST(PipelineSpecErrorTest, InputReferences) {
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    inputs:\n      data: foo\n")),
            "cairn.yaml:6:13: steps.s.inputs.data: expected dataset:NAME@REF[#SPLIT] or step:STEP/OUTPUT, got "
            "\"foo\"");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    inputs:\n      data: dataset:-d\n")),
            "cairn.yaml:6:13: steps.s.inputs.data: expected dataset:NAME@REF[#SPLIT] or step:STEP/OUTPUT, got "
            "\"dataset:-d\" (a dataset name is 1-128 [A-Za-z0-9_.-], not starting with . or -)");
  EXPECT_THAT(ErrorOf(OneStep("    command: x\n    inputs:\n      data: 'dataset:d@'\n")),
              HasSubstr("(a ref is a branch, tag or commit id"));
  EXPECT_THAT(ErrorOf(OneStep("    command: x\n    inputs:\n      data: 'dataset:d#'\n")),
              HasSubstr("(a split name is 1-64 [A-Za-z0-9_.-])"));
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    inputs:\n      data: step:other\n")),
            "cairn.yaml:6:13: steps.s.inputs.data: expected dataset:NAME@REF[#SPLIT] or step:STEP/OUTPUT, got "
            "\"step:other\"");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    inputs: [dataset:d]\n")),
            "cairn.yaml:5:13: steps.s.inputs: expected a map of inputs (name: dataset:NAME@REF or step:STEP/OUTPUT), "
            "got a list");
}

TEST(PipelineSpecErrorTest, UnknownStepsAndOutputs) {
  constexpr char kPrepare[] = "name: p\nsteps:\n  prepare:\n    command: x\n    outputs: [clean]\n  train:\n";
  EXPECT_EQ(ErrorOf(std::string(kPrepare) + "    command: y\n    inputs:\n      data: step:prepar/clean\n"),
            "cairn.yaml:9:13: steps.train.inputs.data: expected the name of a step of this pipeline, got \"prepar\" "
            "(did you mean \"prepare\"? no such step)");
  EXPECT_EQ(ErrorOf(std::string(kPrepare) + "    command: y\n    inputs:\n      data: step:prepare/clen\n"),
            "cairn.yaml:9:13: steps.train.inputs.data: expected an output of step \"prepare\" (outputs: clean), got "
            "\"clen\" (did you mean \"clean\"? no such output)");
  EXPECT_EQ(ErrorOf(std::string(kPrepare) + "    command: y\n    after: [prepare, deploy]\n"),
            "cairn.yaml:8:22: steps.train.after[1]: expected the name of a step of this pipeline, got \"deploy\" (no "
            "such step)");
}

TEST(PipelineSpecErrorTest, ParamReferences) {
  EXPECT_EQ(ErrorOf(OneStep("    command: run --lr ${lr}\n    params: {seed: 1}\n")),
            "cairn.yaml:4:14: steps.s.command: expected ${NAME} naming a param of this step (params: seed), got "
            "\"${lr}\" (write $${ for a literal ${)");
  EXPECT_EQ(ErrorOf(OneStep("    command: [run, '${lr}']\n")),
            "cairn.yaml:4:14: steps.s.command: expected ${NAME} naming a param of this step (it has none), got "
            "\"${lr}\" (write $${ for a literal ${)");
  EXPECT_EQ(ErrorOf(OneStep("    command: run ${lr\n    params: {lr: 1}\n")),
            "cairn.yaml:4:14: steps.s.command: expected ${NAME} naming a param (or $${ for a literal ${), got an "
            "unclosed \"${lr\"");
  // Params may come after the command in the file; $${ and a lone $ stay literal.
  ASSERT_OK_AND_ASSIGN(
      PipelineSpec spec,
      ParsePipelineSpec(OneStep("    command: echo $HOME $$ $${x} ${x}$\n    params: {x: '1'}\n"), kFile));
  EXPECT_EQ(spec.steps[0].argv[2], "echo $HOME $$ ${x} 1$");
}

TEST(PipelineSpecErrorTest, BadTriggers) {
  EXPECT_EQ(ErrorOf("name: p\ntriggers:\n  cron: 0 25 * * *\nsteps:\n  s: {command: x}\n"),
            "cairn.yaml:3:9: triggers.cron: expected a cron schedule like \"0 3 * * *\" (minute hour day month "
            "weekday, UTC), got \"0 25 * * *\": cron field 2 (hour): expected 0-23, a range a-b, a step */n or a-b/n, "
            "or a list of those, got \"25\"");
  EXPECT_EQ(ErrorOf("name: p\ntriggers:\n  webhook: 1x\nsteps:\n  s: {command: x}\n"),
            "cairn.yaml:3:12: triggers.webhook: expected true or false, got \"1x\"");
}

TEST(PipelineSpecErrorTest, Cycles) {
  EXPECT_EQ(ErrorOf("name: p\nsteps:\n  a: {command: x, after: [b]}\n  b: {command: x, after: [a]}\n"),
            "cairn.yaml:3:3: steps.a: cycle: a -> b -> a");
  // "x -> y" means y needs x.
  EXPECT_EQ(ErrorOf("name: p\nsteps:\n"
                    "  ok: {command: x, outputs: [o]}\n"
                    "  a: {command: x, outputs: [o], inputs: {i: step:c/o}}\n"
                    "  b: {command: x, outputs: [o], inputs: {i: step:a/o, j: step:ok/o}}\n"
                    "  c: {command: x, outputs: [o], after: [b]}\n"),
            "cairn.yaml:4:3: steps.a: cycle: a -> b -> c -> a");
  EXPECT_EQ(ErrorOf("name: p\nsteps:\n  a: {command: x, after: [a]}\n"), "cairn.yaml:3:3: steps.a: cycle: a -> a");
  EXPECT_EQ(ErrorOf("name: p\nsteps:\n  a: {command: x, outputs: [o], inputs: {i: step:a/o}}\n"),
            "cairn.yaml:3:3: steps.a: cycle: a -> a");
}

TEST(PipelineSpecErrorTest, TextThatCannotBeRunOrStored) {
  EXPECT_EQ(ErrorOf(OneStep("    command: \"a\\0b\"\n")),
            "cairn.yaml:4:14: steps.s.command: expected a command: a text (run with /bin/sh -c) or a list of "
            "arguments, got a text with a NUL byte");
  EXPECT_EQ(ErrorOf(OneStep("    command: x\n    params: {p: \"a\xff\"}\n")),
            "cairn.yaml:5:17: steps.s.params.p: expected a single value (text, number or boolean), got text that is "
            "not UTF-8");
  EXPECT_THAT(ErrorOf(OneStep("    command: x\n    params: {p: \"\\ud800\"}\n")),
              StartsWith("cairn.yaml:5:24: invalid YAML: "));
}

TEST(PipelineSpecErrorTest, Limits) {
  EXPECT_THAT(ErrorOf(std::string(5 << 20, ' ')), StartsWith("cairn.yaml:1:1: the spec is 5242880 bytes, more than"));
  // Aliases let a small text name a large value many times.
  std::string big = "name: p\nsteps:\n  s0: &big\n    command: [x";
  for (int i = 0; i < 10000; ++i) big += ", a";
  big += "]\n";
  for (int i = 1; i < 300; ++i) big += fmt::format("  s{}: *big\n", i);
  EXPECT_THAT(ErrorOf(big), HasSubstr("the spec is too large (more than 2000000 values"));
}

TEST(PipelineSpecErrorTest, Aliases) {
  // Anchors and aliases reuse values...
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec,
                       ParsePipelineSpec("name: p\nsteps:\n"
                                         "  a: {command: x, resources: &big {cpus: 8, memory: 64GiB}}\n"
                                         "  b: {command: y, resources: *big}\n",
                                         kFile));
  EXPECT_EQ(spec.steps[1].resources.cpus, 8);
  EXPECT_EQ(spec.steps[1].resources.memory_bytes, 64ull << 30);
  // ...but a value cannot contain itself, and an alias needs its anchor.
  EXPECT_EQ(ErrorOf("name: p\nsteps:\n  s: &a {command: [x, *a]}\n"),
            "cairn.yaml:3:23: invalid YAML: an alias may not refer to the value it is part of");
  EXPECT_THAT(ErrorOf("name: p\nsteps:\n  s: {command: *nope}\n"), StartsWith("cairn.yaml:3:16: invalid YAML: "));
}

TEST(PipelineSpecErrorTest, FileNameIsTheCallers) {
  absl::StatusOr<PipelineSpec> spec = ParsePipelineSpec("name: p\n", "pipelines/nightly.yaml");
  EXPECT_THAT(spec, StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("pipelines/nightly.yaml:1:1: ")));
}

// --- Formats --------------------------------------------------------------

TEST(PipelineSpecFormatTest, InputRefs) {
  ASSERT_OK_AND_ASSIGN(InputRef a, ParseInputRef("dataset:tumours"));
  EXPECT_EQ(a.ToString(), "dataset:tumours@main");
  ASSERT_OK_AND_ASSIGN(InputRef b, ParseInputRef("dataset:tumours#test"));
  EXPECT_EQ(b.ref, "main");
  EXPECT_EQ(b.split, "test");
  EXPECT_EQ(b.ToString(), "dataset:tumours@main#test");
  ASSERT_OK_AND_ASSIGN(InputRef c, ParseInputRef("dataset:t.v2@0a1b2c3d#val"));
  EXPECT_EQ(c.dataset, "t.v2");
  EXPECT_EQ(c.ref, "0a1b2c3d");
  ASSERT_OK_AND_ASSIGN(InputRef d, ParseInputRef("step:prepare/clean"));
  EXPECT_EQ(d.kind, InputRef::Kind::kStep);
  EXPECT_EQ(d.ToString(), "step:prepare/clean");
  for (const InputRef& r : {a, b, c, d}) {
    ASSERT_OK_AND_ASSIGN(InputRef back, ParseInputRef(r.ToString()));
    EXPECT_EQ(back, r);
  }
  for (const char* bad : {"", "dataset:", "dataset:a@", "dataset:a#", "dataset:a@b@c", "dataset:a#b#c",
                          "step:", "step:a/", "step:/b", "step:a/b/c", "step:a", "Dataset:a", "file:/etc/passwd"}) {
    EXPECT_THAT(ParseInputRef(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
}

TEST(PipelineSpecFormatTest, Sizes) {
  EXPECT_EQ(*ParseByteSize("512"), 512u);
  EXPECT_EQ(*ParseByteSize("512B"), 512u);
  EXPECT_EQ(*ParseByteSize("4K"), 4096u);
  EXPECT_EQ(*ParseByteSize("4KiB"), 4096u);
  EXPECT_EQ(*ParseByteSize("4KB"), 4000u);
  EXPECT_EQ(*ParseByteSize("3MiB"), 3u << 20);
  EXPECT_EQ(*ParseByteSize("3MB"), 3000000u);
  EXPECT_EQ(*ParseByteSize("2 GiB"), 2ull << 30);
  EXPECT_EQ(*ParseByteSize("2G"), 2ull << 30);
  EXPECT_EQ(*ParseByteSize("2GB"), 2000000000u);
  EXPECT_EQ(*ParseByteSize("1TiB"), 1ull << 40);
  EXPECT_EQ(*ParseByteSize("1T"), 1ull << 40);
  EXPECT_EQ(*ParseByteSize("1TB"), 1000000000000u);
  EXPECT_EQ(*ParseByteSize("16777215TiB"), 16777215ull << 40);
  for (const char* bad :
       {"", "GiB", "1.5GiB", "-1", "1 PiB", "1XB", "16777216TiB", "99999999999999999999", " 1", "1e9"}) {
    EXPECT_THAT(ParseByteSize(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
}

TEST(PipelineSpecFormatTest, Durations) {
  EXPECT_EQ(*ParseSpecDuration("90s"), absl::Seconds(90));
  EXPECT_EQ(*ParseSpecDuration("10m"), absl::Minutes(10));
  EXPECT_EQ(*ParseSpecDuration("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseSpecDuration("2d"), absl::Hours(48));
  EXPECT_EQ(*ParseSpecDuration("1d2h3m4s"), absl::Seconds(86400 + 7200 + 180 + 4));
  EXPECT_EQ(*ParseSpecDuration("0s"), absl::ZeroDuration());
  EXPECT_EQ(*ParseSpecDuration("366d"), absl::Hours(24 * 366));
  for (const char* bad : {"", "10", "m", "1x", "30m1h", "1h1h", "1.5h", "367d", "-1s", "1h 30m", "9999999999s"}) {
    EXPECT_THAT(ParseSpecDuration(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
}

TEST(PipelineSpecFormatTest, ScalarsKeepTheTextWritten) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec,
                       ParsePipelineSpec(OneStep("    command: [run, '${a}', '${b}', '${c}', '${d}']\n"
                                                 "    params: {a: 1.50, b: 0x10, c: yes, d: \"\"}\n"),
                                         kFile));
  EXPECT_THAT(spec.steps[0].argv, ElementsAre("run", "1.50", "0x10", "yes", ""));
}

// --- Overrides ------------------------------------------------------------

constexpr char kOverrideSpec[] = R"(name: p
steps:
  prep.v2:
    command: prep --seed ${seed} --lr ${lr}
    params: {seed: 1, lr: "0.1"}
    outputs: [o]
  train:
    command: [train, "--lr=${lr}"]
    params: {lr: "0.1", epochs: 3}
    inputs: {d: step:prep.v2/o}
)";

TEST(PipelineSpecOverrideTest, NameSetsEveryStepThatDeclaresIt) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec, ParsePipelineSpec(kOverrideSpec, kFile));
  ASSERT_OK(ApplyParamOverrides(spec, {"lr=0.01"}));
  EXPECT_EQ(spec.steps[0].argv[2], "prep --seed 1 --lr 0.01");
  EXPECT_THAT(spec.steps[1].argv, ElementsAre("train", "--lr=0.01"));
  EXPECT_THAT(spec.steps[1].params, ElementsAre(Pair("lr", "0.01"), Pair("epochs", "3")));
  EXPECT_THAT(spec.steps[0].command_template, ElementsAre("prep --seed ${seed} --lr ${lr}"));
}

TEST(PipelineSpecOverrideTest, StepDotNameSetsOneStep) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec, ParsePipelineSpec(kOverrideSpec, kFile));
  // The step name has a dot itself; the param is what follows the last one.
  ASSERT_OK(ApplyParamOverrides(spec, {"prep.v2.lr=0.5", "train.epochs=10", "seed=a=b"}));
  EXPECT_EQ(spec.steps[0].argv[2], "prep --seed a=b --lr 0.5");
  EXPECT_THAT(spec.steps[1].argv, ElementsAre("train", "--lr=0.1"));
  EXPECT_THAT(spec.steps[1].params, ElementsAre(Pair("lr", "0.1"), Pair("epochs", "10")));
  // Later overrides win.
  ASSERT_OK(ApplyParamOverrides(spec, {"lr=1", "train.lr=2"}));
  EXPECT_EQ(spec.steps[0].argv[2], "prep --seed a=b --lr 1");
  EXPECT_THAT(spec.steps[1].argv, ElementsAre("train", "--lr=2"));
}

TEST(PipelineSpecOverrideTest, ErrorsChangeNothing) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec, ParsePipelineSpec(kOverrideSpec, kFile));
  const std::string before = PipelineToJson(spec).dump();
  EXPECT_THAT(ApplyParamOverrides(spec, {"lr=9", "momentum=0.9"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "param override \"momentum=0.9\": no step has a param \"momentum\""));
  EXPECT_THAT(ApplyParamOverrides(spec, {"deploy.lr=1"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "param override \"deploy.lr=1\": no step named \"deploy\""));
  EXPECT_THAT(ApplyParamOverrides(spec, {"train.seed=1"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "param override \"train.seed=1\": step \"train\" has no param \"seed\""));
  EXPECT_THAT(ApplyParamOverrides(spec, {"lr"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected NAME=VALUE or STEP.NAME=VALUE")));
  EXPECT_THAT(ApplyParamOverrides(spec, {"=1"}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ApplyParamOverrides(spec, {"train.=1"}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ApplyParamOverrides(spec, {std::string("lr=a\0b", 6)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
  EXPECT_THAT(ApplyParamOverrides(spec, {"lr=\xff"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UTF-8")));
  // A list command must not end up with an empty program name.
  ASSERT_OK_AND_ASSIGN(PipelineSpec prog,
                       ParsePipelineSpec(OneStep("    command: ['${p}']\n    params: {p: x}\n"), kFile));
  EXPECT_THAT(ApplyParamOverrides(prog, {"p="}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(prog.steps[0].argv, ElementsAre("x"));
  EXPECT_EQ(PipelineToJson(spec).dump(), before);
  EXPECT_OK(ApplyParamOverrides(spec, {}));
  EXPECT_EQ(PipelineToJson(spec).dump(), before);
}

// --- Order ----------------------------------------------------------------

constexpr char kDiamond[] = R"(name: p
steps:
  report: {command: x, inputs: {m: step:train/m, e: step:eval/e}}
  eval: {command: x, outputs: [e], inputs: {m: step:train/m}}
  lint: {command: x}
  train: {command: x, outputs: [m], inputs: {d: step:prep/d, d2: step:prep/d}}
  prep: {command: x, outputs: [d], after: [lint]}
  docs: {command: x}
)";

TEST(PipelineSpecOrderTest, EachStepComesAfterItsDependenciesTiesInFileOrder) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec, ParsePipelineSpec(kDiamond, kFile));
  EXPECT_THAT(TopologicalOrder(spec), ElementsAre("lint", "prep", "train", "eval", "report", "docs"));
}

TEST(PipelineSpecOrderTest, Dependencies) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec, ParsePipelineSpec(kDiamond, kFile));
  EXPECT_THAT(Dependencies(*spec.FindStep("report")), ElementsAre("train", "eval"));
  EXPECT_THAT(Dependencies(*spec.FindStep("train")), ElementsAre("prep"));  // each once
  EXPECT_THAT(Dependencies(*spec.FindStep("prep")), ElementsAre("lint"));
  EXPECT_THAT(Dependencies(*spec.FindStep("docs")), ElementsAre());
}

TEST(PipelineSpecOrderTest, StepWithAncestors) {
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec, ParsePipelineSpec(kDiamond, kFile));
  EXPECT_THAT(StepWithAncestors(spec, "eval"), ElementsAre("lint", "prep", "train", "eval"));
  EXPECT_THAT(StepWithAncestors(spec, "report"), ElementsAre("lint", "prep", "train", "eval", "report"));
  EXPECT_THAT(StepWithAncestors(spec, "docs"), ElementsAre("docs"));
  EXPECT_THAT(StepWithAncestors(spec, "nope"), ElementsAre());
}

TEST(PipelineSpecOrderTest, HandBuiltSpecsWithBadEdgesDoNotCrash) {
  PipelineSpec spec;
  spec.steps.resize(3);
  spec.steps[0].name = "a";
  spec.steps[0].after = {"b", "ghost"};
  spec.steps[1].name = "b";
  spec.steps[1].after = {"a"};
  spec.steps[2].name = "c";
  EXPECT_THAT(TopologicalOrder(spec), ElementsAre("c", "a", "b"));
  EXPECT_THAT(StepWithAncestors(spec, "a"), ElementsAre("a", "b"));
}

TEST(PipelineSpecOrderTest, ThousandStepSpec) {
  // A chain with fan-in: step i reads i-1's output and runs after i-7.
  std::string text = "name: big\nmax_parallel: 8\nsteps:\n";
  constexpr int kSteps = 1000;
  for (int i = 0; i < kSteps; ++i) {
    text +=
        fmt::format("  s{}:\n    command: [run, '${{n}}', --out, o]\n    params: {{n: {}}}\n    outputs: [o]\n", i, i);
    text += "    resources: {cpus: 1, memory: 1GiB, timeout: 10m}\n";
    if (i > 0) text += fmt::format("    inputs: {{prev: step:s{}/o}}\n", i - 1);
    if (i >= 7) text += fmt::format("    after: [s{}]\n", i - 7);
  }
  const auto start = std::chrono::steady_clock::now();
  ASSERT_OK_AND_ASSIGN(PipelineSpec spec, ParsePipelineSpec(text, kFile));
  const std::vector<std::string> order = TopologicalOrder(spec);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  // Printed for the curious; timings are for benchmarks, not assertions.
  std::printf("1000-step spec (%zu bytes): parse + validate + order in %.1f ms\n", text.size(),
              std::chrono::duration<double, std::milli>(elapsed).count());
  ASSERT_EQ(order.size(), static_cast<size_t>(kSteps));
  for (int i = 0; i < kSteps; ++i) EXPECT_EQ(order[i], fmt::format("s{}", i));
  EXPECT_THAT(spec.steps[999].argv, ElementsAre("run", "999", "--out", "o"));
  EXPECT_EQ(StepWithAncestors(spec, "s999").size(), static_cast<size_t>(kSteps));

  // Closing the loop anywhere is a cycle through every step after it.
  std::string cyclic = text;
  cyclic.replace(cyclic.find("  s0:\n"), 6, "  s0:\n    after: [s999]\n");
  EXPECT_THAT(ErrorOf(cyclic), HasSubstr("steps.s0: cycle: s0 -> s1 -> s2 -> s3 -> s4 -> s5 -> s6 -> s7 -> ... (985 "
                                         "more) -> s993 -> s994 -> s995 -> s996 -> s997 -> s998 -> s999 -> s0"));
}

}  // namespace
}  // namespace cairn::pipeline

namespace cairn::pipeline {
namespace {

TEST(PipelineSpecTest, ReservedOutputNameIsRefused) {
  EXPECT_THAT(ErrorOf(OneStep("    command: x\n    outputs: [model, _cairn]\n")),
              ::testing::HasSubstr("\"_cairn\" is reserved"));
}

}  // namespace
}  // namespace cairn::pipeline
