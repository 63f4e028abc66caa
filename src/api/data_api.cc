#include "api/data_api.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <memory>

#include "api/errors.h"
#include "api/registry_api.h"
#include "base/json.h"
#include "data/gc.h"
#include "pipeline/pipeline_store.h"
#include "pipeline/work_dir_gc.h"
#include "data/glob.h"

namespace cairn::api {
namespace {

using http::Method;
using http::Request;
using http::Response;

constexpr char kPrefix[] = "/api/cairn/v1/datasets";
constexpr int kMaxLogLimit = 10000;
constexpr size_t kMaxMissingQuery = 1'000'000;

absl::Status BadRequest(std::string message) { return absl::InvalidArgumentError(std::move(message)); }

std::string ProjectOf(const Request& req) { return req.Query("project").value_or(data::kDefaultProject); }

Json DatasetJson(const data::Dataset& ds) {
  return {{"id", ds.id},
          {"name", ds.name},
          {"project", ds.project},
          {"description", ds.description},
          {"encrypted", ds.encrypted},
          {"created_at", ds.created_at_ms}};
}


Json RefJson(const data::Ref& r) {
  return {{"kind", r.kind}, {"name", r.name}, {"commit", r.commit_id}, {"updated_at", r.updated_at_ms}};
}

absl::StatusOr<std::vector<std::string>> StringArray(const Json& body, std::string_view field) {
  ASSIGN_OR_RETURN(std::vector<Json> items, GetOptionalArray(body, field));
  std::vector<std::string> out;
  for (const Json& j : items) {
    if (!j.is_string()) return BadRequest(fmt::format("'{}' must be an array of strings", field));
    out.push_back(j.get<std::string>());
  }
  return out;
}

absl::StatusOr<std::vector<data::Split>> ParseSplits(const Json& body) {
  ASSIGN_OR_RETURN(std::vector<Json> items, GetOptionalArray(body, "splits"));
  std::vector<data::Split> out;
  for (const Json& j : items) {
    if (!j.is_object()) return BadRequest("each split must be an object {\"name\", \"globs\", \"sealed\"}");
    data::Split s;
    ASSIGN_OR_RETURN(s.name, GetString(j, "name"));
    ASSIGN_OR_RETURN(s.globs, StringArray(j, "globs"));
    ASSIGN_OR_RETURN(std::optional<bool> sealed, GetOptionalBool(j, "sealed"));
    s.sealed = sealed.value_or(false);
    out.push_back(std::move(s));
  }
  return out;
}

constexpr uint64_t kMaxJsonBody = 256ull << 20;

absl::Status ReadWholeBody(Request& req) {
  std::string buf(1 << 20, '\0');
  for (;;) {
    ASSIGN_OR_RETURN(size_t n, req.body_stream->Read(buf.data(), buf.size()));
    if (n == 0) break;
    if (req.body.size() + n > kMaxJsonBody) {
      return BadRequest(fmt::format("request body is over {} MiB", kMaxJsonBody >> 20));
    }
    req.body.append(buf.data(), n);
  }
  req.body_stream = nullptr;
  return absl::OkStatus();
}

// Splits "a/b/c" into its first segment and the rest.
std::pair<std::string, std::string> FirstSegment(std::string_view path) {
  size_t slash = path.find('/');
  if (slash == std::string_view::npos) return {std::string(path), ""};
  return {std::string(path.substr(0, slash)), std::string(path.substr(slash + 1))};
}

// Streams [begin, end) of a dataset file, one verified chunk at a time.
class FileStream {
 public:
  FileStream(data::ChunkStore& chunks, data::ChunkScope scope, data::ManifestFile file, uint64_t begin, uint64_t end)
      : chunks_(chunks), scope_(std::move(scope)), file_(std::move(file)), pos_(begin), end_(end) {}

  absl::StatusOr<size_t> Read(char* scratch, size_t n) {
    if (pos_ >= end_) return size_t{0};
    if (pos_ < buffer_start_ || pos_ >= buffer_start_ + buffer_.size()) {
      // Find the chunk holding pos_.
      uint64_t start = 0;
      for (const data::ChunkRef& c : file_.chunks) {
        if (pos_ < start + c.size) {
          ASSIGN_OR_RETURN(buffer_, chunks_.Read(scope_, c.digest));
          buffer_start_ = start;
          break;
        }
        start += c.size;
      }
      if (pos_ < buffer_start_ || pos_ >= buffer_start_ + buffer_.size()) {
        return absl::DataLossError(fmt::format("'{}' is shorter than its manifest says", file_.path));
      }
    }
    const size_t avail = static_cast<size_t>(std::min<uint64_t>(buffer_start_ + buffer_.size(), end_) - pos_);
    const size_t take = std::min(n, avail);
    std::memcpy(scratch, buffer_.data() + (pos_ - buffer_start_), take);
    pos_ += take;
    return take;
  }

 private:
  data::ChunkStore& chunks_;
  const data::ChunkScope scope_;
  const data::ManifestFile file_;
  uint64_t pos_;
  const uint64_t end_;
  std::string buffer_;
  uint64_t buffer_start_ = 0;
};

class DataApi {
 public:
  explicit DataApi(DataDirectory& dir) : dir_(dir), datasets_(dir.datasets()) {}

  Response List(Request& req) {
    auto list = datasets_.ListDatasets(ProjectOf(req));
    if (!list.ok()) return ErrorResponse(list.status());
    Json out = Json::array();
    for (const data::Dataset& ds : *list) {
      Json j = DatasetJson(ds);
      auto head = datasets_.Head(ds, data::kDefaultBranch);
      if (head.ok() && head->has_value()) {
        j["head"] = (*head)->id;
        j["file_count"] = (*head)->file_count;
        j["total_bytes"] = (*head)->total_bytes;
      }
      out.push_back(std::move(j));
    }
    return Response::JsonBody(200, {{"datasets", std::move(out)}});
  }

  Response Create(Request& req) {
    return Handle([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(Json body, ParseJson(req.body));
      ASSIGN_OR_RETURN(std::string name, GetString(body, "name"));
      ASSIGN_OR_RETURN(std::optional<std::string> description, GetOptionalString(body, "description"));
      ASSIGN_OR_RETURN(std::optional<bool> encrypted, GetOptionalBool(body, "encrypted"));
      ASSIGN_OR_RETURN(std::optional<std::string> project, GetOptionalString(body, "project"));
      ASSIGN_OR_RETURN(data::Dataset ds,
                       datasets_.CreateDataset(project.value_or(data::kDefaultProject), name,
                                               description.value_or(""), encrypted.value_or(false)));
      return Json{{"dataset", DatasetJson(ds)}};
    });
  }

  // Everything below /api/cairn/v1/datasets/NAME/...
  Response Dispatch(Request& req) {
    auto [name, rest] = FirstSegment(req.path_rest);
    auto ds = datasets_.GetDataset(ProjectOf(req), name);
    if (!ds.ok()) return ErrorResponse(ds.status());
    auto [what, tail] = FirstSegment(rest);
    const Method m = req.method;
    const bool upload = what == "chunks" && tail.empty() && m == Method::kPost;
    if (req.body_stream != nullptr && !upload) {
      // POST routes stream (for uploads); everything else wants its body whole.
      if (absl::Status s = ReadWholeBody(req); !s.ok()) return ErrorResponse(s);
    }
    if (what.empty() && m == Method::kGet) return Show(*ds);
    if (what == "chunks" && tail == "missing" && m == Method::kPost) return Missing(req, *ds);
    if (upload) return Upload(req, *ds);
    if (what == "commits" && tail.empty() && m == Method::kPost) return Commit(req, *ds);
    if (what == "commits" && tail.empty() && m == Method::kGet) return Log(req, *ds);
    if (what == "commits" && !tail.empty() && m == Method::kGet) return ShowCommit(*ds, tail);
    if (what == "diff" && m == Method::kGet) return Diff(req, *ds);
    if (what == "tree" && m == Method::kGet) return Tree(req, *ds, tail);
    if (what == "manifest" && m == Method::kGet) return Manifest(*ds, tail);
    if (what == "files" && (m == Method::kGet || m == Method::kHead)) return File(req, *ds, tail);
    if (what == "refs" && tail.empty() && m == Method::kGet) return Refs(*ds);
    if (what == "refs" && tail.empty() && m == Method::kPost) return CreateRef(req, *ds);
    if (what == "refs" && m == Method::kDelete) return DeleteRef(*ds, tail);
    return ErrorResponse(absl::NotFoundError(
        fmt::format("no dataset endpoint {} {}", http::MethodName(m), req.path)));
  }

  Response CommitById(Request& req) {
    return Handle([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(data::DatasetCommit c, datasets_.GetCommit(req.path_rest));
      ASSIGN_OR_RETURN(data::Dataset ds, datasets_.GetDatasetById(c.dataset_id));
      return ShowCommitJson(ds, c);
    });
  }

  Response RotateKeys() {
    return Handle([&]() -> absl::StatusOr<Json> {
      store::KeyRing& keys = dir_.keys();
      const std::vector<int> before = keys.numbers();
      ASSIGN_OR_RETURN(int current, keys.Rotate());
      ASSIGN_OR_RETURN(int rewrapped, datasets_.RewrapKeys(keys));
      Json retired = Json::array();
      for (int n : before) {
        RETURN_IF_ERROR(keys.Retire(n));
        retired.push_back(n);
      }
      return Json{{"current", current}, {"rewrapped", rewrapped}, {"retired", std::move(retired)}};
    });
  }

  Response Gc(Request& req) {
    return Handle([&]() -> absl::StatusOr<Json> {
      Json body = Json::object();
      if (!req.body.empty()) {
        ASSIGN_OR_RETURN(body, ParseJson(req.body));
      }
      ASSIGN_OR_RETURN(std::optional<int64_t> grace, GetOptionalInt(body, "grace_seconds"));
      ASSIGN_OR_RETURN(std::optional<bool> dry_run, GetOptionalBool(body, "dry_run"));
      data::GcOptions options;
      if (grace) options.grace_ms = *grace * 1000;
      options.dry_run = dry_run.value_or(false);
      options.extra_roots = [this](const std::function<void(const Digest&)>& add) -> absl::Status {
        RETURN_IF_ERROR(dir_.tracking().ForEachArtifactDigest(
            [&](const std::string& path, const tracking::ArtifactFile& file) -> absl::Status {
              auto d = Digest::FromHex(file.digest);
              if (!d.ok()) return absl::DataLossError(fmt::format("artifact {} has a malformed digest", path));
              add(*d);
              return absl::OkStatus();
            }));
        // Registered model versions keep their manifest and files, even if the run's artifacts go.
        return ForEachModelVersionObject(dir_, add);
      };
      ASSIGN_OR_RETURN(data::GcReport r, data::CollectGarbage(datasets_, dir_.objects(), dir_.env(), options));
      // Pipelines' scratch: materialised inputs, code snapshots, job folders.
      ASSIGN_OR_RETURN(auto pipelines, pipeline::PipelineStore::Create(dir_.database(), dir_.env()));
      ASSIGN_OR_RETURN(pipeline::WorkDirReport w,
                       pipeline::CleanWorkDir(*pipelines, dir_.work_path(), dir_.env().NowMicros() / 1000,
                                              options.grace_ms, options.dry_run));
      return Json{{"dry_run", options.dry_run},
                  {"work_dirs_removed", w.removed_dirs},
                  {"work_bytes_freed", w.freed_bytes},
                  {"grace_seconds", options.grace_ms / 1000},
                  {"commits", r.commits},
                  {"live_chunks", r.live_chunks},
                  {"freed_chunks", r.freed_chunks},
                  {"objects", r.objects},
                  {"freed_objects", r.freed_objects},
                  {"freed_bytes", r.freed_bytes},
                  {"young_objects", r.young_objects},
                  {"dead_bytes_in_live_packs", r.dead_bytes_in_live_packs}};
    });
  }

 private:
  Response Handle(const std::function<absl::StatusOr<Json>()>& fn) { return JsonOrError(fn()); }

  Response Show(const data::Dataset& ds) {
    return Handle([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(std::vector<data::Ref> refs, datasets_.ListRefs(ds));
      Json out = {{"dataset", DatasetJson(ds)}, {"refs", Json::array()}};
      for (const data::Ref& r : refs) out["refs"].push_back(RefJson(r));
      ASSIGN_OR_RETURN(std::optional<data::DatasetCommit> head, datasets_.Head(ds, data::kDefaultBranch));
      if (head) out["head"] = CommitJson(ds, *head);
      return out;
    });
  }

  Response Missing(Request& req, const data::Dataset& ds) {
    return Handle([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(Json body, ParseJson(req.body));
      ASSIGN_OR_RETURN(std::vector<std::string> hexes, StringArray(body, "digests"));
      if (hexes.size() > kMaxMissingQuery) {
        return BadRequest(fmt::format("at most {} digests per request", kMaxMissingQuery));
      }
      std::vector<Digest> digests;
      digests.reserve(hexes.size());
      for (const std::string& h : hexes) {
        ASSIGN_OR_RETURN(Digest d, Digest::FromHex(h));
        digests.push_back(d);
      }
      ASSIGN_OR_RETURN(data::ChunkScope scope, datasets_.ScopeOf(ds));
      ASSIGN_OR_RETURN(std::vector<bool> present, datasets_.chunks().Contains(scope, digests));
      Json missing = Json::array();
      for (size_t i = 0; i < digests.size(); ++i) {
        if (!present[i]) missing.push_back(hexes[i]);
      }
      return Json{{"missing", std::move(missing)}};
    });
  }

  Response Upload(Request& req, const data::Dataset& ds) {
    // In-process callers (the CLI's embedded mode) hand the body over whole.
    StringBody whole(req.body);
    if (req.body_stream == nullptr) req.body_stream = &whole;
    return Handle([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(data::ChunkScope scope, datasets_.ScopeOf(ds));
      ASSIGN_OR_RETURN(auto batch, datasets_.chunks().NewBatch(scope, /*verify=*/true));
      uint64_t received = 0;
      RETURN_IF_ERROR(ReadChunkFrames(*req.body_stream, kMaxUploadFrame,
                                      [&](const Digest& d, std::string_view data) -> absl::Status {
                                        ++received;
                                        return batch->Add(d, data);
                                      }));
      RETURN_IF_ERROR(batch->Commit());
      return Json{{"received", received}, {"stored", batch->stored_chunks()}, {"stored_bytes", batch->stored_bytes()}};
    });
  }

  Response Commit(Request& req, const data::Dataset& ds) {
    return Handle([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(Json body, ParseJson(req.body));
      data::NewCommit c;
      ASSIGN_OR_RETURN(std::optional<std::string> branch, GetOptionalString(body, "branch"));
      c.branch = branch.value_or(data::kDefaultBranch);
      ASSIGN_OR_RETURN(std::optional<std::string> expected, GetOptionalString(body, "expected_head"));
      c.expected_head = expected.value_or("");
      ASSIGN_OR_RETURN(std::string manifest, GetString(body, "manifest"));
      ASSIGN_OR_RETURN(c.manifest, Digest::FromHex(manifest));
      ASSIGN_OR_RETURN(std::optional<std::string> message, GetOptionalString(body, "message"));
      c.message = message.value_or("");
      ASSIGN_OR_RETURN(std::optional<std::string> author, GetOptionalString(body, "author"));
      c.author = author.value_or("");
      if (body.contains("splits")) {
        ASSIGN_OR_RETURN(c.splits, ParseSplits(body));
      }
      ASSIGN_OR_RETURN(c.seal, StringArray(body, "seal"));
      ASSIGN_OR_RETURN(data::CommitResult r, datasets_.Commit(ds, c));
      return Json{{"commit", CommitJson(ds, r.commit)}, {"created", r.created}};
    });
  }

  Response Log(Request& req, const data::Dataset& ds) {
    return Handle([&]() -> absl::StatusOr<Json> {
      int limit = 50;
      if (auto l = req.Query("limit")) {
        auto [p, ec] = std::from_chars(l->data(), l->data() + l->size(), limit);
        if (ec != std::errc() || p != l->data() + l->size() || limit < 1 || limit > kMaxLogLimit) {
          return BadRequest(fmt::format("limit must be an integer from 1 to {}", kMaxLogLimit));
        }
      }
      ASSIGN_OR_RETURN(std::vector<data::DatasetCommit> log,
                       datasets_.Log(ds, req.Query("ref").value_or(data::kDefaultBranch), limit));
      Json out = Json::array();
      for (const data::DatasetCommit& c : log) out.push_back(CommitJson(ds, c));
      return Json{{"commits", std::move(out)}};
    });
  }

  Response ShowCommit(const data::Dataset& ds, const std::string& ref) {
    return Handle([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(data::DatasetCommit c, datasets_.Resolve(ds, ref));
      return ShowCommitJson(ds, c);
    });
  }

  absl::StatusOr<Json> ShowCommitJson(const data::Dataset& ds, const data::DatasetCommit& c) {
    {
      Json out = {{"commit", CommitJson(ds, c)}};
      ASSIGN_OR_RETURN(auto profiles, datasets_.Profiles(c.id));
      Json p = Json::object();
      for (auto& [path, profile] : profiles) p[path] = std::move(profile);
      out["profiles"] = std::move(p);
      ASSIGN_OR_RETURN(auto uses, dir_.tracking().RunsUsingDataset(c.id));
      Json runs = Json::array();
      for (const auto& u : uses) {
        runs.push_back({{"run_id", u.run_id},
                        {"experiment_id", u.experiment_id},
                        {"dataset", u.dataset_name},
                        {"context", u.context}});
      }
      out["runs"] = std::move(runs);
      return out;
    }
  }

  Response Diff(Request& req, const data::Dataset& ds) {
    return Handle([&]() -> absl::StatusOr<Json> {
      std::optional<std::string> from = req.Query("from"), to = req.Query("to");
      if (!from || !to) return BadRequest("diff needs the query parameters 'from' and 'to'");
      ASSIGN_OR_RETURN(data::DatasetCommit a, datasets_.Resolve(ds, *from));
      ASSIGN_OR_RETURN(data::DatasetCommit b, datasets_.Resolve(ds, *to));
      ASSIGN_OR_RETURN(data::DatasetManifest ma, datasets_.GetManifest(ds, a.manifest));
      ASSIGN_OR_RETURN(data::DatasetManifest mb, datasets_.GetManifest(ds, b.manifest));
      Json changes = Json::array();
      for (const data::FileChange& ch : data::DiffManifests(ma, mb)) {
        changes.push_back({{"kind", data::FileChangeKindName(ch.kind)},
                           {"path", ch.path},
                           {"old_size", ch.old_size},
                           {"new_size", ch.new_size}});
      }
      return Json{{"from", a.id}, {"to", b.id}, {"changes", std::move(changes)}};
    });
  }

  Response Tree(Request& req, const data::Dataset& ds, const std::string& ref) {
    return Handle([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(data::DatasetCommit c, datasets_.Resolve(ds, ref.empty() ? data::kDefaultBranch : ref));
      ASSIGN_OR_RETURN(data::DatasetManifest m, datasets_.GetManifest(ds, c.manifest));
      const std::string prefix = req.Query("prefix").value_or("");
      std::optional<std::string> split_name = req.Query("split");
      const data::Split* split = nullptr;
      if (split_name) {
        split = c.FindSplit(*split_name);
        if (split == nullptr) return absl::NotFoundError(fmt::format("commit {} declares no split '{}'", c.id, *split_name));
      }
      Json files = Json::array();
      for (const data::ManifestFile& f : m.files) {
        if (!prefix.empty() && f.path.compare(0, prefix.size(), prefix) != 0) continue;
        if (split != nullptr && std::none_of(split->globs.begin(), split->globs.end(),
                                             [&](const std::string& g) { return data::MatchGlob(g, f.path); })) {
          continue;
        }
        files.push_back({{"path", f.path}, {"size", f.size}, {"mode", f.mode}, {"chunks", f.chunks.size()}});
      }
      return Json{{"commit", c.id}, {"files", std::move(files)}};
    });
  }

  Response Manifest(const data::Dataset& ds, const std::string& ref) {
    auto c = datasets_.Resolve(ds, ref.empty() ? data::kDefaultBranch : ref);
    if (!c.ok()) return ErrorResponse(c.status());
    auto m = datasets_.GetManifest(ds, c->manifest);
    if (!m.ok()) return ErrorResponse(m.status());
    Response r = Response::Text(200, m->Serialize());
    r.headers.push_back({"X-Cairn-Commit", c->id});
    return r;
  }

  Response File(Request& req, const data::Dataset& ds, const std::string& ref_and_path) {
    auto [ref, path] = FirstSegment(ref_and_path);
    if (path.empty()) return ErrorResponse(BadRequest("file download needs .../files/REF/PATH"));
    auto c = datasets_.Resolve(ds, ref);
    if (!c.ok()) return ErrorResponse(c.status());
    auto m = datasets_.GetManifest(ds, c->manifest);
    if (!m.ok()) return ErrorResponse(m.status());
    auto it = std::lower_bound(m->files.begin(), m->files.end(), path,
                               [](const data::ManifestFile& f, const std::string& p) { return f.path < p; });
    if (it == m->files.end() || it->path != path) {
      return ErrorResponse(absl::NotFoundError(fmt::format("no file '{}' in commit {}", path, c->id)));
    }
    auto scope = datasets_.ScopeOf(ds);
    if (!scope.ok()) return ErrorResponse(scope.status());
    uint64_t begin = 0, end = it->size;
    Response r;
    r.content_type = "application/octet-stream";
    r.headers.push_back({"Accept-Ranges", "bytes"});
    r.headers.push_back({"X-Cairn-Commit", c->id});
    if (req.Query("offset") || req.Query("length")) {
      // The CLI's byte ranges, as query parameters.
      uint64_t offset = 0, length = UINT64_MAX;
      auto parse = [](const std::optional<std::string>& v, uint64_t& out) {
        if (!v) return true;
        auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
        return ec == std::errc() && p == v->data() + v->size();
      };
      if (!parse(req.Query("offset"), offset) || !parse(req.Query("length"), length)) {
        return ErrorResponse(BadRequest("offset and length must be non-negative integers"));
      }
      if (offset > it->size) {
        return ErrorResponse(absl::OutOfRangeError(
            fmt::format("offset {} is past the end of '{}' ({} bytes)", offset, it->path, it->size)));
      }
      begin = offset;
      end = offset + std::min(length, it->size - offset);
    } else if (auto range = req.Header("range")) {
      auto parsed = ParseByteRange(*range, it->size);
      if (!parsed.ok()) {
        if (absl::IsOutOfRange(parsed.status())) {
          Response bad = ErrorResponse(parsed.status());
          bad.status = 416;
          bad.headers.push_back({"Content-Range", fmt::format("bytes */{}", it->size)});
          return bad;
        }
        return ErrorResponse(parsed.status());
      }
      std::tie(begin, end) = *parsed;
      r.status = 206;
      r.headers.push_back({"Content-Range", fmt::format("bytes {}-{}/{}", begin, end - 1, it->size)});
    }
    r.content_length = end - begin;
    auto stream = std::make_shared<FileStream>(datasets_.chunks(), *scope, *it, begin, end);
    r.body_source = [stream](char* scratch, size_t n) { return stream->Read(scratch, n); };
    return r;
  }

  Response Refs(const data::Dataset& ds) {
    return Handle([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(std::vector<data::Ref> refs, datasets_.ListRefs(ds));
      Json out = Json::array();
      for (const data::Ref& r : refs) out.push_back(RefJson(r));
      return Json{{"refs", std::move(out)}};
    });
  }

  Response CreateRef(Request& req, const data::Dataset& ds) {
    return Handle([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(Json body, ParseJson(req.body));
      ASSIGN_OR_RETURN(std::string kind, GetString(body, "kind"));
      ASSIGN_OR_RETURN(std::string name, GetString(body, "name"));
      ASSIGN_OR_RETURN(std::string target, GetString(body, "target"));
      RETURN_IF_ERROR(datasets_.CreateRef(ds, kind, name, target));
      ASSIGN_OR_RETURN(data::DatasetCommit c, datasets_.Resolve(ds, name));
      return Json{{"ref", {{"kind", kind}, {"name", name}, {"commit", c.id}}}};
    });
  }

  Response DeleteRef(const data::Dataset& ds, const std::string& kind_and_name) {
    return Handle([&]() -> absl::StatusOr<Json> {
      auto [kind, name] = FirstSegment(kind_and_name);
      RETURN_IF_ERROR(datasets_.DeleteRef(ds, kind, name));
      return Json::object();
    });
  }

  DataDirectory& dir_;
  data::DatasetStore& datasets_;
};

}  // namespace

Json SplitJson(const data::Split& s) {
  return {{"name", s.name}, {"globs", s.globs}, {"sealed", s.sealed}, {"files", s.files}, {"bytes", s.bytes}};
}

Json CommitJson(const data::Dataset& ds, const data::DatasetCommit& c) {
  Json splits = Json::array();
  for (const data::Split& s : c.splits) splits.push_back(SplitJson(s));
  return {{"id", c.id},
          {"dataset", ds.name},
          {"manifest", c.manifest.ToHex()},
          {"parents", c.parents},
          {"message", c.message},
          {"author", c.author},
          {"created_at", c.created_at_ms},
          {"file_count", c.file_count},
          {"total_bytes", c.total_bytes},
          {"splits", std::move(splits)}};
}

std::string EncodeChunkFrame(const Digest& digest, std::string_view data) {
  std::string out;
  out.reserve(36 + data.size());
  out.append(reinterpret_cast<const char*>(digest.bytes.data()), 32);
  const uint32_t n = static_cast<uint32_t>(data.size());
  out.push_back(static_cast<char>(n >> 24));
  out.push_back(static_cast<char>(n >> 16));
  out.push_back(static_cast<char>(n >> 8));
  out.push_back(static_cast<char>(n));
  out.append(data);
  return out;
}

absl::StatusOr<size_t> StringBody::Read(char* scratch, size_t n) {
  n = std::min(n, data_.size() - pos_);
  std::memcpy(scratch, data_.data() + pos_, n);
  pos_ += n;
  return n;
}

absl::Status ReadChunkFrames(http::BodyStream& body, uint32_t max_frame,
                             const std::function<absl::Status(const Digest&, std::string_view)>& fn) {
  auto read_exact = [&](char* out, size_t n) -> absl::StatusOr<size_t> {
    size_t got = 0;
    while (got < n) {
      ASSIGN_OR_RETURN(size_t r, body.Read(out + got, n - got));
      if (r == 0) break;
      got += r;
    }
    return got;
  };
  std::string data;
  for (uint64_t frame = 0;; ++frame) {
    char header[36];
    ASSIGN_OR_RETURN(size_t n, read_exact(header, sizeof header));
    if (n == 0) return absl::OkStatus();
    if (n != sizeof header) return BadRequest(fmt::format("chunk upload: frame {} header is truncated", frame));
    Digest d;
    std::memcpy(d.bytes.data(), header, 32);
    const uint32_t len = (uint32_t{static_cast<uint8_t>(header[32])} << 24) |
                         (uint32_t{static_cast<uint8_t>(header[33])} << 16) |
                         (uint32_t{static_cast<uint8_t>(header[34])} << 8) | static_cast<uint8_t>(header[35]);
    if (len > max_frame) {
      return BadRequest(fmt::format("chunk upload: frame {} is {} bytes (at most {})", frame, len, max_frame));
    }
    data.resize(len);
    ASSIGN_OR_RETURN(size_t got, read_exact(data.data(), len));
    if (got != len) return BadRequest(fmt::format("chunk upload: frame {} is truncated", frame));
    RETURN_IF_ERROR(fn(d, data));
  }
}

absl::StatusOr<std::pair<uint64_t, uint64_t>> ParseByteRange(std::string_view header, uint64_t size) {
  auto malformed = [&] { return BadRequest(fmt::format("malformed Range header '{}'", header)); };
  constexpr std::string_view kUnit = "bytes=";
  if (header.substr(0, kUnit.size()) != kUnit) return malformed();
  std::string_view spec = header.substr(kUnit.size());
  if (spec.find(',') != std::string_view::npos) return BadRequest("multiple byte ranges are not supported");
  const size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return malformed();
  auto parse = [](std::string_view s, uint64_t& v) {
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && p == s.data() + s.size();
  };
  std::string_view a = spec.substr(0, dash), b = spec.substr(dash + 1);
  uint64_t first = 0, last = 0;
  if (a.empty()) {  // suffix: the last N bytes
    if (!parse(b, last)) return malformed();
    if (last == 0 || size == 0) return absl::OutOfRangeError(fmt::format("range '{}' is unsatisfiable", header));
    return std::make_pair(size - std::min(last, size), size);
  }
  if (!parse(a, first)) return malformed();
  if (b.empty()) {
    last = size == 0 ? 0 : size - 1;
  } else if (!parse(b, last) || last < first) {
    return malformed();
  }
  if (first >= size) return absl::OutOfRangeError(fmt::format("range '{}' starts past the end ({} bytes)", header, size));
  return std::make_pair(first, std::min(last, size - 1) + 1);
}

void AddDataRoutes(DataDirectory& dir, http::Router& router) {
  auto api = std::make_shared<DataApi>(dir);
  router.Add(Method::kGet, kPrefix, [api](Request& req) { return api->List(req); });
  router.Add(Method::kPost, kPrefix, [api](Request& req) { return api->Create(req); });
  auto dispatch = [api](Request& req) { return api->Dispatch(req); };
  router.Add(Method::kGet, std::string(kPrefix) + "/*", dispatch);
  router.Add(Method::kHead, std::string(kPrefix) + "/*", dispatch);
  router.Add(Method::kDelete, std::string(kPrefix) + "/*", dispatch);
  router.Add(Method::kPost, std::string(kPrefix) + "/*", dispatch, {.stream_body = true});
  router.Add(Method::kPost, "/api/cairn/v1/gc", [api](Request& req) { return api->Gc(req); });
  router.Add(Method::kGet, "/api/cairn/v1/commits/*", [api](Request& req) { return api->CommitById(req); });
  router.Add(Method::kPost, "/api/cairn/v1/keys/rotate", [api](Request&) { return api->RotateKeys(); });
}

}  // namespace cairn::api
