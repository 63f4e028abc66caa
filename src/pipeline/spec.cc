#include "pipeline/spec.h"

#include <fmt/format.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <queue>
#include <sstream>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "pipeline/cron.h"

namespace cairn::pipeline {
namespace {

// Hostile input must not cost unbounded time or memory: the text is capped,
// and so is the number of YAML values looked at, because aliases let a small
// text name one large value many times (`a: *big`, `b: *big`, ...).
constexpr size_t kMaxSpecBytes = 4 << 20;
constexpr int64_t kMaxValuesVisited = 2'000'000;
constexpr size_t kMaxSteps = 10'000;

constexpr int kMaxParallel = 64;
constexpr int kMaxRetries = 10;
constexpr int kMaxCpus = 1024;
constexpr int kMaxGpus = 64;
constexpr int kMaxProcesses = 1'000'000;
constexpr absl::Duration kMaxDuration = absl::Hours(24 * 366);

constexpr std::string_view kDefaultRef = "main";
constexpr std::string_view kInputRefForms = "dataset:NAME@REF[#SPLIT] or step:STEP/OUTPUT";

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

// Step, input and output names: [A-Za-z0-9_.-]{1,64}. They become path
// components (/cairn/in/<name>, job directories), so "." and ".." are out.
bool IsValidName(std::string_view s) {
  if (s.empty() || s.size() > 64 || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), IsNameChar);
}

// Datasets, branches and tags follow data::ValidateName: 1-128 of
// [A-Za-z0-9_.-], not starting with '.' or '-'. A commit id (hex) fits too.
bool IsDataName(std::string_view s) {
  if (s.empty() || s.size() > 128 || s[0] == '.' || s[0] == '-') return false;
  return std::all_of(s.begin(), s.end(), IsNameChar);
}

bool IsIdentifier(std::string_view s, size_t max_size) {
  if (s.empty() || s.size() > max_size) return false;
  auto head = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!head(s[0])) return false;
  return std::all_of(s.begin() + 1, s.end(), [&](char c) { return head(c) || (c >= '0' && c <= '9'); });
}

// Param names exclude '.', which separates the step in "step.k=v" overrides.
bool IsParamName(std::string_view s) { return IsIdentifier(s, 64); }

bool IsRoleWord(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'; });
}

// The executor sets these itself (exec/executor.h); a step may not change them.
bool IsReservedEnvName(std::string_view s) {
  return s == "PATH" || s == "HOME" || s == "LANG" || s.starts_with("CAIRN_");
}

bool HasNul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

// The length of the valid UTF-8 sequence at the start of `s` (no overlong
// forms, surrogates or code points above U+10FFFF), or 0.
size_t Utf8SequenceLength(std::string_view s) {
  const auto b0 = static_cast<unsigned char>(s[0]);
  if (b0 < 0x80) return 1;
  size_t len = 0;
  uint32_t cp = 0;
  if ((b0 & 0xe0) == 0xc0) {
    len = 2, cp = b0 & 0x1f;
  } else if ((b0 & 0xf0) == 0xe0) {
    len = 3, cp = b0 & 0x0f;
  } else if ((b0 & 0xf8) == 0xf0) {
    len = 4, cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (s.size() < len) return 0;
  for (size_t i = 1; i < len; ++i) {
    const auto b = static_cast<unsigned char>(s[i]);
    if ((b & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3f);
  }
  static constexpr uint32_t kMinForLength[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMinForLength[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

// Specs become JSON (PipelineToJson), which must be valid UTF-8.
bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t len = Utf8SequenceLength(s.substr(i));
    if (len == 0) return false;
    i += len;
  }
  return true;
}

// `s` for a message: bytes that are not UTF-8 as \\xNN (messages end up in
// JSON, which must be UTF-8), control characters as \\uNNNN and, when
// `quoted`, '"' and '\\' escaped; cut short after `max` bytes.
std::string Escape(std::string_view s, size_t max, bool quoted) {
  std::string out;
  size_t i = 0;
  while (i < s.size() && i < max) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t len = Utf8SequenceLength(s.substr(i));
    if (len == 0) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
    } else if (len > 1) {
      out += s.substr(i, len);
      i += len;
    } else {
      if (quoted && (c == '"' || c == '\\')) {
        out += '\\';
        out += static_cast<char>(c);
      } else if (c < 0x20 || c == 0x7f) {
        out += fmt::format("\\u{:04x}", c);
      } else {
        out += static_cast<char>(c);
      }
      ++i;
    }
  }
  if (i < s.size()) out += "...";
  return out;
}

// A value quoted for a message, long values cut short.
std::string Quote(std::string_view s) { return "\"" + Escape(s, 80, /*quoted=*/true) + "\""; }

std::string JoinNames(const std::vector<std::string_view>& names) {
  std::string out;
  for (std::string_view n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

// "what: a, b, c" for a message, or "N whats" when listing would bury it.
std::string ListForMessage(std::string_view what, const std::vector<std::string_view>& names) {
  if (names.empty()) return "it has none";
  if (names.size() > 20) return fmt::format("{} {}s", names.size(), what);
  return fmt::format("{}s: {}", what, JoinNames(names));
}

// Levenshtein distance, for "did you mean" on short key names.
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string Suggestion(std::string_view got, const std::vector<std::string_view>& candidates) {
  if (got.size() > 64) return "";
  std::string_view best;
  size_t best_distance = 3;  // only close misspellings
  for (std::string_view c : candidates) {
    const size_t d = EditDistance(got, c);
    if (d < best_distance && d < c.size()) {
      best = c;
      best_distance = d;
    }
  }
  return best.empty() ? "" : fmt::format("did you mean \"{}\"? ", best);
}

bool ParseUint(std::string_view s, uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  out = v;
  return true;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Expands ${name} in `text` from `params`; "$${" is a literal "${". On error
// returns the reason (no location).
absl::StatusOr<std::string> Expand(std::string_view text,
                                   const absl::flat_hash_map<std::string_view, std::string_view>& params) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c != '$') {
      out += c;
      ++i;
      continue;
    }
    if (text.substr(i, 3) == "$${") {
      out += "${";
      i += 3;
      continue;
    }
    if (i + 1 >= text.size() || text[i + 1] != '{') {
      out += c;
      ++i;
      continue;
    }
    const size_t close = text.find('}', i + 2);
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError(fmt::format(
          "expected ${{NAME}} naming a param (or $${{ for a literal ${{), got an unclosed {}", Quote(text.substr(i))));
    }
    const std::string_view name = text.substr(i + 2, close - i - 2);
    auto it = params.find(name);
    if (it == params.end()) {
      std::vector<std::string_view> names;
      for (const auto& [k, unused] : params) names.push_back(k);
      std::sort(names.begin(), names.end());
      return absl::InvalidArgumentError(
          fmt::format("expected ${{NAME}} naming a param of this step ({}), got {} (write $${{ for a literal ${{)",
                      ListForMessage("param", names), Quote(text.substr(i, close - i + 1))));
    }
    out += it->second;
    i = close + 1;
  }
  return out;
}

// Sets step.argv from command_template and params.
absl::Status ExpandCommand(StepSpec& step) {
  absl::flat_hash_map<std::string_view, std::string_view> params;
  params.reserve(step.params.size());
  for (const auto& [k, v] : step.params) params.emplace(k, v);
  std::vector<std::string> argv;
  if (step.shell) {
    if (step.command_template.size() != 1) {
      return absl::InvalidArgumentError("a shell command has exactly one text");
    }
    argv = {"/bin/sh", "-c"};
  }
  for (const std::string& t : step.command_template) {
    ASSIGN_OR_RETURN(std::string arg, Expand(t, params));
    if (HasNul(arg)) return absl::InvalidArgumentError("a command may not contain a NUL byte");
    argv.push_back(std::move(arg));
  }
  if (argv.empty() || argv[step.shell ? 2 : 0].empty()) {
    return absl::InvalidArgumentError("expected a command, got an empty one");
  }
  step.argv = std::move(argv);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// The step graph, shared by ordering, ancestry and cycle detection.

struct StepGraph {
  std::vector<std::vector<int>> deps;        // deps[i]: the steps step i needs
  std::vector<std::vector<int>> dependents;  // the reverse edges
};

StepGraph BuildGraph(const PipelineSpec& spec) {
  const size_t n = spec.steps.size();
  absl::flat_hash_map<std::string_view, int> index;
  index.reserve(n);
  for (size_t i = 0; i < n; ++i) index.emplace(spec.steps[i].name, static_cast<int>(i));  // first one wins
  StepGraph g;
  g.deps.resize(n);
  g.dependents.resize(n);
  for (size_t i = 0; i < n; ++i) {
    for (const std::string& d : Dependencies(spec.steps[i])) {
      auto it = index.find(d);
      if (it == index.end()) continue;
      g.deps[i].push_back(it->second);
      g.dependents[it->second].push_back(static_cast<int>(i));
    }
  }
  return g;
}

// Kahn's algorithm; a min-heap of file positions makes ties go in file
// order. `done[i]` tells whether step i was placed (false: on or after a
// cycle).
std::vector<int> KahnOrder(const StepGraph& g, std::vector<bool>& done) {
  const size_t n = g.deps.size();
  std::vector<size_t> waiting(n);
  std::priority_queue<int, std::vector<int>, std::greater<>> ready;
  for (size_t i = 0; i < n; ++i) {
    waiting[i] = g.deps[i].size();
    if (waiting[i] == 0) ready.push(static_cast<int>(i));
  }
  std::vector<int> order;
  order.reserve(n);
  done.assign(n, false);
  while (!ready.empty()) {
    const int i = ready.top();
    ready.pop();
    order.push_back(i);
    done[i] = true;
    for (int d : g.dependents[i]) {
      if (--waiting[d] == 0) ready.push(d);
    }
  }
  return order;
}

// One cycle among the steps Kahn could not place, in data-flow order
// (each step is needed by the next), starting and ending with the step that
// comes first in the file. REQUIRES: some step is not done.
std::vector<int> FindCycle(const StepGraph& g, const std::vector<bool>& done) {
  int start = 0;
  while (done[start]) ++start;
  // Every step left over still needs a step that is left over, so walking
  // "needs" edges among them must come back to a step already seen.
  std::vector<int> path;
  absl::flat_hash_map<int, size_t> seen;
  int cur = start;
  while (!seen.contains(cur)) {
    seen.emplace(cur, path.size());
    path.push_back(cur);
    int next = -1;
    for (int d : g.deps[cur]) {
      if (!done[d]) {
        next = d;
        break;
      }
    }
    if (next < 0) return {cur};  // cannot happen for a Kahn leftover; stay safe
    cur = next;
  }
  std::vector<int> cycle(path.begin() + static_cast<std::ptrdiff_t>(seen[cur]), path.end());
  std::reverse(cycle.begin(), cycle.end());  // "needs" order -> data-flow order
  std::rotate(cycle.begin(), std::min_element(cycle.begin(), cycle.end()), cycle.end());
  cycle.push_back(cycle.front());
  return cycle;
}

// The first thing wrong with the references between steps, in file order:
// an input naming an unknown step or output, an `after` naming an unknown
// step, then a cycle.
struct GraphProblem {
  enum class Where { kInput, kAfter, kCycle };
  size_t step = 0;  // index in spec.steps (kCycle: the cycle's first step)
  Where where = Where::kCycle;
  size_t item = 0;  // index in the step's inputs or after
  std::string what;
};

std::optional<GraphProblem> FindGraphProblem(const PipelineSpec& spec) {
  absl::flat_hash_map<std::string_view, const StepSpec*> by_name;
  by_name.reserve(spec.steps.size());
  absl::flat_hash_set<std::pair<std::string_view, std::string_view>> outputs;  // (step, output)
  for (const StepSpec& s : spec.steps) {
    by_name.emplace(s.name, &s);
    for (const std::string& o : s.outputs) outputs.emplace(s.name, o);
  }
  // Only short lists are worth a "did you mean" search.
  auto unknown_step = [&](std::string_view name) {
    std::vector<std::string_view> names;
    if (spec.steps.size() <= 200) {
      for (const StepSpec& s : spec.steps) names.push_back(s.name);
    }
    return fmt::format("expected the name of a step of this pipeline, got {} ({}no such step)", Quote(name),
                       Suggestion(name, names));
  };
  for (size_t i = 0; i < spec.steps.size(); ++i) {
    const StepSpec& step = spec.steps[i];
    for (size_t j = 0; j < step.inputs.size(); ++j) {
      const InputRef& ref = step.inputs[j].ref;
      if (ref.kind != InputRef::Kind::kStep) continue;
      auto it = by_name.find(ref.step);
      if (it == by_name.end()) return GraphProblem{i, GraphProblem::Where::kInput, j, unknown_step(ref.step)};
      const StepSpec& from = *it->second;
      if (!outputs.contains({from.name, ref.output})) {
        std::vector<std::string_view> outputs(from.outputs.begin(), from.outputs.end());
        return GraphProblem{i, GraphProblem::Where::kInput, j,
                            fmt::format("expected an output of step {} ({}), got {} ({}no such output)",
                                        Quote(from.name), ListForMessage("output", outputs), Quote(ref.output),
                                        outputs.size() <= 200 ? Suggestion(ref.output, outputs) : "")};
      }
    }
    for (size_t j = 0; j < step.after.size(); ++j) {
      if (!by_name.contains(step.after[j])) {
        return GraphProblem{i, GraphProblem::Where::kAfter, j, unknown_step(step.after[j])};
      }
    }
  }
  const StepGraph g = BuildGraph(spec);
  std::vector<bool> done;
  if (KahnOrder(g, done).size() == spec.steps.size()) return std::nullopt;
  const std::vector<int> cycle = FindCycle(g, done);
  // A long cycle is named by its ends; its middle would only bury them.
  constexpr size_t kShown = 8;
  std::string text;
  for (size_t k = 0; k < cycle.size(); ++k) {
    if (cycle.size() > 3 * kShown && k == kShown) {
      text += fmt::format(" -> ... ({} more)", cycle.size() - 2 * kShown);
      k = cycle.size() - kShown;
    }
    if (!text.empty()) text += " -> ";
    text += spec.steps[cycle[k]].name;
  }
  return GraphProblem{static_cast<size_t>(cycle.front()), GraphProblem::Where::kCycle, 0, "cycle: " + text};
}

// ---------------------------------------------------------------------------
// The YAML adapter: yaml-cpp throws, so every call into it happens under the
// try in ParsePipelineSpec.
//
// yaml-cpp's own node tree (YAML::Load) costs more to build and to free than
// scanning the text does; a spec is read once, front to back, so a flat tree
// built from the parser's events is enough and several times cheaper.

struct YamlNode {
  enum class Kind : uint8_t { kNull, kScalar, kSequence, kMap };
  Kind kind = Kind::kNull;
  SourceLocation loc;
  std::string scalar;         // kScalar
  std::vector<int> children;  // kSequence: elements; kMap: key, value, key, value, ...
};

SourceLocation LocationOf(const YAML::Mark& m) {
  if (m.is_null() || m.line < 0 || m.column < 0) return SourceLocation{};
  return SourceLocation{m.line + 1, m.column + 1};
}

// Thrown (and caught in ParsePipelineSpec) when a second document starts.
struct SecondDocument {
  SourceLocation loc;
};

// Builds the tree of the first document. An alias refers to its anchor's
// node, which is shared; an alias to a collection that is still open (a
// value containing itself) is refused, so the tree has no cycles.
class YamlTreeBuilder final : public YAML::EventHandler {
 public:
  explicit YamlTreeBuilder(std::vector<YamlNode>& nodes) : nodes_(nodes) {}

  int root() const { return root_; }

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents_ > 1) throw SecondDocument{LocationOf(mark)};
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Complete(Add(YamlNode::Kind::kNull, mark), anchor);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (anchor >= anchors_.size() || anchors_[anchor] < 0) {
      throw YAML::ParserException(mark, "an alias may not refer to the value it is part of");
    }
    Attach(anchors_[anchor]);
  }
  void OnScalar(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                const std::string& value) override {
    const int node = Add(YamlNode::Kind::kScalar, mark);
    nodes_[node].scalar = value;
    Complete(node, anchor);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value /*style*/) override {
    open_.push_back({Add(YamlNode::Kind::kSequence, mark), anchor});
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value /*style*/) override {
    open_.push_back({Add(YamlNode::Kind::kMap, mark), anchor});
  }
  void OnMapEnd() override { Close(); }

 private:
  struct Open {
    int node;
    YAML::anchor_t anchor;
  };

  int Add(YamlNode::Kind kind, const YAML::Mark& mark) {
    const int node = static_cast<int>(nodes_.size());
    nodes_.emplace_back();
    nodes_.back().kind = kind;
    nodes_.back().loc = LocationOf(mark);
    Attach(node);
    return node;
  }
  void Attach(int node) {
    if (open_.empty()) {
      root_ = node;
    } else {
      nodes_[open_.back().node].children.push_back(node);
    }
  }
  void Complete(int node, YAML::anchor_t anchor) {
    if (anchor == YAML::NullAnchor) return;
    if (anchor >= anchors_.size()) anchors_.resize(anchor + 1, -1);
    anchors_[anchor] = node;
  }
  void Close() {
    const Open o = open_.back();
    open_.pop_back();
    Complete(o.node, o.anchor);
  }

  std::vector<YamlNode>& nodes_;
  std::vector<Open> open_;
  std::vector<int> anchors_;  // anchor id -> node, -1 while its collection is open
  int root_ = -1;
  int documents_ = 0;
};

// A YAML value with where it was written and its dotted path for messages.
struct Value {
  const YamlNode* node;
  SourceLocation loc;
  std::string path;
};

struct Entry {
  std::string key;
  SourceLocation key_loc;
  Value value;
};

SourceLocation LocationOr(const YamlNode& node, SourceLocation fallback) {
  return node.loc.line > 0 ? node.loc : fallback;
}

std::string ChildPath(std::string_view parent, std::string_view key) {
  return parent.empty() ? std::string(key) : fmt::format("{}.{}", parent, key);
}

// What a value is, for "got ..." in messages.
std::string Describe(const YamlNode& node) {
  switch (node.kind) {
    case YamlNode::Kind::kScalar:
      return Quote(node.scalar);
    case YamlNode::Kind::kSequence:
      return "a list";
    case YamlNode::Kind::kMap:
      return "a map";
    case YamlNode::Kind::kNull:
      break;
  }
  return "nothing";
}

bool IsMap(const Value& v) { return v.node->kind == YamlNode::Kind::kMap; }
bool IsSequence(const Value& v) { return v.node->kind == YamlNode::Kind::kSequence; }
bool IsScalar(const Value& v) { return v.node->kind == YamlNode::Kind::kScalar; }

// Per-step facts the checks after parsing need, kept out of StepSpec.
struct StepExtras {
  std::vector<SourceLocation> after_locs;
};

struct StepDefaults {
  exec::Resources resources;
  bool network = false;
  int retries = 0;
};

class SpecParser {
 public:
  SpecParser(std::string_view file_name, const std::vector<YamlNode>& nodes) : file_name_(file_name), nodes_(nodes) {}

  // REQUIRES: `root` is -1 (an empty document) or a node index.
  absl::StatusOr<PipelineSpec> Parse(int root);

 private:
  absl::Status ErrorAt(SourceLocation loc, std::string_view path, std::string_view what) const {
    if (path.empty())
      return absl::InvalidArgumentError(fmt::format("{}:{}:{}: {}", file_name_, loc.line, loc.column, what));
    return absl::InvalidArgumentError(fmt::format("{}:{}:{}: {}: {}", file_name_, loc.line, loc.column, path, what));
  }
  absl::Status Error(const Value& v, std::string_view what) const { return ErrorAt(v.loc, v.path, what); }
  absl::Status Expected(const Value& v, std::string_view expected) const {
    return Error(v, fmt::format("expected {}, got {}", expected, Describe(*v.node)));
  }

  absl::Status Visit(const Value& v) {
    if (++visited_ > kMaxValuesVisited) {
      return Error(v, fmt::format("the spec is too large (more than {} values, counting every use of an alias)",
                                  kMaxValuesVisited));
    }
    return absl::OkStatus();
  }

  // The entries of a map, in file order, with keys checked against `allowed`
  // (when non-empty) and for duplicates. REQUIRES: v.node is a map.
  absl::StatusOr<std::vector<Entry>> Entries(const Value& v, const std::vector<std::string_view>& allowed);
  // The elements of a list. REQUIRES: v.node is a sequence.
  absl::StatusOr<std::vector<Value>> Elements(const Value& v);

  absl::StatusOr<std::string> GetScalar(const Value& v, std::string_view expected);
  absl::StatusOr<bool> GetBool(const Value& v);
  absl::StatusOr<int> GetInt(const Value& v, int min, int max);
  absl::StatusOr<uint64_t> GetSize(const Value& v);
  absl::StatusOr<absl::Duration> GetDuration(const Value& v, bool allow_zero);
  absl::StatusOr<std::vector<std::pair<std::string, Value>>> GetNameList(const Value& v, std::string_view what);

  absl::Status ParseResources(const Value& v, exec::Resources& out);
  absl::Status ParseDefaults(const Value& v, StepDefaults& out);
  absl::Status ParseTriggers(const Value& v, Triggers& out);
  absl::Status ParseStep(const Entry& e, const StepDefaults& defaults, StepSpec& step, StepExtras& extras);
  absl::Status ParseCommand(const Value& v, StepSpec& step);
  absl::Status CheckGraph(const PipelineSpec& spec, const std::vector<StepExtras>& extras) const;

  std::string file_name_;
  const std::vector<YamlNode>& nodes_;
  int64_t visited_ = 0;
};

absl::StatusOr<std::vector<Entry>> SpecParser::Entries(const Value& v, const std::vector<std::string_view>& allowed) {
  std::vector<Entry> out;
  absl::flat_hash_set<std::string> keys;
  const std::vector<int>& children = v.node->children;
  out.reserve(children.size() / 2);
  for (size_t i = 0; i + 1 < children.size(); i += 2) {
    const YamlNode& key = nodes_[children[i]];
    const YamlNode& value = nodes_[children[i + 1]];
    const SourceLocation key_loc = LocationOr(key, v.loc);
    Value key_value{&key, key_loc, v.path};
    RETURN_IF_ERROR(Visit(key_value));
    if (key.kind != YamlNode::Kind::kScalar) {
      return Error(key_value, fmt::format("expected a key name, got {}", Describe(key)));
    }
    std::string name = key.scalar;
    if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      return Error(key_value, fmt::format("unknown key {} ({}allowed: {})", Quote(name), Suggestion(name, allowed),
                                          JoinNames(allowed)));
    }
    if (!keys.insert(name).second) return Error(key_value, fmt::format("duplicate key {}", Quote(name)));
    // A key with no value ("retries:") has no useful position of its own.
    const SourceLocation value_loc = value.kind == YamlNode::Kind::kNull ? key_loc : LocationOr(value, key_loc);
    std::string path = IsValidName(name) ? ChildPath(v.path, name) : ChildPath(v.path, Quote(name));
    out.push_back(Entry{std::move(name), key_loc, Value{&value, value_loc, std::move(path)}});
  }
  return out;
}

absl::StatusOr<std::vector<Value>> SpecParser::Elements(const Value& v) {
  std::vector<Value> out;
  const std::vector<int>& children = v.node->children;
  out.reserve(children.size());
  for (size_t i = 0; i < children.size(); ++i) {
    const YamlNode& elem = nodes_[children[i]];
    Value e{&elem, elem.kind == YamlNode::Kind::kNull ? v.loc : LocationOr(elem, v.loc),
            fmt::format("{}[{}]", v.path, i)};
    RETURN_IF_ERROR(Visit(e));
    out.push_back(std::move(e));
  }
  return out;
}

absl::StatusOr<std::string> SpecParser::GetScalar(const Value& v, std::string_view expected) {
  if (!IsScalar(v)) return Expected(v, expected);
  const std::string& s = v.node->scalar;
  if (HasNul(s)) return Error(v, fmt::format("expected {}, got a text with a NUL byte", expected));
  if (!IsValidUtf8(s)) return Error(v, fmt::format("expected {}, got text that is not UTF-8", expected));
  return s;
}

absl::StatusOr<bool> SpecParser::GetBool(const Value& v) {
  constexpr std::string_view kExpected = "true or false";
  ASSIGN_OR_RETURN(std::string s, GetScalar(v, kExpected));
  const std::string lower = Lower(s);
  if (lower == "true" || lower == "yes" || lower == "on") return true;
  if (lower == "false" || lower == "no" || lower == "off") return false;
  return Expected(v, kExpected);
}

absl::StatusOr<int> SpecParser::GetInt(const Value& v, int min, int max) {
  const std::string expected = fmt::format("an integer from {} to {}", min, max);
  ASSIGN_OR_RETURN(std::string s, GetScalar(v, expected));
  const bool negative = !s.empty() && s[0] == '-';
  uint64_t magnitude = 0;
  if (!ParseUint(negative ? std::string_view(s).substr(1) : std::string_view(s), magnitude) ||
      magnitude > static_cast<uint64_t>(std::max(max, -min))) {
    return Expected(v, expected);
  }
  const int value = negative ? -static_cast<int>(magnitude) : static_cast<int>(magnitude);
  if (value < min || value > max) return Expected(v, expected);
  return value;
}

absl::StatusOr<uint64_t> SpecParser::GetSize(const Value& v) {
  constexpr std::string_view kExpected = "a size above 0 like 512MiB, 2GiB or 1073741824";
  ASSIGN_OR_RETURN(std::string s, GetScalar(v, kExpected));
  absl::StatusOr<uint64_t> bytes = ParseByteSize(s);
  if (!bytes.ok() || *bytes == 0) return Expected(v, kExpected);
  return *bytes;
}

absl::StatusOr<absl::Duration> SpecParser::GetDuration(const Value& v, bool allow_zero) {
  const std::string_view expected =
      allow_zero ? "a duration like 90s, 10m or 1h30m (0s: none)" : "a duration above 0 like 90s, 10m or 1h30m";
  ASSIGN_OR_RETURN(std::string s, GetScalar(v, expected));
  absl::StatusOr<absl::Duration> d = ParseSpecDuration(s);
  if (!d.ok() || (!allow_zero && *d == absl::ZeroDuration())) return Expected(v, expected);
  return *d;
}

// A list of distinct names ([A-Za-z0-9_.-]{1,64}).
absl::StatusOr<std::vector<std::pair<std::string, Value>>> SpecParser::GetNameList(const Value& v,
                                                                                   std::string_view what) {
  const std::string expected = fmt::format("a list of {} names", what);
  if (!IsSequence(v)) return Expected(v, expected);
  ASSIGN_OR_RETURN(std::vector<Value> elems, Elements(v));
  std::vector<std::pair<std::string, Value>> out;
  absl::flat_hash_set<std::string> seen;
  for (Value& e : elems) {
    const std::string_view article = what.starts_with('o') ? "an" : "a";
    const std::string name_expected = fmt::format("{} {} name of 1-64 [A-Za-z0-9_.-] (not . or ..)", article, what);
    ASSIGN_OR_RETURN(std::string name, GetScalar(e, name_expected));
    if (!IsValidName(name)) return Expected(e, name_expected);
    if (!seen.insert(name).second) return Error(e, fmt::format("{} {} is listed twice", what, Quote(name)));
    out.emplace_back(std::move(name), std::move(e));
  }
  return out;
}

absl::Status SpecParser::ParseResources(const Value& v, exec::Resources& out) {
  if (!IsMap(v)) return Expected(v, "a map of resources (cpus, memory, gpus, timeout, ...)");
  ASSIGN_OR_RETURN(std::vector<Entry> entries,
                   Entries(v, {"cpus", "memory", "gpus", "timeout", "cpu_time", "processes", "output_size"}));
  for (const Entry& e : entries) {
    const Value& val = e.value;
    if (e.key == "cpus") {
      ASSIGN_OR_RETURN(out.cpus, GetInt(val, 1, kMaxCpus));
    } else if (e.key == "memory") {
      ASSIGN_OR_RETURN(out.memory_bytes, GetSize(val));
    } else if (e.key == "gpus") {
      ASSIGN_OR_RETURN(out.gpus, GetInt(val, 0, kMaxGpus));
    } else if (e.key == "timeout") {
      ASSIGN_OR_RETURN(out.wall_timeout, GetDuration(val, /*allow_zero=*/false));
    } else if (e.key == "cpu_time") {
      ASSIGN_OR_RETURN(out.cpu_time, GetDuration(val, /*allow_zero=*/true));
    } else if (e.key == "processes") {
      ASSIGN_OR_RETURN(out.max_processes, GetInt(val, 1, kMaxProcesses));
    } else if (e.key == "output_size") {
      ASSIGN_OR_RETURN(out.max_output_bytes, GetSize(val));
    }
  }
  return absl::OkStatus();
}

absl::Status SpecParser::ParseDefaults(const Value& v, StepDefaults& out) {
  if (!IsMap(v)) return Expected(v, "a map of step defaults (resources, network, retries)");
  ASSIGN_OR_RETURN(std::vector<Entry> entries, Entries(v, {"resources", "network", "retries"}));
  for (const Entry& e : entries) {
    if (e.key == "resources") {
      RETURN_IF_ERROR(ParseResources(e.value, out.resources));
    } else if (e.key == "network") {
      ASSIGN_OR_RETURN(out.network, GetBool(e.value));
    } else if (e.key == "retries") {
      ASSIGN_OR_RETURN(out.retries, GetInt(e.value, 0, kMaxRetries));
    }
  }
  return absl::OkStatus();
}

absl::Status SpecParser::ParseTriggers(const Value& v, Triggers& out) {
  if (!IsMap(v)) return Expected(v, "a map of triggers (datasets, cron, webhook)");
  ASSIGN_OR_RETURN(std::vector<Entry> entries, Entries(v, {"datasets", "cron", "webhook"}));
  for (const Entry& e : entries) {
    if (e.key == "datasets") {
      ASSIGN_OR_RETURN(out.datasets, GetBool(e.value));
    } else if (e.key == "webhook") {
      ASSIGN_OR_RETURN(out.webhook, GetBool(e.value));
    } else if (e.key == "cron") {
      constexpr std::string_view kExpected = "a cron schedule like \"0 3 * * *\" (minute hour day month weekday, UTC)";
      ASSIGN_OR_RETURN(std::string text, GetScalar(e.value, kExpected));
      absl::StatusOr<CronSchedule> schedule = CronSchedule::Parse(text);
      if (!schedule.ok()) {
        return Error(e.value,
                     fmt::format("expected {}, got {}: {}", kExpected, Quote(text), schedule.status().message()));
      }
      out.cron = std::move(text);
    }
  }
  return absl::OkStatus();
}

absl::Status SpecParser::ParseCommand(const Value& v, StepSpec& step) {
  constexpr std::string_view kExpected = "a command: a text (run with /bin/sh -c) or a list of arguments";
  if (IsScalar(v)) {
    ASSIGN_OR_RETURN(std::string text, GetScalar(v, kExpected));
    if (text.empty()) return Expected(v, kExpected);
    step.shell = true;
    step.command_template = {std::move(text)};
  } else if (IsSequence(v)) {
    ASSIGN_OR_RETURN(std::vector<Value> elems, Elements(v));
    if (elems.empty()) return Expected(v, kExpected);
    step.shell = false;
    for (const Value& e : elems) {
      ASSIGN_OR_RETURN(std::string arg, GetScalar(e, "an argument (a text, number or boolean)"));
      if (step.command_template.empty() && arg.empty()) return Expected(e, "a program name");
      step.command_template.push_back(std::move(arg));
    }
  } else {
    return Expected(v, kExpected);
  }
  absl::Status expanded = ExpandCommand(step);
  if (!expanded.ok()) return Error(v, std::string(expanded.message()));
  return absl::OkStatus();
}

absl::Status SpecParser::ParseStep(const Entry& e, const StepDefaults& defaults, StepSpec& step, StepExtras& extras) {
  const Value& v = e.value;
  step.name = e.key;
  step.loc = e.key_loc;
  step.resources = defaults.resources;
  step.network = defaults.network;
  step.retries = defaults.retries;
  if (!IsMap(v)) return Expected(v, "a map describing the step (command, inputs, outputs, ...)");
  ASSIGN_OR_RETURN(std::vector<Entry> entries, Entries(v, {"command", "params", "inputs", "outputs", "role", "network",
                                                           "retries", "env", "resources", "after"}));
  // Params first: the command refers to them wherever it is written.
  const Entry* command = nullptr;
  for (const Entry& f : entries) {
    if (f.key == "command") command = &f;
    if (f.key != "params") continue;
    if (!IsMap(f.value)) return Expected(f.value, "a map of params (name: value)");
    ASSIGN_OR_RETURN(std::vector<Entry> params, Entries(f.value, {}));
    for (const Entry& p : params) {
      if (!IsParamName(p.key)) {
        return ErrorAt(p.key_loc, f.value.path,
                       fmt::format("expected a param name of [A-Za-z_][A-Za-z0-9_]{{0,63}}, got {}", Quote(p.key)));
      }
      ASSIGN_OR_RETURN(std::string value, GetScalar(p.value, "a single value (text, number or boolean)"));
      step.params.emplace_back(p.key, std::move(value));
    }
  }
  if (command == nullptr) {
    return ErrorAt(e.key_loc, v.path, "missing required key \"command\"");
  }

  for (const Entry& f : entries) {
    const Value& val = f.value;
    if (f.key == "command") {
      RETURN_IF_ERROR(ParseCommand(val, step));
    } else if (f.key == "inputs") {
      if (!IsMap(val)) return Expected(val, "a map of inputs (name: dataset:NAME@REF or step:STEP/OUTPUT)");
      ASSIGN_OR_RETURN(std::vector<Entry> inputs, Entries(val, {}));
      for (const Entry& in : inputs) {
        if (!IsValidName(in.key)) {
          return ErrorAt(
              in.key_loc, val.path,
              fmt::format("expected an input name of 1-64 [A-Za-z0-9_.-] (not . or ..), got {}", Quote(in.key)));
        }
        ASSIGN_OR_RETURN(std::string text, GetScalar(in.value, kInputRefForms));
        absl::StatusOr<InputRef> ref = ParseInputRef(text);
        if (!ref.ok()) return Error(in.value, std::string(ref.status().message()));
        step.inputs.push_back(StepInput{in.key, *std::move(ref), in.value.loc});
      }
    } else if (f.key == "outputs") {
      ASSIGN_OR_RETURN(auto outputs, GetNameList(val, "output"));
      for (auto& [name, value] : outputs) {
        // /cairn/out/_cairn holds the SDK's record file (pipeline/scheduler.cc).
        if (name == "_cairn") return Error(value, "output name \"_cairn\" is reserved for Cairn's own records");
        step.outputs.push_back(std::move(name));
      }
    } else if (f.key == "role") {
      constexpr std::string_view kExpected = "a role word of 1-64 [a-z0-9_-] (e.g. prepare, train, evaluate)";
      ASSIGN_OR_RETURN(step.role, GetScalar(val, kExpected));
      if (!IsRoleWord(step.role)) return Expected(val, kExpected);
    } else if (f.key == "network") {
      ASSIGN_OR_RETURN(step.network, GetBool(val));
    } else if (f.key == "retries") {
      ASSIGN_OR_RETURN(step.retries, GetInt(val, 0, kMaxRetries));
    } else if (f.key == "env") {
      if (!IsMap(val)) return Expected(val, "a map of environment variables (NAME: value)");
      ASSIGN_OR_RETURN(std::vector<Entry> vars, Entries(val, {}));
      for (const Entry& var : vars) {
        if (!IsIdentifier(var.key, 128)) {
          return ErrorAt(var.key_loc, val.path,
                         fmt::format("expected a variable name of [A-Za-z_][A-Za-z0-9_]*, got {}", Quote(var.key)));
        }
        if (IsReservedEnvName(var.key)) {
          return ErrorAt(var.key_loc, val.path,
                         fmt::format("expected a variable the sandbox does not set itself (not PATH, HOME, LANG or "
                                     "CAIRN_*), got {}",
                                     Quote(var.key)));
        }
        ASSIGN_OR_RETURN(std::string value, GetScalar(var.value, "a single value (text, number or boolean)"));
        step.env.emplace(var.key, std::move(value));
      }
    } else if (f.key == "resources") {
      RETURN_IF_ERROR(ParseResources(val, step.resources));
    } else if (f.key == "after") {
      ASSIGN_OR_RETURN(auto after, GetNameList(val, "step"));
      for (auto& [name, at] : after) {
        step.after.push_back(std::move(name));
        extras.after_locs.push_back(at.loc);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status SpecParser::CheckGraph(const PipelineSpec& spec, const std::vector<StepExtras>& extras) const {
  const std::optional<GraphProblem> problem = FindGraphProblem(spec);
  if (!problem) return absl::OkStatus();
  const StepSpec& step = spec.steps[problem->step];
  switch (problem->where) {
    case GraphProblem::Where::kInput: {
      const StepInput& in = step.inputs[problem->item];
      return ErrorAt(in.loc, fmt::format("steps.{}.inputs.{}", step.name, in.name), problem->what);
    }
    case GraphProblem::Where::kAfter:
      return ErrorAt(extras[problem->step].after_locs[problem->item],
                     fmt::format("steps.{}.after[{}]", step.name, problem->item), problem->what);
    case GraphProblem::Where::kCycle:
      break;
  }
  return ErrorAt(step.loc, "steps." + step.name, problem->what);
}

absl::StatusOr<PipelineSpec> SpecParser::Parse(int root) {
  const SourceLocation top{1, 1};
  constexpr std::string_view kExpectedRoot = "a map of pipeline settings with at least name: and steps:";
  const YamlNode empty;
  const YamlNode& root_node = root < 0 ? empty : nodes_[root];
  Value doc{&root_node, LocationOr(root_node, top), ""};
  if (!IsMap(doc)) return ErrorAt(doc.loc, "", fmt::format("expected {}, got {}", kExpectedRoot, Describe(root_node)));
  ASSIGN_OR_RETURN(std::vector<Entry> entries,
                   Entries(doc, {"name", "max_parallel", "environment", "defaults", "triggers", "steps"}));
  auto find = [&](std::string_view key) -> const Entry* {
    for (const Entry& e : entries) {
      if (e.key == key) return &e;
    }
    return nullptr;
  };

  PipelineSpec spec;
  const Entry* name = find("name");
  if (name == nullptr) return ErrorAt(doc.loc, "", "missing required key \"name\"");
  constexpr std::string_view kExpectedName = "a pipeline name of 1-64 [A-Za-z0-9_.-] (not . or ..)";
  ASSIGN_OR_RETURN(spec.name, GetScalar(name->value, kExpectedName));
  if (!IsValidName(spec.name)) return Expected(name->value, kExpectedName);

  if (const Entry* e = find("max_parallel")) {
    ASSIGN_OR_RETURN(spec.max_parallel, GetInt(e->value, 1, kMaxParallel));
  }
  if (const Entry* e = find("environment")) {
    constexpr std::string_view kExpected = "an absolute path of an environment folder";
    ASSIGN_OR_RETURN(spec.environment, GetScalar(e->value, kExpected));
    if (!spec.environment.starts_with('/')) return Expected(e->value, kExpected);
  }
  if (const Entry* e = find("triggers")) RETURN_IF_ERROR(ParseTriggers(e->value, spec.triggers));
  StepDefaults defaults;
  if (const Entry* e = find("defaults")) RETURN_IF_ERROR(ParseDefaults(e->value, defaults));

  const Entry* steps = find("steps");
  if (steps == nullptr) return ErrorAt(doc.loc, "", "missing required key \"steps\"");
  constexpr std::string_view kExpectedSteps = "a map of steps (name: {command: ...}) with at least one step";
  if (!IsMap(steps->value) || steps->value.node->children.empty()) return Expected(steps->value, kExpectedSteps);
  if (const size_t count = steps->value.node->children.size() / 2; count > kMaxSteps) {
    return Error(steps->value, fmt::format("expected at most {} steps, got {}", kMaxSteps, count));
  }
  ASSIGN_OR_RETURN(std::vector<Entry> step_entries, Entries(steps->value, {}));
  spec.steps.resize(step_entries.size());
  std::vector<StepExtras> extras(step_entries.size());
  for (size_t i = 0; i < step_entries.size(); ++i) {
    const Entry& e = step_entries[i];
    if (!IsValidName(e.key)) {
      return ErrorAt(e.key_loc, "steps",
                     fmt::format("expected a step name of 1-64 [A-Za-z0-9_.-] (not . or ..), got {}", Quote(e.key)));
    }
    RETURN_IF_ERROR(ParseStep(e, defaults, spec.steps[i], extras[i]));
  }
  RETURN_IF_ERROR(CheckGraph(spec, extras));
  return spec;
}

Json ResourcesToJson(const exec::Resources& r) {
  Json j = Json::object();
  j["cpus"] = r.cpus;
  j["memory_bytes"] = r.memory_bytes;
  j["gpus"] = r.gpus;
  j["timeout_s"] = absl::ToInt64Seconds(r.wall_timeout);
  j["cpu_time_s"] = absl::ToInt64Seconds(r.cpu_time);
  j["max_processes"] = r.max_processes;
  j["max_output_bytes"] = r.max_output_bytes;
  return j;
}

}  // namespace

std::string InputRef::ToString() const {
  if (kind == Kind::kStep) return fmt::format("step:{}/{}", step, output);
  std::string out = fmt::format("dataset:{}@{}", dataset, ref.empty() ? kDefaultRef : std::string_view(ref));
  if (!split.empty()) out += "#" + split;
  return out;
}

const StepSpec* PipelineSpec::FindStep(std::string_view name) const {
  for (const StepSpec& s : steps) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

absl::StatusOr<InputRef> ParseInputRef(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(fmt::format("expected {}, got {}{}", kInputRefForms, Quote(text), why));
  };
  InputRef r;
  if (text.starts_with("dataset:")) {
    r.kind = InputRef::Kind::kDataset;
    std::string_view rest = text.substr(8);
    if (size_t hash = rest.find('#'); hash != std::string_view::npos) {
      r.split = std::string(rest.substr(hash + 1));
      rest = rest.substr(0, hash);
      if (!IsValidName(r.split)) return bad(" (a split name is 1-64 [A-Za-z0-9_.-])");
    }
    if (size_t at = rest.find('@'); at != std::string_view::npos) {
      r.ref = std::string(rest.substr(at + 1));
      rest = rest.substr(0, at);
      if (!IsDataName(r.ref)) {
        return bad(" (a ref is a branch, tag or commit id: 1-128 [A-Za-z0-9_.-], not starting with . or -)");
      }
    } else {
      r.ref = std::string(kDefaultRef);
    }
    r.dataset = std::string(rest);
    if (!IsDataName(r.dataset)) {
      return bad(" (a dataset name is 1-128 [A-Za-z0-9_.-], not starting with . or -)");
    }
    return r;
  }
  if (text.starts_with("step:")) {
    r.kind = InputRef::Kind::kStep;
    const std::string_view rest = text.substr(5);
    const size_t slash = rest.find('/');
    if (slash == std::string_view::npos) return bad("");
    r.step = std::string(rest.substr(0, slash));
    r.output = std::string(rest.substr(slash + 1));
    if (!IsValidName(r.step) || !IsValidName(r.output)) {
      return bad(" (step and output names are 1-64 [A-Za-z0-9_.-])");
    }
    return r;
  }
  return bad("");
}

absl::StatusOr<uint64_t> ParseByteSize(std::string_view text) {
  auto bad = [&] {
    return absl::InvalidArgumentError(
        fmt::format("expected a size like 512MiB, 2GiB or 1073741824, got {}", Quote(text)));
  };
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  uint64_t n = 0;
  if (!ParseUint(text.substr(0, digits), n)) return bad();
  std::string_view unit = text.substr(digits);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  struct Unit {
    std::string_view name;
    uint64_t factor;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},
      {"b", 1},
      {"k", 1ull << 10},
      {"kib", 1ull << 10},
      {"kb", 1000ull},
      {"m", 1ull << 20},
      {"mib", 1ull << 20},
      {"mb", 1000ull * 1000},
      {"g", 1ull << 30},
      {"gib", 1ull << 30},
      {"gb", 1000ull * 1000 * 1000},
      {"t", 1ull << 40},
      {"tib", 1ull << 40},
      {"tb", 1000ull * 1000 * 1000 * 1000},
  };
  const std::string lower = Lower(unit);
  for (const Unit& u : kUnits) {
    if (lower != u.name) continue;
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(n, u.factor, &bytes)) return bad();
    return bytes;
  }
  return bad();
}

absl::StatusOr<absl::Duration> ParseSpecDuration(std::string_view text) {
  auto bad = [&] {
    return absl::InvalidArgumentError(
        fmt::format("expected a duration like 90s, 10m or 1h30m (at most 366d), got {}", Quote(text)));
  };
  if (text.empty()) return bad();
  absl::Duration total = absl::ZeroDuration();
  int last_rank = 4;  // units must come in the order d, h, m, s, each once
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    uint64_t n = 0;
    if (i - start > 9 || !ParseUint(text.substr(start, i - start), n) || i >= text.size()) return bad();
    int rank = 0;
    absl::Duration unit;
    switch (text[i]) {
      case 'd':
        rank = 3, unit = absl::Hours(24);
        break;
      case 'h':
        rank = 2, unit = absl::Hours(1);
        break;
      case 'm':
        rank = 1, unit = absl::Minutes(1);
        break;
      case 's':
        rank = 0, unit = absl::Seconds(1);
        break;
      default:
        return bad();
    }
    if (rank >= last_rank) return bad();
    last_rank = rank;
    total += unit * static_cast<int64_t>(n);
    ++i;
  }
  if (total > kMaxDuration) return bad();
  return total;
}

absl::StatusOr<PipelineSpec> ParsePipelineSpec(std::string_view yaml_text, std::string_view file_name) {
  if (yaml_text.size() > kMaxSpecBytes) {
    return absl::InvalidArgumentError(fmt::format("{}:1:1: the spec is {} bytes, more than the limit of {} bytes",
                                                  file_name, yaml_text.size(), kMaxSpecBytes));
  }
  // Nothing yaml-cpp throws leaves this function.
  try {
    std::vector<YamlNode> nodes;
    YamlTreeBuilder builder(nodes);
    std::istringstream in{std::string(yaml_text)};
    YAML::Parser yaml(in);
    try {
      if (yaml.HandleNextDocument(builder)) yaml.HandleNextDocument(builder);
    } catch (const SecondDocument& second) {
      return absl::InvalidArgumentError(fmt::format("{}:{}:{}: expected one YAML document, got a second one", file_name,
                                                    std::max(second.loc.line, 1), std::max(second.loc.column, 1)));
    }
    SpecParser parser(file_name, nodes);
    return parser.Parse(builder.root());
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp 0.7 gives this one the message "bad file".
    return absl::InvalidArgumentError(fmt::format("{}:{}:{}: invalid YAML: nested deeper than {} levels", file_name,
                                                  std::max(e.mark.line, 0) + 1, std::max(e.mark.column, 0) + 1,
                                                  e.depth()));
  } catch (const YAML::Exception& e) {
    // yaml-cpp quotes the offending bytes as they are.
    return absl::InvalidArgumentError(fmt::format("{}:{}:{}: invalid YAML: {}", file_name, std::max(e.mark.line, 0) + 1,
                                                  std::max(e.mark.column, 0) + 1,
                                                  Escape(e.msg, 200, /*quoted=*/false)));
  } catch (const std::exception& e) {
    return absl::InternalError(fmt::format("{}: reading the spec failed: {}", file_name, e.what()));
  }
}

absl::Status ApplyParamOverrides(PipelineSpec& spec, const std::vector<std::string>& overrides) {
  PipelineSpec out = spec;  // all or nothing
  std::vector<bool> changed(out.steps.size(), false);
  auto set_in = [&](size_t step, std::string_view param, std::string_view value) {
    for (auto& [k, v] : out.steps[step].params) {
      if (k != param) continue;
      v = std::string(value);
      changed[step] = true;
      return true;
    }
    return false;
  };
  for (const std::string& o : overrides) {
    auto bad = [&](std::string_view why) {
      return absl::InvalidArgumentError(fmt::format("param override {}: {}", Quote(o), why));
    };
    const size_t eq = o.find('=');
    if (eq == std::string::npos) return bad("expected NAME=VALUE or STEP.NAME=VALUE");
    const std::string_view key = std::string_view(o).substr(0, eq);
    const std::string_view value = std::string_view(o).substr(eq + 1);
    if (HasNul(value)) return bad("a value may not contain a NUL byte");
    if (!IsValidUtf8(value)) return bad("a value must be UTF-8 text");
    const size_t dot = key.rfind('.');
    const std::string_view param = dot == std::string_view::npos ? key : key.substr(dot + 1);
    if (!IsParamName(param)) {
      return bad(fmt::format(
          "expected NAME=VALUE or STEP.NAME=VALUE with NAME of [A-Za-z_][A-Za-z0-9_]{{0,63}}, got {}", Quote(param)));
    }
    if (dot == std::string_view::npos) {
      bool any = false;
      for (size_t i = 0; i < out.steps.size(); ++i) any |= set_in(i, param, value);
      if (!any) return bad(fmt::format("no step has a param {}", Quote(param)));
      continue;
    }
    const std::string_view step = key.substr(0, dot);
    size_t i = 0;
    while (i < out.steps.size() && out.steps[i].name != step) ++i;
    if (i == out.steps.size()) return bad(fmt::format("no step named {}", Quote(step)));
    if (!set_in(i, param, value)) return bad(fmt::format("step {} has no param {}", Quote(step), Quote(param)));
  }
  for (size_t i = 0; i < out.steps.size(); ++i) {
    if (!changed[i]) continue;
    absl::Status s = ExpandCommand(out.steps[i]);
    if (!s.ok()) return absl::InvalidArgumentError(fmt::format("steps.{}.command: {}", out.steps[i].name, s.message()));
  }
  spec = std::move(out);
  return absl::OkStatus();
}

std::vector<std::string> Dependencies(const StepSpec& step) {
  std::vector<std::string> out;
  absl::flat_hash_set<std::string_view> seen;
  auto add = [&](const std::string& name) {
    if (seen.insert(name).second) out.push_back(name);
  };
  for (const StepInput& in : step.inputs) {
    if (in.ref.kind == InputRef::Kind::kStep) add(in.ref.step);
  }
  for (const std::string& a : step.after) add(a);
  return out;
}

namespace {

// TopologicalOrder as positions in spec.steps.
std::vector<int> OrderOf(const StepGraph& g) {
  std::vector<bool> done;
  std::vector<int> order = KahnOrder(g, done);
  for (size_t i = 0; i < done.size(); ++i) {
    if (!done[i]) order.push_back(static_cast<int>(i));
  }
  return order;
}

}  // namespace

std::vector<std::string> TopologicalOrder(const PipelineSpec& spec) {
  const std::vector<int> order = OrderOf(BuildGraph(spec));
  std::vector<std::string> names;
  names.reserve(order.size());
  for (int i : order) names.push_back(spec.steps[i].name);
  return names;
}

std::vector<std::string> StepWithAncestors(const PipelineSpec& spec, std::string_view step) {
  const StepGraph g = BuildGraph(spec);
  int target = -1;
  for (size_t i = 0; i < spec.steps.size() && target < 0; ++i) {
    if (spec.steps[i].name == step) target = static_cast<int>(i);
  }
  if (target < 0) return {};
  std::vector<bool> needed(spec.steps.size(), false);
  std::vector<int> stack = {target};
  needed[target] = true;
  while (!stack.empty()) {
    const int i = stack.back();
    stack.pop_back();
    for (int d : g.deps[i]) {
      if (!needed[d]) {
        needed[d] = true;
        stack.push_back(d);
      }
    }
  }
  std::vector<std::string> out;
  for (int i : OrderOf(g)) {
    if (needed[i]) out.push_back(spec.steps[i].name);
  }
  return out;
}

Json StepToJson(const StepSpec& step) {
  Json j = Json::object();
  j["name"] = step.name;
  j["argv"] = step.argv;
  j["shell"] = step.shell;
  j["command_template"] = step.command_template;
  Json params = Json::object();
  for (const auto& [k, v] : step.params) params[k] = v;
  j["params"] = std::move(params);
  Json inputs = Json::object();
  for (const StepInput& in : step.inputs) inputs[in.name] = in.ref.ToString();
  j["inputs"] = std::move(inputs);
  j["outputs"] = step.outputs;
  j["role"] = step.role;
  j["network"] = step.network;
  j["retries"] = step.retries;
  Json env = Json::object();
  for (const auto& [k, v] : step.env) env[k] = v;
  j["env"] = std::move(env);
  j["resources"] = ResourcesToJson(step.resources);
  j["after"] = step.after;
  return j;
}

Json PipelineToJson(const PipelineSpec& spec) {
  Json j = Json::object();
  j["name"] = spec.name;
  j["max_parallel"] = spec.max_parallel;
  j["environment"] = spec.environment;
  j["triggers"] =
      Json{{"datasets", spec.triggers.datasets}, {"cron", spec.triggers.cron}, {"webhook", spec.triggers.webhook}};
  Json steps = Json::array();
  for (const StepSpec& s : spec.steps) steps.push_back(StepToJson(s));
  j["steps"] = std::move(steps);
  return j;
}

namespace {

// Typed field access for the *FromJson readers; every message names the
// field by its dotted path.
absl::Status JsonError(std::string_view path, std::string_view what) {
  return absl::InvalidArgumentError(fmt::format("{}: {}", path, what));
}

template <typename IsType>
absl::StatusOr<const Json*> JsonField(const Json& obj, std::string_view path, std::string_view key, IsType is_type,
                                      std::string_view type) {
  const std::string field = ChildPath(path, key);
  auto it = obj.find(key);
  if (it == obj.end()) return JsonError(field, "missing");
  if (!is_type(*it)) return JsonError(field, fmt::format("expected {}, got {}", type, it->type_name()));
  return &*it;
}

absl::StatusOr<std::string> JsonString(const Json& obj, std::string_view path, std::string_view key) {
  ASSIGN_OR_RETURN(const Json* v, JsonField(
                                      obj, path, key, [](const Json& j) { return j.is_string(); }, "a string"));
  return v->get<std::string>();
}

absl::StatusOr<bool> JsonBool(const Json& obj, std::string_view path, std::string_view key) {
  ASSIGN_OR_RETURN(const Json* v, JsonField(
                                      obj, path, key, [](const Json& j) { return j.is_boolean(); }, "a boolean"));
  return v->get<bool>();
}

absl::StatusOr<uint64_t> JsonUint(const Json& obj, std::string_view path, std::string_view key, uint64_t min,
                                  uint64_t max) {
  ASSIGN_OR_RETURN(const Json* v,
                   JsonField(
                       obj, path, key, [](const Json& j) { return j.is_number_integer(); }, "an integer"));
  const bool negative = !v->is_number_unsigned() && v->get<int64_t>() < 0;
  const uint64_t u = negative ? 0 : v->get<uint64_t>();
  if (negative || u < min || u > max) {
    return JsonError(ChildPath(path, key),
                     fmt::format("expected an integer from {} to {}, got {}", min, max, v->dump()));
  }
  return u;
}

absl::StatusOr<int> JsonInt(const Json& obj, std::string_view path, std::string_view key, int min, int max) {
  ASSIGN_OR_RETURN(uint64_t u, JsonUint(obj, path, key, static_cast<uint64_t>(min), static_cast<uint64_t>(max)));
  return static_cast<int>(u);
}

absl::StatusOr<std::vector<std::string>> JsonStrings(const Json& obj, std::string_view path, std::string_view key) {
  ASSIGN_OR_RETURN(const Json* v, JsonField(
                                      obj, path, key, [](const Json& j) { return j.is_array(); }, "an array"));
  std::vector<std::string> out;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) {
      return JsonError(fmt::format("{}[{}]", ChildPath(path, key), i),
                       fmt::format("expected a string, got {}", (*v)[i].type_name()));
    }
    out.push_back((*v)[i].get<std::string>());
  }
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> JsonStringMap(const Json& obj, std::string_view path,
                                                                               std::string_view key) {
  ASSIGN_OR_RETURN(const Json* v, JsonField(
                                      obj, path, key, [](const Json& j) { return j.is_object(); }, "an object"));
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [k, value] : v->items()) {
    if (!value.is_string()) {
      return JsonError(ChildPath(ChildPath(path, key), k), fmt::format("expected a string, got {}", value.type_name()));
    }
    out.emplace_back(k, value.get<std::string>());
  }
  return out;
}

absl::Status CheckNames(const std::vector<std::string>& names, std::string_view path) {
  absl::flat_hash_set<std::string_view> seen;
  for (const std::string& n : names) {
    if (!IsValidName(n)) return JsonError(path, fmt::format("expected names of 1-64 [A-Za-z0-9_.-], got {}", Quote(n)));
    if (!seen.insert(n).second) return JsonError(path, fmt::format("{} is listed twice", Quote(n)));
  }
  return absl::OkStatus();
}

absl::StatusOr<exec::Resources> ResourcesFromJson(const Json& obj, std::string_view path) {
  if (!obj.is_object()) return JsonError(path, fmt::format("expected an object, got {}", obj.type_name()));
  const auto max_seconds = static_cast<uint64_t>(absl::ToInt64Seconds(kMaxDuration));
  exec::Resources r;
  ASSIGN_OR_RETURN(r.cpus, JsonInt(obj, path, "cpus", 1, kMaxCpus));
  ASSIGN_OR_RETURN(r.memory_bytes, JsonUint(obj, path, "memory_bytes", 0, UINT64_MAX));
  ASSIGN_OR_RETURN(r.gpus, JsonInt(obj, path, "gpus", 0, kMaxGpus));
  ASSIGN_OR_RETURN(uint64_t timeout_s, JsonUint(obj, path, "timeout_s", 1, max_seconds));
  ASSIGN_OR_RETURN(uint64_t cpu_time_s, JsonUint(obj, path, "cpu_time_s", 0, max_seconds));
  ASSIGN_OR_RETURN(r.max_processes, JsonInt(obj, path, "max_processes", 1, kMaxProcesses));
  ASSIGN_OR_RETURN(r.max_output_bytes, JsonUint(obj, path, "max_output_bytes", 1, UINT64_MAX));
  r.wall_timeout = absl::Seconds(static_cast<int64_t>(timeout_s));
  r.cpu_time = absl::Seconds(static_cast<int64_t>(cpu_time_s));
  return r;
}

}  // namespace

absl::StatusOr<StepSpec> StepFromJson(const Json& json) {
  if (!json.is_object()) return JsonError("step", fmt::format("expected an object, got {}", json.type_name()));
  StepSpec s;
  ASSIGN_OR_RETURN(s.name, JsonString(json, "step", "name"));
  if (!IsValidName(s.name)) return JsonError("step.name", fmt::format("expected a step name, got {}", Quote(s.name)));
  const std::string path = "steps." + s.name;
  ASSIGN_OR_RETURN(s.argv, JsonStrings(json, path, "argv"));
  ASSIGN_OR_RETURN(s.shell, JsonBool(json, path, "shell"));
  ASSIGN_OR_RETURN(s.command_template, JsonStrings(json, path, "command_template"));
  ASSIGN_OR_RETURN(s.params, JsonStringMap(json, path, "params"));
  for (const auto& [k, v] : s.params) {
    if (!IsParamName(k)) return JsonError(path + ".params", fmt::format("expected param names, got {}", Quote(k)));
  }
  ASSIGN_OR_RETURN(auto inputs, JsonStringMap(json, path, "inputs"));
  for (auto& [name, text] : inputs) {
    const std::string input_path = fmt::format("{}.inputs.{}", path, name);
    if (!IsValidName(name))
      return JsonError(path + ".inputs", fmt::format("expected input names, got {}", Quote(name)));
    absl::StatusOr<InputRef> ref = ParseInputRef(text);
    if (!ref.ok()) return JsonError(input_path, std::string(ref.status().message()));
    s.inputs.push_back(StepInput{name, *std::move(ref), {}});
  }
  ASSIGN_OR_RETURN(s.outputs, JsonStrings(json, path, "outputs"));
  RETURN_IF_ERROR(CheckNames(s.outputs, path + ".outputs"));
  ASSIGN_OR_RETURN(s.role, JsonString(json, path, "role"));
  if (!s.role.empty() && !IsRoleWord(s.role)) {
    return JsonError(path + ".role", fmt::format("expected a role word of [a-z0-9_-], got {}", Quote(s.role)));
  }
  ASSIGN_OR_RETURN(s.network, JsonBool(json, path, "network"));
  ASSIGN_OR_RETURN(s.retries, JsonInt(json, path, "retries", 0, kMaxRetries));
  ASSIGN_OR_RETURN(auto env, JsonStringMap(json, path, "env"));
  for (auto& [k, v] : env) {
    if (!IsIdentifier(k, 128) || IsReservedEnvName(k) || HasNul(v)) {
      return JsonError(path + ".env", fmt::format("expected allowed variable names and values, got {}", Quote(k)));
    }
    s.env.emplace(std::move(k), std::move(v));
  }
  auto resources = json.find("resources");
  if (resources == json.end()) return JsonError(path + ".resources", "missing");
  ASSIGN_OR_RETURN(s.resources, ResourcesFromJson(*resources, path + ".resources"));
  ASSIGN_OR_RETURN(s.after, JsonStrings(json, path, "after"));
  RETURN_IF_ERROR(CheckNames(s.after, path + ".after"));

  // argv must be what the template and params give: nothing else could
  // have produced it.
  StepSpec expanded = s;
  if (absl::Status st = ExpandCommand(expanded); !st.ok())
    return JsonError(path + ".command_template", std::string(st.message()));
  if (expanded.argv != s.argv) return JsonError(path + ".argv", "is not the expansion of command_template and params");
  return s;
}

absl::StatusOr<PipelineSpec> PipelineFromJson(const Json& json) {
  if (!json.is_object()) return JsonError("pipeline", fmt::format("expected an object, got {}", json.type_name()));
  PipelineSpec spec;
  ASSIGN_OR_RETURN(spec.name, JsonString(json, "", "name"));
  if (!IsValidName(spec.name))
    return JsonError("name", fmt::format("expected a pipeline name, got {}", Quote(spec.name)));
  ASSIGN_OR_RETURN(spec.max_parallel, JsonInt(json, "", "max_parallel", 1, kMaxParallel));
  ASSIGN_OR_RETURN(spec.environment, JsonString(json, "", "environment"));
  if (!spec.environment.empty() && (!spec.environment.starts_with('/') || HasNul(spec.environment))) {
    return JsonError("environment", fmt::format("expected an absolute path, got {}", Quote(spec.environment)));
  }
  ASSIGN_OR_RETURN(const Json* triggers,
                   JsonField(
                       json, "", "triggers", [](const Json& j) { return j.is_object(); }, "an object"));
  ASSIGN_OR_RETURN(spec.triggers.datasets, JsonBool(*triggers, "triggers", "datasets"));
  ASSIGN_OR_RETURN(spec.triggers.cron, JsonString(*triggers, "triggers", "cron"));
  ASSIGN_OR_RETURN(spec.triggers.webhook, JsonBool(*triggers, "triggers", "webhook"));
  if (!spec.triggers.cron.empty()) {
    if (absl::StatusOr<CronSchedule> c = CronSchedule::Parse(spec.triggers.cron); !c.ok()) {
      return JsonError("triggers.cron", std::string(c.status().message()));
    }
  }
  ASSIGN_OR_RETURN(const Json* steps, JsonField(
                                          json, "", "steps", [](const Json& j) { return j.is_array(); }, "an array"));
  if (steps->empty() || steps->size() > kMaxSteps) {
    return JsonError("steps", fmt::format("expected 1 to {} steps, got {}", kMaxSteps, steps->size()));
  }
  absl::flat_hash_set<std::string> names;
  for (const Json& step : *steps) {
    ASSIGN_OR_RETURN(StepSpec s, StepFromJson(step));
    if (!names.insert(s.name).second) return JsonError("steps", fmt::format("two steps are named {}", Quote(s.name)));
    spec.steps.push_back(std::move(s));
  }
  if (std::optional<GraphProblem> problem = FindGraphProblem(spec)) {
    return JsonError("steps." + spec.steps[problem->step].name, problem->what);
  }
  return spec;
}

}  // namespace cairn::pipeline
