#include "cli/data_commands.h"

#include <fmt/format.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "api/data_api.h"
#include "api/data_directory.h"
#include "base/sha256.h"
#include "cli/table.h"
#include "cli/transport.h"
#include "data/ingest.h"
#include "data/manifest.h"
#include "data/stat_cache.h"
#include "data/tree_scanner.h"
#include "http/http.h"

namespace cairn::cli {
namespace {

constexpr char kDatasets[] = "/api/cairn/v1/datasets";

struct Target {
  std::string dataset;
  std::string ref;  // "" when not given
};

// "NAME" or "NAME@REF".
Target ParseTarget(const std::string& s) {
  size_t at = s.find('@');
  if (at == std::string::npos) return {s, ""};
  return {s.substr(0, at), s.substr(at + 1)};
}

std::string DatasetPath(const std::string& name) { return std::string(kDatasets) + "/" + http::UrlEncode(name); }

std::string Short(const std::string& id) { return id.substr(0, 12); }

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// A one-line progress display on stderr: files, bytes, throughput, ETA.
class ProgressLine {
 public:
  explicit ProgressLine(bool enabled) : enabled_(enabled), start_(std::chrono::steady_clock::now()) {}

  void Update(const data::IngestProgress& p) {
    if (!enabled_) return;
    const double s = std::max(Seconds(start_), 1e-3);
    const double rate = static_cast<double>(p.bytes_done) / s;
    std::string eta = "--";
    if (rate > 0 && p.bytes_total > p.bytes_done) {
      eta = fmt::format("{:.0f}s", static_cast<double>(p.bytes_total - p.bytes_done) / rate);
    } else if (p.bytes_done >= p.bytes_total) {
      eta = "0s";
    }
    std::fprintf(stderr, "\r  %llu/%llu files  %s/%s  %s/s  ETA %s%s   ",
                 static_cast<unsigned long long>(p.files_done), static_cast<unsigned long long>(p.files_total),
                 FormatBytes(p.bytes_done).c_str(), FormatBytes(p.bytes_total).c_str(),
                 FormatBytes(static_cast<uint64_t>(rate)).c_str(), eta.c_str(),
                 p.files_cached > 0 ? fmt::format("  ({} unchanged)", p.files_cached).c_str() : "");
    std::fflush(stderr);
    shown_ = true;
  }
  void Done() {
    if (shown_) std::fprintf(stderr, "\n");
  }

 private:
  const bool enabled_;
  const std::chrono::steady_clock::time_point start_;
  bool shown_ = false;
};

// Chunks go to a server: batched, asked for (chunks/missing), and only the
// missing ones uploaded. Each uploaded batch is durable on the server, so a
// rerun after an interruption uploads only what is still missing.
class HttpChunkSink final : public data::ChunkSink {
 public:
  HttpChunkSink(Transport& t, std::string dataset_path) : t_(t), path_(std::move(dataset_path)) {}

  absl::Status Put(const Digest& digest, std::string_view data) override {
    Batch full;
    {
      absl::MutexLock lock(&mu_);
      if (!seen_.insert(digest).second) return absl::OkStatus();
      batch_.digests.push_back(digest);
      batch_.offsets.push_back(batch_.frames.size());
      batch_.frames.append(api::EncodeChunkFrame(digest, data));
      if (batch_.frames.size() < kBatchBytes) return absl::OkStatus();
      std::swap(full, batch_);
    }
    return Send(full);
  }

  absl::Status Flush() override {
    Batch rest;
    {
      absl::MutexLock lock(&mu_);
      std::swap(rest, batch_);
    }
    return Send(rest);
  }

  uint64_t stored_bytes() const { return stored_bytes_.load(); }

 private:
  static constexpr size_t kBatchBytes = 16 << 20;
  struct Batch {
    std::vector<Digest> digests;
    std::vector<size_t> offsets;  // where each digest's frame starts in `frames`
    std::string frames;
  };

  absl::Status Send(const Batch& b) {
    if (b.digests.empty()) return absl::OkStatus();
    absl::MutexLock lock(&send_mu_);  // one connection, one request at a time
    Json q = {{"digests", Json::array()}};
    for (const Digest& d : b.digests) q["digests"].push_back(d.ToHex());
    ASSIGN_OR_RETURN(Json r, WithRetries([&] { return t_.Post(path_ + "/chunks/missing", q); }));
    absl::flat_hash_set<std::string> missing;
    for (const Json& m : r.value("missing", Json::array())) {
      if (m.is_string()) missing.insert(m.get<std::string>());
    }
    if (missing.empty()) return absl::OkStatus();
    std::string upload;
    for (size_t i = 0; i < b.digests.size(); ++i) {
      const size_t end = i + 1 < b.offsets.size() ? b.offsets[i + 1] : b.frames.size();
      if (missing.contains(b.digests[i].ToHex())) upload.append(b.frames, b.offsets[i], end - b.offsets[i]);
    }
    ASSIGN_OR_RETURN(Json u, WithRetries([&] { return t_.PostBytes(path_ + "/chunks", upload); }));
    stored_bytes_ += static_cast<uint64_t>(JsonInt(u, "stored_bytes"));
    return absl::OkStatus();
  }

  // Retries requests that failed in transit (the server may have restarted).
  static absl::StatusOr<Json> WithRetries(const std::function<absl::StatusOr<Json>()>& fn) {
    absl::StatusOr<Json> r = fn();
    for (int attempt = 1; attempt <= 3 && absl::IsUnavailable(r.status()); ++attempt) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500 * attempt));
      r = fn();
    }
    return r;
  }

  Transport& t_;
  const std::string path_;
  absl::Mutex mu_;
  Batch batch_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<Digest> seen_ ABSL_GUARDED_BY(mu_);
  absl::Mutex send_mu_;
  std::atomic<uint64_t> stored_bytes_{0};
};

struct AddOptions {
  std::vector<std::string> paths;
  std::string message;
  std::string author;
  std::string branch = "main";
  std::vector<std::string> split_args;  // NAME=GLOB
  std::vector<std::string> seal;
  std::vector<std::string> include, exclude;
  std::string prefix;
  bool replace = false;
  bool no_progress = false;
};

absl::StatusOr<std::optional<std::vector<data::Split>>> ParseSplitArgs(const std::vector<std::string>& args) {
  if (args.empty()) return std::optional<std::vector<data::Split>>();
  std::map<std::string, std::vector<std::string>> by_name;
  for (const std::string& a : args) {
    size_t eq = a.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == a.size()) {
      return absl::InvalidArgumentError(fmt::format("--split '{}': expected NAME=GLOB, e.g. test=test/**", a));
    }
    by_name[a.substr(0, eq)].push_back(a.substr(eq + 1));
  }
  std::vector<data::Split> out;
  for (auto& [name, globs] : by_name) out.push_back({.name = name, .globs = std::move(globs)});
  return std::optional<std::vector<data::Split>>(std::move(out));
}

// The commit's files: the parent's, with the added ones replacing same-path
// entries (or only the added ones with --replace).
absl::StatusOr<data::DatasetManifest> Overlay(const data::DatasetManifest& parent,
                                              std::vector<data::ManifestFile> added, bool replace) {
  data::DatasetManifest m;
  m.files.reserve(added.size() + (replace ? 0 : parent.files.size()));
  absl::flat_hash_set<std::string_view> paths;
  for (const data::ManifestFile& f : added) paths.insert(f.path);
  if (!replace) {
    for (const data::ManifestFile& f : parent.files) {
      if (!paths.contains(f.path)) m.files.push_back(f);
    }
  }
  for (data::ManifestFile& f : added) m.files.push_back(std::move(f));
  RETURN_IF_ERROR(m.Normalize());
  return m;
}

std::string CacheDir(const GlobalOptions& g) {
  if (g.url.empty()) return g.data_dir + "/cache";
  std::string base = EnvOr("XDG_CACHE_HOME", EnvOr("HOME", "/tmp") + "/.cache");
  return base + "/cairn/" + Sha256::Of(g.url).ToHex().substr(0, 16);
}

struct HeadCommit {
  std::string id;
  Digest manifest_digest;
  data::DatasetManifest manifest;
};

// The dataset side of `data add`: embedded (direct) or remote (HTTP).
class AddBackend {
 public:
  virtual ~AddBackend() = default;
  virtual std::string dataset_id() const = 0;
  // The branch head, or nullopt.
  virtual absl::StatusOr<std::optional<HeadCommit>> Head(const std::string& branch) = 0;
  // A fresh sink for one pass over the files (a retry makes another).
  virtual absl::StatusOr<data::ChunkSink*> NewSink() = 0;
  virtual uint64_t stored_bytes() const = 0;
  // Stores the manifest and commits; returns the commit JSON and whether created.
  virtual absl::StatusOr<std::pair<Json, bool>> Commit(const data::DatasetManifest& m, const std::string& text,
                                                       const std::optional<HeadCommit>& head, const AddOptions& o,
                                                       const std::optional<std::vector<data::Split>>& splits) = 0;
  // The commit JSON of `id`.
  virtual absl::StatusOr<Json> GetCommit(const std::string& id) = 0;
  // The head's id ("" for a branch without commits), without its manifest.
  virtual absl::StatusOr<std::string> HeadId(const std::string& branch) = 0;
};


class EmbeddedAdd final : public AddBackend {
 public:
  static absl::StatusOr<std::unique_ptr<EmbeddedAdd>> Create(api::DataDirectory& dir, const std::string& name) {
    auto a = std::unique_ptr<EmbeddedAdd>(new EmbeddedAdd(dir));
    ASSIGN_OR_RETURN(a->ds_, dir.datasets().GetDataset(data::kDefaultProject, name));
    ASSIGN_OR_RETURN(a->scope_, dir.datasets().ScopeOf(a->ds_));
    return a;
  }
  std::string dataset_id() const override { return ds_.id; }
  absl::StatusOr<std::optional<HeadCommit>> Head(const std::string& branch) override {
    ASSIGN_OR_RETURN(std::optional<data::DatasetCommit> head, dir_.datasets().Head(ds_, branch));
    if (!head) return std::optional<HeadCommit>();
    ASSIGN_OR_RETURN(data::DatasetManifest m, dir_.datasets().GetManifest(ds_, head->manifest));
    return std::optional<HeadCommit>(HeadCommit{head->id, head->manifest, std::move(m)});
  }
  absl::StatusOr<Json> GetCommit(const std::string& id) override {
    ASSIGN_OR_RETURN(data::DatasetCommit c, dir_.datasets().GetCommit(id));
    return api::CommitJson(ds_, c);
  }
  absl::StatusOr<std::string> HeadId(const std::string& branch) override {
    ASSIGN_OR_RETURN(std::optional<data::DatasetCommit> head, dir_.datasets().Head(ds_, branch));
    return head ? head->id : "";
  }
  absl::StatusOr<data::ChunkSink*> NewSink() override {
    if (batch_) earlier_bytes_ += batch_->stored_bytes();
    sink_.reset();
    ASSIGN_OR_RETURN(batch_, dir_.chunks().NewBatch(scope_, /*verify=*/false));
    sink_ = std::make_unique<data::ChunkStoreSink>(*batch_);
    return sink_.get();
  }
  uint64_t stored_bytes() const override { return earlier_bytes_ + (batch_ ? batch_->stored_bytes() : 0); }
  absl::StatusOr<std::pair<Json, bool>> Commit(const data::DatasetManifest& m, const std::string& text,
                                               const std::optional<HeadCommit>& head, const AddOptions& o,
                                               const std::optional<std::vector<data::Split>>& splits) override {
    ASSIGN_OR_RETURN(Digest md, dir_.datasets().PutManifestText(ds_, text));
    ASSIGN_OR_RETURN(data::CommitResult r,
                     dir_.datasets().Commit(ds_, {.branch = o.branch,
                                                  .expected_head = head ? head->id : "",
                                                  .manifest = md,
                                                  .message = o.message,
                                                  .author = o.author,
                                                  .splits = splits,
                                                  .seal = o.seal,
                                                  .manifest_hint = &m,
                                                  .parent_manifest_hint = head ? &head->manifest : nullptr}));
    return std::make_pair(api::CommitJson(ds_, r.commit), r.created);
  }

 private:
  explicit EmbeddedAdd(api::DataDirectory& dir) : dir_(dir) {}
  api::DataDirectory& dir_;
  data::Dataset ds_;
  data::ChunkScope scope_;
  std::unique_ptr<data::ChunkStore::Batch> batch_;
  std::unique_ptr<data::ChunkStoreSink> sink_;
  uint64_t earlier_bytes_ = 0;  // stored by earlier passes
};

class RemoteAdd final : public AddBackend {
 public:
  static absl::StatusOr<std::unique_ptr<RemoteAdd>> Create(Transport& t, const std::string& name) {
    auto a = std::unique_ptr<RemoteAdd>(new RemoteAdd(t, DatasetPath(name)));
    ASSIGN_OR_RETURN(Json info, t.Get(a->path_));
    a->id_ = JsonStr(info["dataset"], "id");
    return a;
  }
  std::string dataset_id() const override { return id_; }
  absl::StatusOr<std::optional<HeadCommit>> Head(const std::string& branch) override {
    absl::StatusOr<Json> c = t_.Get(path_ + "/commits/" + http::UrlEncode(branch));
    if (absl::IsNotFound(c.status())) return std::optional<HeadCommit>();
    RETURN_IF_ERROR(c.status());
    HeadCommit head{.id = JsonStr((*c)["commit"], "id")};
    ASSIGN_OR_RETURN(head.manifest_digest, Digest::FromHex(JsonStr((*c)["commit"], "manifest")));
    std::string text;
    RETURN_IF_ERROR(t_.Download(path_ + "/manifest/" + head.id, [&](std::string_view b) {
      text.append(b);
      return absl::OkStatus();
    }));
    if (Sha256::Of(text) != head.manifest_digest) {
      return absl::DataLossError("the head manifest received does not match its digest");
    }
    ASSIGN_OR_RETURN(head.manifest, data::DatasetManifest::Parse(text));
    return std::optional<HeadCommit>(std::move(head));
  }
  absl::StatusOr<Json> GetCommit(const std::string& id) override {
    ASSIGN_OR_RETURN(Json c, t_.Get(path_ + "/commits/" + id));
    return c["commit"];
  }
  absl::StatusOr<std::string> HeadId(const std::string& branch) override {
    absl::StatusOr<Json> c = t_.Get(path_ + "/commits/" + http::UrlEncode(branch));
    if (absl::IsNotFound(c.status())) return std::string();
    RETURN_IF_ERROR(c.status());
    return JsonStr((*c)["commit"], "id");
  }
  absl::StatusOr<data::ChunkSink*> NewSink() override {
    if (sink_) earlier_bytes_ += sink_->stored_bytes();
    sink_ = std::make_unique<HttpChunkSink>(t_, path_);
    return sink_.get();
  }
  uint64_t stored_bytes() const override { return earlier_bytes_ + (sink_ ? sink_->stored_bytes() : 0); }
  absl::StatusOr<std::pair<Json, bool>> Commit(const data::DatasetManifest& m, const std::string& text,
                                               const std::optional<HeadCommit>& head, const AddOptions& o,
                                               const std::optional<std::vector<data::Split>>& splits) override {
    const std::string expected_head = head ? head->id : "";
    const Digest md = Sha256::Of(text);
    RETURN_IF_ERROR(t_.PostBytes(path_ + "/chunks", api::EncodeChunkFrame(md, text)).status());
    Json body = {{"branch", o.branch},   {"expected_head", expected_head}, {"manifest", md.ToHex()},
                 {"message", o.message}, {"author", o.author},             {"seal", o.seal}};
    if (splits) {
      body["splits"] = Json::array();
      for (const data::Split& s : *splits) body["splits"].push_back({{"name", s.name}, {"globs", s.globs}});
    }
    ASSIGN_OR_RETURN(Json r, t_.Post(path_ + "/commits", body));
    return std::make_pair(r["commit"], r.value("created", false));
  }

 private:
  RemoteAdd(Transport& t, std::string path) : t_(t), path_(std::move(path)) {}
  Transport& t_;
  const std::string path_;
  std::string id_;
  std::unique_ptr<HttpChunkSink> sink_;
  uint64_t earlier_bytes_ = 0;
};

absl::Status DataAdd(Transport& t, const GlobalOptions& g, const std::string& name, const AddOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(auto splits, ParseSplitArgs(o.split_args));
  std::unique_ptr<AddBackend> backend;
  if (api::DataDirectory* dir = t.embedded()) {
    ASSIGN_OR_RETURN(backend, EmbeddedAdd::Create(*dir, name));
  } else {
    ASSIGN_OR_RETURN(backend, RemoteAdd::Create(t, name));
  }
  data::ScanOptions scan_options{.include = o.include, .exclude = o.exclude, .prefix = o.prefix};
  ASSIGN_OR_RETURN(std::vector<data::ScannedFile> scanned, data::ScanTree(o.paths, scan_options));
  if (scanned.empty() && !o.replace) {
    return absl::InvalidArgumentError("no files to add (check the paths and the --include/--exclude globs)");
  }
  {
    std::error_code ec;
    std::filesystem::create_directories(CacheDir(g), ec);  // without it, the cache is just not saved (a warning)
  }
  ASSIGN_OR_RETURN(std::unique_ptr<data::StatCache> cache,
                   data::StatCache::Open(CacheDir(g) + "/stat-" + backend->dataset_id()));

  // What this add is, for the unchanged-tree fast path: the same arguments,
  // and (checked below) every file a stat cache hit, with the cache holding
  // exactly these files, means exactly the files of the last add.
  Json fingerprint_input = {{"replace", o.replace}, {"prefix", o.prefix},   {"include", o.include},
                            {"exclude", o.exclude}, {"branch", o.branch}, {"paths", Json::array()}};
  for (const std::string& p : o.paths) {
    std::error_code ec;
    fingerprint_input["paths"].push_back(std::filesystem::absolute(p, ec).lexically_normal().string());
  }
  const std::string fingerprint = Sha256::Of(fingerprint_input.dump()).ToHex();
  const std::string last_add_file = CacheDir(g) + "/last-add-" + backend->dataset_id();
  const size_t cache_entries = cache->loaded_entries();

  const bool show_progress = !o.no_progress && !g.json && ::isatty(STDERR_FILENO);
  uint64_t total_bytes = 0, files_cached = 0;
  for (const auto& f : scanned) total_bytes += f.size;
  auto ingest = [&](bool use_cache) -> absl::StatusOr<std::vector<data::ManifestFile>> {
    ProgressLine progress(show_progress);
    data::IngestOptions io{.stat_cache = use_cache ? cache.get() : nullptr};
    io.progress = [&](const data::IngestProgress& p) {
      progress.Update(p);
      files_cached = p.files_cached;
    };
    if (scanned.empty()) {  // freed after the first pass: scan again
      ASSIGN_OR_RETURN(scanned, data::ScanTree(o.paths, scan_options));
    }
    ASSIGN_OR_RETURN(data::ChunkSink * sink, backend->NewSink());
    auto files = data::IngestFiles(scanned, *sink, io);
    progress.Done();
    return files;
  };
  ASSIGN_OR_RETURN(std::vector<data::ManifestFile> files, ingest(true));
  const size_t file_count = scanned.size();
  // The scan is not needed any more (unless the commit must read everything
  // again, which scans again): free it before the commit's own peak. The
  // stat cache is saved now (its chunks are durable: the pass flushed them)
  // and closed, for the same reason; a retry reopens it.
  scanned = {};
  const std::string cache_file = CacheDir(g) + "/stat-" + backend->dataset_id();
  bool cache_saved = true;
  if (absl::Status s = cache->Save(); !s.ok()) {
    std::fprintf(stderr, "cairn: warning: could not save the stat cache: %s\n", std::string(s.message()).c_str());
    cache_saved = false;
  }
  cache.reset();
  auto reopen_cache = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(cache, data::StatCache::Open(cache_file));
    return absl::OkStatus();
  };

  std::pair<Json, bool> result;
  bool done = false;
  if (!splits && o.seal.empty() && files_cached == file_count && cache_entries == file_count) {
    std::ifstream in(last_add_file);
    Json last = Json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (last.is_object() && JsonStr(last, "fingerprint") == fingerprint &&
        JsonInt(last, "files") == static_cast<int64_t>(file_count)) {
      ASSIGN_OR_RETURN(std::string head_id, backend->HeadId(o.branch));
      if (!head_id.empty() && head_id == JsonStr(last, "commit")) {
        ASSIGN_OR_RETURN(Json c, backend->GetCommit(head_id));
        result = {std::move(c), false};
        done = true;
      }
    }
  }
  bool retried_without_cache = false;
  for (int attempt = 0; !done; ++attempt) {
    ASSIGN_OR_RETURN(std::optional<HeadCommit> head, backend->Head(o.branch));
    // `files` moves into the manifest; a retry reads them back from the
    // stat cache (saved and reopened) or from disk.
    ASSIGN_OR_RETURN(data::DatasetManifest m,
                     Overlay(head ? head->manifest : data::DatasetManifest{}, std::move(files), o.replace));
    const std::string text = m.Serialize();
    if (head && !splits && o.seal.empty() && Sha256::Of(text) == head->manifest_digest) {
      // Same files as the head: nothing to commit (and nothing to upload).
      ASSIGN_OR_RETURN(Json c, backend->GetCommit(head->id));
      result = {std::move(c), false};
      break;
    }
    absl::StatusOr<std::pair<Json, bool>> r = backend->Commit(m, text, head, o, splits);
    if (r.ok()) {
      result = std::move(*r);
      break;
    }
    if (absl::IsAborted(r.status()) && attempt < 3) {
      // The branch moved: rebuild on the new head. The files just read are
      // all in the saved stat cache.
      RETURN_IF_ERROR(reopen_cache());
      ASSIGN_OR_RETURN(files, ingest(true));
      RETURN_IF_ERROR(cache->Save());
      cache.reset();
      continue;
    }
    if (absl::IsFailedPrecondition(r.status()) && !retried_without_cache && file_count > 0 &&
        r.status().message().find("not stored") != std::string_view::npos) {
      // The stat cache named chunks the store no longer has (collected, or
      // another data directory): read everything again.
      // The cache is wrong for this store: drop it (the next add fills it).
      retried_without_cache = true;
      std::remove(cache_file.c_str());
      cache_saved = false;
      ASSIGN_OR_RETURN(files, ingest(false));
      continue;
    }
    return r.status();
  }
  if (!cache_saved) {
    std::remove(last_add_file.c_str());
  } else {
    std::ofstream out(last_add_file + ".tmp", std::ios::trunc);
    out << Json({{"fingerprint", fingerprint}, {"files", file_count}, {"commit", JsonStr(result.first, "id")}}).dump();
    out.close();
    if (!out || std::rename((last_add_file + ".tmp").c_str(), last_add_file.c_str()) != 0) {
      std::remove(last_add_file.c_str());
    }
  }

  const Json& c = result.first;
  const double seconds = Seconds(start);
  if (g.json) {
    std::printf("%s\n", Json({{"dataset", name},
                              {"branch", o.branch},
                              {"commit", JsonStr(c, "id")},
                              {"created", result.second},
                              {"files", file_count},
                              {"bytes", total_bytes},
                              {"stored_bytes", backend->stored_bytes()},
                              {"files_cached", files_cached},
                              {"seconds", seconds}})
                            .dump()
                            .c_str());
  } else if (result.second) {
    std::printf("committed %s to %s/%s: %s files, %s (%s newly stored) in %.1f s\n", Short(JsonStr(c, "id")).c_str(),
                name.c_str(), o.branch.c_str(), std::to_string(JsonInt(c, "file_count")).c_str(),
                FormatBytes(static_cast<uint64_t>(JsonInt(c, "total_bytes"))).c_str(),
                FormatBytes(backend->stored_bytes()).c_str(), seconds);
  } else {
    std::printf("nothing changed: %s/%s is at %s (%.1f s)\n", name.c_str(), o.branch.c_str(),
                Short(JsonStr(c, "id")).c_str(), seconds);
  }
  return absl::OkStatus();
}

void PrintCommit(const Json& c) {
  std::printf("commit   %s\n", JsonStr(c, "id").c_str());
  std::printf("dataset  %s\n", JsonStr(c, "dataset").c_str());
  for (const Json& p : c.value("parents", Json::array())) std::printf("parent   %s\n", FormatValue(p).c_str());
  std::printf("author   %s\n", JsonStr(c, "author").c_str());
  std::printf("date     %s\n", FormatTime(JsonInt(c, "created_at")).c_str());
  std::printf("files    %lld (%s)\n", static_cast<long long>(JsonInt(c, "file_count")),
              FormatBytes(static_cast<uint64_t>(JsonInt(c, "total_bytes"))).c_str());
  std::printf("\n    %s\n", JsonStr(c, "message").c_str());
}

absl::Status DataShow(Transport& t, const GlobalOptions& g, const Target& target) {
  Json r;
  if (target.ref.empty() && target.dataset.size() == 64 &&
      target.dataset.find_first_not_of("0123456789abcdef") == std::string::npos) {
    ASSIGN_OR_RETURN(r, t.Get("/api/cairn/v1/commits/" + target.dataset));
  } else {
    ASSIGN_OR_RETURN(r, t.Get(DatasetPath(target.dataset) + "/commits/" +
                              http::UrlEncode(target.ref.empty() ? "main" : target.ref)));
  }
  if (g.json) {
    PrintJson(r);
    return absl::OkStatus();
  }
  const Json& c = r["commit"];
  PrintCommit(c);
  const Json& splits = c["splits"];
  if (splits.is_array() && !splits.empty()) {
    std::printf("\nsplits\n");
    Table table({"SPLIT", "FILES", "BYTES", "SEALED", "GLOBS"});
    for (const Json& s : splits) {
      std::string globs;
      for (const Json& gl : s.value("globs", Json::array())) globs += (globs.empty() ? "" : " ") + FormatValue(gl);
      table.AddRow({JsonStr(s, "name"), std::to_string(JsonInt(s, "files")),
                    FormatBytes(static_cast<uint64_t>(JsonInt(s, "bytes"))), s.value("sealed", false) ? "yes" : "no",
                    globs});
    }
    std::printf("%s", table.Render().c_str());
  }
  const Json& profiles = r["profiles"];
  if (profiles.is_object() && !profiles.empty()) {
    for (const auto& [path, p] : profiles.items()) {
      std::printf("\nprofile of %s", path.c_str());
      if (p.contains("error")) {
        std::printf(": not profiled (%s)\n", JsonStr(p, "error").c_str());
        continue;
      }
      std::printf(" (%s, %lld rows)\n", JsonStr(p, "format").c_str(), static_cast<long long>(JsonInt(p, "rows")));
      Table table({"COLUMN", "TYPE", "COUNT", "MISSING", "MIN", "MAX", "MEAN", "STD", "TOP"});
      for (const Json& col : p.value("columns", Json::array())) {
        std::string top;
        for (const Json& tv : col.value("top_values", Json::array())) {
          if (top.size() > 40) break;
          top += (top.empty() ? "" : ", ") + FormatValue(tv.value("value", Json())) + "×" +
                 std::to_string(JsonInt(tv, "count"));
        }
        auto num = [&](const char* k) { return col.contains(k) && !col[k].is_null() ? FormatValue(col[k]) : ""; };
        table.AddRow({JsonStr(col, "name"), JsonStr(col, "type"), std::to_string(JsonInt(col, "count")),
                      std::to_string(JsonInt(col, "missing")), num("min"), num("max"), num("mean"), num("std"), top});
      }
      std::printf("%s", table.Render().c_str());
    }
  }
  const Json& runs = r["runs"];
  std::printf("\nruns that used this commit: %zu\n", runs.is_array() ? runs.size() : 0);
  if (runs.is_array() && !runs.empty()) {
    Table table({"RUN", "EXPERIMENT", "INPUT", "CONTEXT"});
    for (const Json& u : runs) {
      table.AddRow({JsonStr(u, "run_id"), JsonStr(u, "experiment_id"), JsonStr(u, "dataset"), JsonStr(u, "context")});
    }
    std::printf("%s", table.Render().c_str());
  }
  return absl::OkStatus();
}

// Writes every file of a commit (or of one split) under `dir`, verifying each
// chunk's digest as it arrives.
absl::Status DataCheckout(Transport& t, const GlobalOptions& g, const Target& target, const std::string& dir,
                          const std::string& split, bool force) {
  const std::string ref = target.ref.empty() ? "main" : target.ref;
  const std::string base = DatasetPath(target.dataset);
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_empty(dir, ec) && !force) {
    return absl::FailedPreconditionError(fmt::format("{} exists and is not empty (use --force to write into it)", dir));
  }
  ASSIGN_OR_RETURN(Json commit, t.Get(base + "/commits/" + http::UrlEncode(ref)));
  const std::string commit_id = JsonStr(commit["commit"], "id");
  std::string text;
  RETURN_IF_ERROR(t.Download(base + "/manifest/" + commit_id, [&](std::string_view b) {
    text.append(b);
    return absl::OkStatus();
  }));
  ASSIGN_OR_RETURN(data::DatasetManifest m, data::DatasetManifest::Parse(text));
  if (Sha256::Of(text).ToHex() != JsonStr(commit["commit"], "manifest")) {
    return absl::DataLossError("the manifest received does not match the commit's manifest digest");
  }
  absl::flat_hash_set<std::string> wanted;
  if (!split.empty()) {
    ASSIGN_OR_RETURN(Json tree, t.Get(base + "/tree/" + commit_id + "?split=" + http::UrlEncode(split)));
    for (const Json& f : tree.value("files", Json::array())) wanted.insert(JsonStr(f, "path"));
  }
  uint64_t files = 0, bytes = 0;
  data::IngestProgress progress{};
  for (const data::ManifestFile& f : m.files) {
    if (!split.empty() && !wanted.contains(f.path)) continue;
    ++progress.files_total;
    progress.bytes_total += f.size;
  }
  ProgressLine line(!g.json && ::isatty(STDERR_FILENO));
  auto last_shown = std::chrono::steady_clock::now();
  auto show = [&](bool force) {
    if (force || std::chrono::steady_clock::now() - last_shown > std::chrono::milliseconds(200)) {
      line.Update(progress);
      last_shown = std::chrono::steady_clock::now();
    }
  };
  for (const data::ManifestFile& f : m.files) {
    if (!split.empty() && !wanted.contains(f.path)) continue;
    const std::string out = dir + "/" + f.path;  // paths are validated by Parse: no "..", no absolute paths
    std::filesystem::create_directories(std::filesystem::path(out).parent_path(), ec);
    if (ec) return absl::PermissionDeniedError(fmt::format("cannot create the directory of {}: {}", out, ec.message()));
    const std::string part = out + ".cairn-part";
    std::FILE* fp = std::fopen(part.c_str(), "wb");
    if (fp == nullptr) return absl::PermissionDeniedError(fmt::format("cannot write {}", part));
    size_t chunk = 0;
    uint64_t in_chunk = 0;
    Sha256 hasher;
    absl::Status s = t.Download(
        base + "/files/" + commit_id + "/" + http::UrlEncodePath(f.path), [&](std::string_view b) -> absl::Status {
          if (std::fwrite(b.data(), 1, b.size(), fp) != b.size()) return absl::ResourceExhaustedError("write failed");
          progress.bytes_done += b.size();
          show(false);
          while (!b.empty()) {
            if (chunk >= f.chunks.size()) return absl::DataLossError(fmt::format("{}: more bytes than expected", f.path));
            const size_t take = static_cast<size_t>(std::min<uint64_t>(b.size(), f.chunks[chunk].size - in_chunk));
            hasher.Update(b.substr(0, take));
            in_chunk += take;
            b.remove_prefix(take);
            if (in_chunk == f.chunks[chunk].size) {
              if (hasher.Finish() != f.chunks[chunk].digest) {
                return absl::DataLossError(fmt::format("{}: chunk {} does not match its digest", f.path, chunk));
              }
              ++chunk;
              in_chunk = 0;
            }
          }
          return absl::OkStatus();
        });
    if (s.ok() && chunk != f.chunks.size()) s = absl::DataLossError(fmt::format("{}: fewer bytes than expected", f.path));
    if (std::fclose(fp) != 0 && s.ok()) s = absl::ResourceExhaustedError(fmt::format("writing {} failed", part));
    if (!s.ok()) {
      std::remove(part.c_str());
      return s;
    }
    ::chmod(part.c_str(), f.mode & 07777);
    if (std::rename(part.c_str(), out.c_str()) != 0) {
      return absl::PermissionDeniedError(fmt::format("cannot rename {} to {}", part, out));
    }
    ++files;
    bytes += f.size;
    ++progress.files_done;
    show(false);
  }
  show(true);
  line.Done();
  if (g.json) {
    PrintJson({{"commit", commit_id}, {"directory", dir}, {"files", files}, {"bytes", bytes}});
  } else {
    std::printf("checked out %s of %s into %s: %llu files, %s (verified)\n", Short(commit_id).c_str(),
                target.dataset.c_str(), dir.c_str(), static_cast<unsigned long long>(files), FormatBytes(bytes).c_str());
  }
  return absl::OkStatus();
}

std::string CurrentUser() {
  std::string user = EnvOr("USER", "");
  if (user.empty()) {
    if (const struct passwd* pw = ::getpwuid(::geteuid())) user = pw->pw_name;
  }
  return user;
}

absl::StatusOr<int64_t> ParseDurationSeconds(const std::string& s) {
  if (s.empty()) return absl::InvalidArgumentError("empty duration");
  size_t pos = 0;
  int64_t v = 0;
  try {
    v = std::stoll(s, &pos);
  } catch (...) {
    return absl::InvalidArgumentError(fmt::format("malformed duration '{}' (e.g. 30m, 2h, 1d)", s));
  }
  const std::string unit = s.substr(pos);
  const int64_t mult = unit.empty() || unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600 : unit == "d" ? 86400 : -1;
  if (mult < 0 || v < 0) return absl::InvalidArgumentError(fmt::format("malformed duration '{}' (e.g. 30m, 2h, 1d)", s));
  return v * mult;
}

}  // namespace

void AddDataCommands(CLI::App& app, GlobalOptions& g, int& exit_code) {
  auto with_transport = [&g, &exit_code](const std::function<absl::Status(Transport&)>& fn) {
    WithTransport(g, exit_code, fn);
  };

  auto* data = app.add_subcommand("data", "Versioned datasets: add files, browse commits, check out");
  data->require_subcommand(1);

  // Option storage lives as long as the app (callbacks run during parse).
  struct State {
    std::string name, target, other, path, dir, split, description, kind_name, from;
    bool encrypted = false, force = false;
    int limit = 20;
    uint64_t offset = 0, length = UINT64_MAX;
    AddOptions add;
    std::string grace = "1h";
    bool dry_run = false;
  };
  auto st = std::make_shared<State>();

  auto* list = data->add_subcommand("list", "List datasets");
  list->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      ASSIGN_OR_RETURN(Json r, t.Get(kDatasets));
      if (g.json) {
        PrintJson(r["datasets"]);
        return absl::OkStatus();
      }
      Table table({"NAME", "FILES", "SIZE", "HEAD", "ENCRYPTED", "CREATED"});
      for (const Json& d : r.value("datasets", Json::array())) {
        table.AddRow({JsonStr(d, "name"), d.contains("file_count") ? std::to_string(JsonInt(d, "file_count")) : "-",
                      d.contains("total_bytes") ? FormatBytes(static_cast<uint64_t>(JsonInt(d, "total_bytes"))) : "-",
                      Short(JsonStr(d, "head")), d.value("encrypted", false) ? "yes" : "no",
                      FormatTime(JsonInt(d, "created_at"))});
      }
      std::printf("%s", table.Render().c_str());
      return absl::OkStatus();
    });
  });

  auto* create = data->add_subcommand("create", "Create a dataset");
  create->add_option("NAME", st->name, "dataset name (letters, digits, '_', '.', '-')")->required();
  create->add_flag("--encrypted", st->encrypted, "encrypt its chunks and manifests at rest (AES-256-GCM)");
  create->add_option("-d,--description", st->description, "what the data is");
  create->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      ASSIGN_OR_RETURN(Json r, t.Post(kDatasets, {{"name", st->name},
                                                  {"encrypted", st->encrypted},
                                                  {"description", st->description}}));
      if (g.json) {
        PrintJson(r["dataset"]);
      } else {
        std::printf("created dataset '%s'%s\n", st->name.c_str(), st->encrypted ? " (encrypted)" : "");
      }
      return absl::OkStatus();
    });
  });

  auto* add = data->add_subcommand(
      "add", "Add files or directories (a directory adds its contents) and commit them to a branch");
  add->add_option("NAME", st->name, "dataset")->required();
  add->add_option("PATH", st->add.paths, "files or directories")->required();
  add->add_option("-m,--message", st->add.message, "commit message");
  add->add_option("--author", st->add.author, "commit author (default: $USER)");
  add->add_option("-b,--branch", st->add.branch, "branch to commit to")->capture_default_str();
  add->add_option("--split", st->add.split_args, "declare a split: NAME=GLOB (repeatable), e.g. test=test/**");
  add->add_option("--seal", st->add.seal, "seal a split (only evaluation steps may read it; cannot be undone)");
  add->add_option("--include", st->add.include, "only add dataset paths matching this glob (repeatable)");
  add->add_option("--exclude", st->add.exclude, "skip dataset paths matching this glob (repeatable)");
  add->add_option("--prefix", st->add.prefix, "put the files under this directory of the dataset");
  add->add_flag("--replace", st->add.replace, "the commit holds exactly these files (others are removed)");
  add->add_flag("--no-progress", st->add.no_progress, "no progress line on stderr");
  add->callback([=, &g] {
    if (st->add.author.empty()) st->add.author = CurrentUser();
    with_transport([&](Transport& t) { return DataAdd(t, g, st->name, st->add); });
  });

  auto* log = data->add_subcommand("log", "Show a branch's history (NAME[@REF])");
  log->add_option("TARGET", st->target, "NAME or NAME@REF")->required();
  log->add_option("-n,--limit", st->limit, "at most this many commits")->capture_default_str();
  log->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      Target tg = ParseTarget(st->target);
      ASSIGN_OR_RETURN(Json r, t.Get(fmt::format("{}/commits?ref={}&limit={}", DatasetPath(tg.dataset),
                                                 http::UrlEncode(tg.ref.empty() ? "main" : tg.ref), st->limit)));
      if (g.json) {
        PrintJson(r["commits"]);
        return absl::OkStatus();
      }
      Table table({"COMMIT", "DATE", "AUTHOR", "FILES", "SIZE", "MESSAGE"});
      for (const Json& c : r.value("commits", Json::array())) {
        table.AddRow({Short(JsonStr(c, "id")), FormatTime(JsonInt(c, "created_at")), JsonStr(c, "author"),
                      std::to_string(JsonInt(c, "file_count")),
                      FormatBytes(static_cast<uint64_t>(JsonInt(c, "total_bytes"))), JsonStr(c, "message")});
      }
      std::printf("%s", table.Render().c_str());
      return absl::OkStatus();
    });
  });

  auto* show = data->add_subcommand("show", "Show a commit: splits, profiles, and the runs that used it");
  show->add_option("TARGET", st->target, "NAME, NAME@REF, or a full commit id")->required();
  show->callback([=, &g] { with_transport([&](Transport& t) { return DataShow(t, g, ParseTarget(st->target)); }); });

  auto* diff = data->add_subcommand("diff", "Files added, removed and modified between two commits");
  diff->add_option("NAME", st->name, "dataset")->required();
  diff->add_option("FROM", st->target, "branch, tag or commit")->required();
  diff->add_option("TO", st->other, "branch, tag or commit")->required();
  diff->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      ASSIGN_OR_RETURN(Json r, t.Get(fmt::format("{}/diff?from={}&to={}", DatasetPath(st->name),
                                                 http::UrlEncode(st->target), http::UrlEncode(st->other))));
      if (g.json) {
        PrintJson(r);
        return absl::OkStatus();
      }
      for (const Json& c : r.value("changes", Json::array())) {
        const std::string kind = JsonStr(c, "kind");
        const char mark = kind == "added" ? 'A' : kind == "removed" ? 'D' : 'M';
        std::string sizes = kind == "added"     ? FormatBytes(static_cast<uint64_t>(JsonInt(c, "new_size")))
                            : kind == "removed" ? FormatBytes(static_cast<uint64_t>(JsonInt(c, "old_size")))
                                                : FormatBytes(static_cast<uint64_t>(JsonInt(c, "old_size"))) + " -> " +
                                                      FormatBytes(static_cast<uint64_t>(JsonInt(c, "new_size")));
        std::printf("%c  %s  (%s)\n", mark, JsonStr(c, "path").c_str(), sizes.c_str());
      }
      return absl::OkStatus();
    });
  });

  auto* ls = data->add_subcommand("ls", "List the files of a commit");
  ls->add_option("TARGET", st->target, "NAME or NAME@REF")->required();
  ls->add_option("PREFIX", st->path, "only paths starting with this");
  ls->add_option("--split", st->split, "only the files of this split");
  ls->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      Target tg = ParseTarget(st->target);
      std::string q = fmt::format("{}/tree/{}?prefix={}", DatasetPath(tg.dataset),
                                  http::UrlEncode(tg.ref.empty() ? "main" : tg.ref), http::UrlEncode(st->path));
      if (!st->split.empty()) q += "&split=" + http::UrlEncode(st->split);
      ASSIGN_OR_RETURN(Json r, t.Get(q));
      if (g.json) {
        PrintJson(r["files"]);
        return absl::OkStatus();
      }
      for (const Json& f : r.value("files", Json::array())) {
        std::printf("%04llo %10s  %s\n", static_cast<unsigned long long>(JsonInt(f, "mode")),
                    FormatBytes(static_cast<uint64_t>(JsonInt(f, "size"))).c_str(), JsonStr(f, "path").c_str());
      }
      return absl::OkStatus();
    });
  });

  auto* cat = data->add_subcommand("cat", "Write one file of a commit to stdout (or a byte range of it)");
  cat->add_option("TARGET", st->target, "NAME or NAME@REF")->required();
  cat->add_option("PATH", st->path, "file path in the dataset")->required();
  cat->add_option("--offset", st->offset, "first byte");
  cat->add_option("--length", st->length, "number of bytes");
  cat->callback([=] {
    with_transport([&](Transport& t) -> absl::Status {
      Target tg = ParseTarget(st->target);
      std::string q = fmt::format("{}/files/{}/{}?offset={}", DatasetPath(tg.dataset),
                                  http::UrlEncode(tg.ref.empty() ? "main" : tg.ref), http::UrlEncodePath(st->path),
                                  st->offset);
      if (st->length != UINT64_MAX) q += fmt::format("&length={}", st->length);
      return t.Download(q, [](std::string_view b) -> absl::Status {
        if (std::fwrite(b.data(), 1, b.size(), stdout) != b.size()) return absl::ResourceExhaustedError("write failed");
        return absl::OkStatus();
      });
    });
  });

  auto* checkout = data->add_subcommand("checkout", "Write a commit's files into a directory, verifying every chunk");
  checkout->add_option("TARGET", st->target, "NAME or NAME@REF")->required();
  checkout->add_option("DIR", st->dir, "directory to write (created; must be empty unless --force)")->required();
  checkout->add_option("--split", st->split, "only the files of this split");
  checkout->add_flag("--force", st->force, "write into a non-empty directory, replacing files");
  checkout->callback([=, &g] {
    with_transport([&](Transport& t) {
      return DataCheckout(t, g, ParseTarget(st->target), st->dir, st->split, st->force);
    });
  });

  // Branches and tags share one shape.
  for (const char* kind : {"branch", "tag"}) {
    const std::string k = kind;
    auto* cmd = data->add_subcommand(k, k == "branch" ? "List, create and delete branches"
                                                      : "List, create and delete tags (tags never move)");
    cmd->require_subcommand(1);
    auto* l = cmd->add_subcommand("list", "List them");
    l->add_option("NAME", st->name, "dataset")->required();
    l->callback([=, &g] {
      with_transport([&](Transport& t) -> absl::Status {
        ASSIGN_OR_RETURN(Json r, t.Get(DatasetPath(st->name) + "/refs"));
        Json out = Json::array();
        for (const Json& ref : r.value("refs", Json::array())) {
          if (JsonStr(ref, "kind") == k) out.push_back(ref);
        }
        if (g.json) {
          PrintJson(out);
          return absl::OkStatus();
        }
        Table table({k == "branch" ? "BRANCH" : "TAG", "COMMIT", "UPDATED"});
        for (const Json& ref : out) {
          table.AddRow({JsonStr(ref, "name"), Short(JsonStr(ref, "commit")), FormatTime(JsonInt(ref, "updated_at"))});
        }
        std::printf("%s", table.Render().c_str());
        return absl::OkStatus();
      });
    });
    auto* c = cmd->add_subcommand("create", "Create one at a commit");
    c->add_option("NAME", st->name, "dataset")->required();
    c->add_option(k == "branch" ? "BRANCH" : "TAG", st->kind_name, "its name")->required();
    c->add_option("REF", st->from, "branch, tag or commit to point at (default: main)");
    c->callback([=, &g] {
      with_transport([&](Transport& t) -> absl::Status {
        ASSIGN_OR_RETURN(Json r, t.Post(DatasetPath(st->name) + "/refs",
                                        {{"kind", k}, {"name", st->kind_name},
                                         {"target", st->from.empty() ? "main" : st->from}}));
        if (g.json) {
          PrintJson(r["ref"]);
        } else {
          std::printf("created %s '%s' at %s\n", k.c_str(), st->kind_name.c_str(), Short(JsonStr(r["ref"], "commit")).c_str());
        }
        return absl::OkStatus();
      });
    });
    auto* d = cmd->add_subcommand("delete", "Delete one (its commits stay)");
    d->add_option("NAME", st->name, "dataset")->required();
    d->add_option(k == "branch" ? "BRANCH" : "TAG", st->kind_name, "its name")->required();
    d->callback([=, &g] {
      with_transport([&](Transport& t) -> absl::Status {
        RETURN_IF_ERROR(t.Delete(DatasetPath(st->name) + "/refs/" + k + "/" + http::UrlEncode(st->kind_name)).status());
        if (!g.json) std::printf("deleted %s '%s'\n", k.c_str(), st->kind_name.c_str());
        return absl::OkStatus();
      });
    });
  }

  // ------------------------------------------------------------------ gc
  auto* gc = app.add_subcommand(
      "gc", "Delete objects nothing references (unreachable chunks, replaced artifacts); safe beside writers");
  gc->add_option("--grace", st->grace, "spare anything written or used more recently than this (>= 5m)")
      ->capture_default_str();
  gc->add_flag("--dry-run", st->dry_run, "report what would be freed, delete nothing");
  gc->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      ASSIGN_OR_RETURN(int64_t grace, ParseDurationSeconds(st->grace));
      ASSIGN_OR_RETURN(Json r, t.Post("/api/cairn/v1/gc", {{"grace_seconds", grace}, {"dry_run", st->dry_run}}));
      if (g.json) {
        PrintJson(r);
        return absl::OkStatus();
      }
      std::printf("%s %lld objects (%s) and %lld chunk index entries; kept %lld live chunks from %lld commits, "
                  "%lld recent objects; %s of dead chunks remain inside live packs\n",
                  st->dry_run ? "would free" : "freed", static_cast<long long>(JsonInt(r, "freed_objects")),
                  FormatBytes(static_cast<uint64_t>(JsonInt(r, "freed_bytes"))).c_str(),
                  static_cast<long long>(JsonInt(r, "freed_chunks")), static_cast<long long>(JsonInt(r, "live_chunks")),
                  static_cast<long long>(JsonInt(r, "commits")), static_cast<long long>(JsonInt(r, "young_objects")),
                  FormatBytes(static_cast<uint64_t>(JsonInt(r, "dead_bytes_in_live_packs"))).c_str());
      std::printf("%s %lld pipeline work folders (%s: unused inputs, code snapshots, job folders)\n",
                  st->dry_run ? "would remove" : "removed", static_cast<long long>(JsonInt(r, "work_dirs_removed")),
                  FormatBytes(static_cast<uint64_t>(JsonInt(r, "work_bytes_freed"))).c_str());
      return absl::OkStatus();
    });
  });

  // ---------------------------------------------------------------- keys
  auto* keys = app.add_subcommand("keys", "Manage the master keys that wrap encrypted datasets' keys");
  keys->require_subcommand(1);
  auto* rotate = keys->add_subcommand(
      "rotate", "New master key; re-wrap every dataset key with it; retire the old ones (data is not re-encrypted)");
  rotate->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      ASSIGN_OR_RETURN(Json r, t.Post("/api/cairn/v1/keys/rotate", Json::object()));
      if (g.json) {
        PrintJson(r);
      } else {
        std::printf("master key %lld is current; re-wrapped %lld dataset keys; retired keys %s\n",
                    static_cast<long long>(JsonInt(r, "current")), static_cast<long long>(JsonInt(r, "rewrapped")),
                    r.value("retired", Json::array()).dump().c_str());
      }
      return absl::OkStatus();
    });
  });
}

}  // namespace cairn::cli
