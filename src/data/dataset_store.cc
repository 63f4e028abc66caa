#include "data/dataset_store.h"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "base/ids.h"
#include "data/glob.h"
#include "data/internal/digest_blob.h"
#include "data/schema.h"

namespace cairn::data {
namespace {

int64_t NowMs(Env& env) { return env.NowMicros() / 1000; }

using internal::DigestBlob;

bool IsHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Json SplitsToJson(const std::vector<Split>& splits) {
  Json out = Json::array();
  for (const Split& s : splits) {
    out.push_back({{"name", s.name}, {"globs", s.globs}, {"sealed", s.sealed}, {"files", s.files}, {"bytes", s.bytes}});
  }
  return out;
}

absl::StatusOr<std::vector<Split>> SplitsFromJson(std::string_view text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) return absl::DataLossError("data_commits.splits is not a JSON array");
  std::vector<Split> out;
  for (const Json& e : j) {
    if (!e.is_object() || !e.contains("name") || !e["name"].is_string()) {
      return absl::DataLossError("data_commits.splits holds a malformed split");
    }
    Split s;
    s.name = e["name"].get<std::string>();
    if (e.contains("globs") && e["globs"].is_array()) {
      for (const Json& g : e["globs"]) {
        if (g.is_string()) s.globs.push_back(g.get<std::string>());
      }
    }
    s.sealed = e.value("sealed", false);
    s.files = e.value("files", uint64_t{0});
    s.bytes = e.value("bytes", uint64_t{0});
    out.push_back(std::move(s));
  }
  return out;
}

// The canonical commit text (docs/data-commits.md); its SHA-256 is the id.
std::string CommitText(const DatasetCommit& c) {
  std::string t = "cairn-commit 1\n";
  t += fmt::format("dataset {}\nmanifest {}\n", c.dataset_id, c.manifest.ToHex());
  for (const std::string& p : c.parents) t += fmt::format("parent {}\n", p);
  t += fmt::format("author {}\ntime {}\n", Json(c.author).dump(), c.created_at_ms);
  for (const Split& s : c.splits) {
    t += fmt::format("split {} {} {}\n", Json(s.name).dump(), s.sealed ? 1 : 0, Json(s.globs).dump());
  }
  t += fmt::format("message {}\n", Json(c.message).dump());
  return t;
}

constexpr char kCommitColumns[] =
    "id, dataset_id, manifest, parents, message, author, created_at, file_count, total_bytes, splits, seq";

absl::StatusOr<DatasetCommit> CommitFromRow(db::Statement& st, int64_t* seq = nullptr) {
  DatasetCommit c;
  c.id = std::string(st.ColumnText(0));
  c.dataset_id = std::string(st.ColumnText(1));
  std::optional<Digest> manifest = internal::DigestFromBlob(st.ColumnBlob(2));
  if (!manifest) return absl::DataLossError(fmt::format("commit {}: manifest digest is damaged", c.id));
  c.manifest = *manifest;
  const std::string parents(st.ColumnText(3));
  for (size_t pos = 0; pos < parents.size();) {
    size_t end = parents.find(' ', pos);
    if (end == std::string::npos) end = parents.size();
    if (end > pos) c.parents.push_back(parents.substr(pos, end - pos));
    pos = end + 1;
  }
  c.message = std::string(st.ColumnText(4));
  c.author = std::string(st.ColumnText(5));
  c.created_at_ms = st.ColumnInt(6);
  c.file_count = static_cast<uint64_t>(st.ColumnInt(7));
  c.total_bytes = static_cast<uint64_t>(st.ColumnInt(8));
  ASSIGN_OR_RETURN(c.splits, SplitsFromJson(st.ColumnText(9)));
  if (seq != nullptr) *seq = st.ColumnInt(10);
  return c;
}

Dataset DatasetFromRow(db::Statement& st) {
  return Dataset{.id = std::string(st.ColumnText(0)),
                 .project = std::string(st.ColumnText(1)),
                 .name = std::string(st.ColumnText(2)),
                 .description = std::string(st.ColumnText(3)),
                 .encrypted = st.ColumnInt(4) != 0,
                 .created_at_ms = st.ColumnInt(5)};
}
constexpr char kDatasetColumns[] = "id, project, name, description, encrypted, created_at";

absl::Status ValidateSplit(const Split& s) {
  RETURN_IF_ERROR(ValidateName("split", s.name));
  if (s.globs.empty()) return absl::InvalidArgumentError(fmt::format("split '{}' has no path glob", s.name));
  for (const std::string& g : s.globs) {
    absl::Status st = ValidateGlob(g);
    if (!st.ok()) return absl::InvalidArgumentError(fmt::format("split '{}': {}", s.name, st.message()));
  }
  return absl::OkStatus();
}

bool SameSplits(const std::vector<Split>& a, const std::vector<Split>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].globs != b[i].globs || a[i].sealed != b[i].sealed) return false;
  }
  return true;
}

}  // namespace

const Split* DatasetCommit::FindSplit(std::string_view name) const {
  for (const Split& s : splits) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::string_view FileChangeKindName(FileChange::Kind kind) {
  switch (kind) {
    case FileChange::Kind::kAdded:
      return "added";
    case FileChange::Kind::kRemoved:
      return "removed";
    case FileChange::Kind::kModified:
      return "modified";
  }
  return "?";
}

absl::Status ValidateName(std::string_view what, std::string_view name) {
  auto ok_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
  };
  if (name.empty() || name.size() > 128 || name[0] == '.' || name[0] == '-' ||
      !std::all_of(name.begin(), name.end(), ok_char)) {
    return absl::InvalidArgumentError(
        fmt::format("invalid {} name '{}': use 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
                    what, name));
  }
  return absl::OkStatus();
}

std::vector<FileChange> DiffManifests(const DatasetManifest& from, const DatasetManifest& to) {
  std::vector<FileChange> out;
  size_t i = 0, j = 0;
  while (i < from.files.size() || j < to.files.size()) {
    if (j == to.files.size() || (i < from.files.size() && from.files[i].path < to.files[j].path)) {
      out.push_back({FileChange::Kind::kRemoved, from.files[i].path, from.files[i].size, 0});
      ++i;
    } else if (i == from.files.size() || to.files[j].path < from.files[i].path) {
      out.push_back({FileChange::Kind::kAdded, to.files[j].path, 0, to.files[j].size});
      ++j;
    } else {
      const ManifestFile& a = from.files[i];
      const ManifestFile& b = to.files[j];
      bool same = a.size == b.size && a.mode == b.mode && a.chunks.size() == b.chunks.size();
      for (size_t k = 0; same && k < a.chunks.size(); ++k) same = a.chunks[k].digest == b.chunks[k].digest;
      if (!same) out.push_back({FileChange::Kind::kModified, a.path, a.size, b.size});
      ++i;
      ++j;
    }
  }
  return out;
}

std::vector<const ManifestFile*> SplitFiles(const DatasetManifest& manifest, const Split& split) {
  std::vector<const ManifestFile*> out;
  for (const ManifestFile& f : manifest.files) {
    for (const std::string& g : split.globs) {
      if (MatchGlob(g, f.path)) {
        out.push_back(&f);
        break;
      }
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<DatasetStore>> DatasetStore::Create(db::Database& db, ChunkStore& chunks,
                                                                   const store::KeyRing* keys, Env& env) {
  RETURN_IF_ERROR(db.Migrate("data", DataMigrations()));
  ASSIGN_OR_RETURN(auto pool, db::ConnectionPool::Create(db, 4));
  return std::unique_ptr<DatasetStore>(new DatasetStore(chunks, keys, env, std::move(pool)));
}

DatasetStore::~DatasetStore() = default;

absl::StatusOr<Dataset> DatasetStore::CreateDataset(std::string_view project, std::string_view name,
                                                    std::string_view description, bool encrypted) {
  RETURN_IF_ERROR(ValidateName("project", project));
  RETURN_IF_ERROR(ValidateName("dataset", name));
  if (description.size() > 5000) return absl::InvalidArgumentError("dataset description is over 5000 characters");
  std::string wrapped;
  if (encrypted) {
    if (keys_ == nullptr) {
      return absl::FailedPreconditionError("encrypted datasets need the server's key ring (keys/), which is not open");
    }
    ASSIGN_OR_RETURN(wrapped, keys_->Wrap(store::DataKey::Generate()));
  }
  Dataset ds{.id = NewRandomHex(16),
             .project = std::string(project),
             .name = std::string(name),
             .description = std::string(description),
             .encrypted = encrypted,
             .created_at_ms = NowMs(env_)};
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn->Cached("INSERT INTO data_datasets (id, project, name, description, encrypted, wrapped_key, "
                                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"));
  st->BindText(1, ds.id);
  st->BindText(2, ds.project);
  st->BindText(3, ds.name);
  st->BindText(4, ds.description);
  st->BindInt(5, encrypted ? 1 : 0);
  if (encrypted) {
    st->BindBlob(6, wrapped);
  } else {
    st->BindNull(6);
  }
  st->BindInt(7, ds.created_at_ms);
  absl::Status s = st->Run();
  if (absl::IsAlreadyExists(s)) {
    return absl::AlreadyExistsError(fmt::format("dataset '{}' already exists in project '{}'", name, project));
  }
  RETURN_IF_ERROR(s);
  return ds;
}

absl::StatusOr<Dataset> DatasetStore::GetDataset(std::string_view project, std::string_view name) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn->Cached(fmt::format("SELECT {} FROM data_datasets WHERE project = ? AND name = ?",
                                            kDatasetColumns)));
  st->BindText(1, project);
  st->BindText(2, name);
  ASSIGN_OR_RETURN(bool found, st->Step());
  if (!found) return absl::NotFoundError(fmt::format("no dataset '{}' in project '{}'", name, project));
  Dataset ds = DatasetFromRow(*st);
  st->Reset();
  return ds;
}

absl::StatusOr<Dataset> DatasetStore::GetDatasetById(std::string_view id) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn->Cached(fmt::format("SELECT {} FROM data_datasets WHERE id = ?", kDatasetColumns)));
  st->BindText(1, id);
  ASSIGN_OR_RETURN(bool found, st->Step());
  if (!found) return absl::NotFoundError(fmt::format("no dataset with id {}", id));
  Dataset ds = DatasetFromRow(*st);
  st->Reset();
  return ds;
}

absl::StatusOr<std::vector<Dataset>> DatasetStore::ListDatasets(std::string_view project) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn->Cached(fmt::format("SELECT {} FROM data_datasets WHERE project = ? ORDER BY name",
                                            kDatasetColumns)));
  st->BindText(1, project);
  std::vector<Dataset> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back(DatasetFromRow(*st));
  }
  st->Reset();
  return out;
}

absl::StatusOr<const store::DataKey*> DatasetStore::KeyOf(const Dataset& ds) {
  {
    absl::MutexLock lock(&keys_mu_);
    auto it = data_keys_.find(ds.id);
    if (it != data_keys_.end()) return it->second.get();
  }
  if (keys_ == nullptr) {
    return absl::FailedPreconditionError(
        fmt::format("dataset '{}' is encrypted and the server's key ring (keys/) is not open", ds.name));
  }
  std::string wrapped;
  {
    ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
    ASSIGN_OR_RETURN(db::Statement * st, conn->Cached("SELECT wrapped_key FROM data_datasets WHERE id = ?"));
    st->BindText(1, ds.id);
    ASSIGN_OR_RETURN(bool found, st->Step());
    if (!found || st->IsNull(0)) {
      st->Reset();
      return absl::DataLossError(fmt::format("dataset '{}' is encrypted but has no data key", ds.name));
    }
    wrapped = std::string(st->ColumnBlob(0));
    st->Reset();
  }
  ASSIGN_OR_RETURN(store::DataKey key, keys_->Unwrap(wrapped));
  absl::MutexLock lock(&keys_mu_);
  auto [it, inserted] = data_keys_.try_emplace(ds.id, std::make_unique<store::DataKey>(std::move(key)));
  return it->second.get();
}

absl::StatusOr<ChunkScope> DatasetStore::ScopeOf(const Dataset& ds) {
  if (!ds.encrypted) return ChunkScope{};
  ASSIGN_OR_RETURN(const store::DataKey* key, KeyOf(ds));
  return ChunkScope{.id = ds.id, .key = key};
}

absl::StatusOr<Digest> DatasetStore::PutManifest(const Dataset& ds, const DatasetManifest& manifest) {
  return PutManifestText(ds, manifest.Serialize());
}

absl::StatusOr<Digest> DatasetStore::PutManifestText(const Dataset& ds, std::string_view text) {
  ASSIGN_OR_RETURN(ChunkScope scope, ScopeOf(ds));
  const Digest digest = Sha256::Of(text);
  ASSIGN_OR_RETURN(auto batch, chunks_.NewBatch(scope, /*verify=*/false));
  RETURN_IF_ERROR(batch->Add(digest, text));
  RETURN_IF_ERROR(batch->Commit());
  return digest;
}

absl::StatusOr<DatasetManifest> DatasetStore::GetManifest(const Dataset& ds, const Digest& digest) {
  ASSIGN_OR_RETURN(ChunkScope scope, ScopeOf(ds));
  absl::StatusOr<std::string> text = chunks_.Read(scope, digest);
  if (absl::IsNotFound(text.status())) {
    return absl::NotFoundError(fmt::format("manifest {} is not stored in dataset '{}'", digest.ToHex(), ds.name));
  }
  RETURN_IF_ERROR(text.status());
  absl::StatusOr<DatasetManifest> m = DatasetManifest::Parse(*text);
  if (!m.ok()) return absl::InvalidArgumentError(fmt::format("manifest {}: {}", digest.ToHex(), m.status().message()));
  return m;
}

absl::StatusOr<std::optional<DatasetCommit>> DatasetStore::FindCommit(db::Connection& conn, std::string_view id) {
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn.Cached(fmt::format("SELECT {} FROM data_commits WHERE id = ?", kCommitColumns)));
  st->BindText(1, id);
  ASSIGN_OR_RETURN(bool found, st->Step());
  if (!found) return std::optional<DatasetCommit>();
  absl::StatusOr<DatasetCommit> c = CommitFromRow(*st);
  st->Reset();
  RETURN_IF_ERROR(c.status());
  return std::optional<DatasetCommit>(std::move(*c));
}

absl::StatusOr<DatasetCommit> DatasetStore::GetCommit(std::string_view commit_id) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(std::optional<DatasetCommit> c, FindCommit(*conn, commit_id));
  if (!c) return absl::NotFoundError(fmt::format("no dataset commit {}", commit_id));
  return *c;
}

absl::StatusOr<DatasetCommit> DatasetStore::ResolveIn(db::Connection& conn, const Dataset& ds, std::string_view ref) {
  if (ref.empty()) return absl::InvalidArgumentError("empty dataset reference");
  // REF~N: the Nth first-parent ancestor (REF~ is REF~1).
  if (size_t tilde = ref.rfind('~'); tilde != std::string_view::npos) {
    std::string_view n_text = ref.substr(tilde + 1);
    int n = 1;
    if (!n_text.empty()) {
      auto [p, ec] = std::from_chars(n_text.data(), n_text.data() + n_text.size(), n);
      if (ec != std::errc() || p != n_text.data() + n_text.size() || n < 0 || n > 1000000) {
        return absl::InvalidArgumentError(fmt::format("malformed reference '{}': use REF~N", ref));
      }
    }
    ASSIGN_OR_RETURN(DatasetCommit c, ResolveIn(conn, ds, ref.substr(0, tilde)));
    for (int i = 0; i < n; ++i) {
      if (c.parents.empty()) return absl::NotFoundError(fmt::format("'{}' goes past the first commit", ref));
      ASSIGN_OR_RETURN(std::optional<DatasetCommit> p, FindCommit(conn, c.parents[0]));
      if (!p) return absl::DataLossError(fmt::format("commit {} names missing parent {}", c.id, c.parents[0]));
      c = std::move(*p);
    }
    return c;
  }
  // Branches first, then tags: a ref name that is also hex is still a name.
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn.Cached("SELECT commit_id FROM data_refs WHERE dataset_id = ? AND kind = ? AND name = ?"));
  for (const char* kind : {"branch", "tag"}) {
    st->BindText(1, ds.id);
    st->BindText(2, kind);
    st->BindText(3, ref);
    ASSIGN_OR_RETURN(bool found, st->Step());
    if (found) {
      std::string id(st->ColumnText(0));
      st->Reset();
      ASSIGN_OR_RETURN(std::optional<DatasetCommit> c, FindCommit(conn, id));
      if (!c) return absl::DataLossError(fmt::format("{} '{}' points at missing commit {}", kind, ref, id));
      return *c;
    }
    st->Reset();
  }
  if (ref.size() >= 6 && ref.size() <= 64 && IsHex(ref)) {
    ASSIGN_OR_RETURN(db::Statement * q,
                     conn.Cached(fmt::format("SELECT {} FROM data_commits WHERE dataset_id = ? AND id >= ? AND id < ? "
                                             "ORDER BY id LIMIT 2",
                                             kCommitColumns)));
    std::string hi(ref);
    hi.push_back('g');  // sorts after every hex continuation
    q->BindText(1, ds.id);
    q->BindText(2, ref);
    q->BindText(3, hi);
    std::vector<DatasetCommit> found;
    for (;;) {
      ASSIGN_OR_RETURN(bool row, q->Step());
      if (!row) break;
      absl::StatusOr<DatasetCommit> c = CommitFromRow(*q);
      if (!c.ok()) {
        q->Reset();
        return c.status();
      }
      found.push_back(std::move(*c));
    }
    q->Reset();
    if (found.size() == 1) return found[0];
    if (found.size() > 1) {
      return absl::InvalidArgumentError(fmt::format("'{}' is ambiguous in dataset '{}': use more characters", ref, ds.name));
    }
  }
  return absl::NotFoundError(fmt::format("no branch, tag or commit '{}' in dataset '{}'", ref, ds.name));
}

absl::StatusOr<DatasetCommit> DatasetStore::Resolve(const Dataset& ds, std::string_view ref) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  return ResolveIn(*conn, ds, ref);
}

absl::StatusOr<std::optional<DatasetCommit>> DatasetStore::Head(const Dataset& ds, std::string_view branch) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn->Cached("SELECT commit_id FROM data_refs WHERE dataset_id = ? AND kind = 'branch' AND name = ?"));
  st->BindText(1, ds.id);
  st->BindText(2, branch);
  ASSIGN_OR_RETURN(bool found, st->Step());
  if (!found) return std::optional<DatasetCommit>();
  std::string id(st->ColumnText(0));
  st->Reset();
  ASSIGN_OR_RETURN(std::optional<DatasetCommit> c, FindCommit(*conn, id));
  if (!c) return absl::DataLossError(fmt::format("branch '{}' points at missing commit {}", branch, id));
  return c;
}

absl::StatusOr<CommitResult> DatasetStore::Commit(const Dataset& ds, const NewCommit& request) {
  RETURN_IF_ERROR(ValidateName("branch", request.branch));
  if (request.message.size() > 65536) return absl::InvalidArgumentError("commit message is over 64 KiB");
  if (request.author.size() > 1024) return absl::InvalidArgumentError("commit author is over 1024 characters");
  ASSIGN_OR_RETURN(ChunkScope scope, ScopeOf(ds));
  ASSIGN_OR_RETURN(std::optional<DatasetCommit> parent, Head(ds, request.branch));
  const std::string head_id = parent ? parent->id : "";
  if (head_id != request.expected_head) {
    return absl::AbortedError(fmt::format("branch '{}' of dataset '{}' moved: expected {}, it is at {}; retry",
                                          request.branch, ds.name,
                                          request.expected_head.empty() ? "no commit" : request.expected_head,
                                          head_id.empty() ? "no commit" : head_id));
  }
  // The caller's copies, when it passed them, save a read and a parse each.
  DatasetManifest owned_manifest, owned_parent;
  const DatasetManifest* manifest_ptr = request.manifest_hint;
  if (manifest_ptr == nullptr) {
    ASSIGN_OR_RETURN(owned_manifest, GetManifest(ds, request.manifest));
    manifest_ptr = &owned_manifest;
  } else {
    // The manifest must still be stored: checked with the chunks below.
  }
  const DatasetManifest* parent_ptr = &owned_parent;
  if (parent) {
    if (request.parent_manifest_hint != nullptr) {
      parent_ptr = request.parent_manifest_hint;
    } else if (parent->manifest == request.manifest) {
      parent_ptr = manifest_ptr;
    } else {
      ASSIGN_OR_RETURN(owned_parent, GetManifest(ds, parent->manifest));
    }
  }
  const DatasetManifest& manifest = *manifest_ptr;
  const DatasetManifest& parent_manifest = *parent_ptr;

  // Splits: the request's, or the parent's; sealing is sticky.
  std::vector<Split> splits = request.splits ? *request.splits : (parent ? parent->splits : std::vector<Split>{});
  {
    absl::flat_hash_set<std::string> names;
    for (Split& s : splits) {
      RETURN_IF_ERROR(ValidateSplit(s));
      if (!names.insert(s.name).second) return absl::InvalidArgumentError(fmt::format("split '{}' is declared twice", s.name));
      if (parent) {
        if (const Split* old = parent->FindSplit(s.name); old != nullptr && old->sealed) s.sealed = true;
      }
    }
    for (const std::string& name : request.seal) {
      auto it = std::find_if(splits.begin(), splits.end(), [&](const Split& s) { return s.name == name; });
      if (it == splits.end()) {
        return absl::InvalidArgumentError(fmt::format("cannot seal split '{}': the commit declares no such split", name));
      }
      it->sealed = true;
    }
    if (parent) {
      for (const Split& old : parent->splits) {
        if (old.sealed && !names.contains(old.name)) {
          return absl::FailedPreconditionError(
              fmt::format("split '{}' is sealed: a commit on this branch must keep declaring it", old.name));
        }
      }
    }
    std::sort(splits.begin(), splits.end(), [](const Split& a, const Split& b) { return a.name < b.name; });
    // Disjoint: a file in two splits would let training see test data.
    absl::flat_hash_map<std::string, std::string> owner;
    for (Split& s : splits) {
      s.files = 0;
      s.bytes = 0;
      for (const ManifestFile* f : SplitFiles(manifest, s)) {
        auto [it, inserted] = owner.try_emplace(f->path, s.name);
        if (!inserted) {
          return absl::InvalidArgumentError(
              fmt::format("file '{}' is in both split '{}' and split '{}': splits must not overlap", f->path,
                          it->second, s.name));
        }
        ++s.files;
        s.bytes += f->size;
      }
      if (s.files == 0) {
        return absl::InvalidArgumentError(fmt::format("split '{}' matches no file of the commit", s.name));
      }
    }
  }

  if (parent && parent->manifest == request.manifest && SameSplits(parent->splits, splits)) {
    return CommitResult{.commit = *parent, .created = false};
  }

  // Every chunk the parent does not hold must be stored (the parent's are
  // reachable, hence safe from garbage collection). Checked inside the
  // commit's transaction, which garbage collection's sweep is serialized
  // with.
  std::vector<Digest> fresh;
  {
    absl::flat_hash_set<Digest> old_chunks;
    for (const ManifestFile& f : parent_manifest.files) {
      for (const ChunkRef& c : f.chunks) old_chunks.insert(c.digest);
    }
    absl::flat_hash_set<Digest> seen;
    if (!parent || parent->manifest != request.manifest) fresh.push_back(request.manifest);
    for (const ManifestFile& f : manifest.files) {
      for (const ChunkRef& c : f.chunks) {
        if (!old_chunks.contains(c.digest) && seen.insert(c.digest).second) fresh.push_back(c.digest);
      }
    }
  }

  // Profiles: computed for new or changed files, carried over otherwise.
  std::vector<std::pair<std::string, Json>> profiles;
  if (profiler_) {
    absl::flat_hash_map<std::string, Json> old_profiles;
    if (parent) {
      ASSIGN_OR_RETURN(auto old, Profiles(parent->id));
      for (auto& [path, p] : old) old_profiles.emplace(path, std::move(p));
    }
    // A file is unchanged if the parent has it with the same chunks (both
    // lists are sorted by path).
    auto unchanged = [&](const ManifestFile& f) {
      auto it = std::lower_bound(parent_manifest.files.begin(), parent_manifest.files.end(), f.path,
                                 [](const ManifestFile& a, const std::string& p) { return a.path < p; });
      if (it == parent_manifest.files.end() || it->path != f.path || it->size != f.size ||
          it->chunks.size() != f.chunks.size()) {
        return false;
      }
      for (size_t k = 0; k < f.chunks.size(); ++k) {
        if (it->chunks[k].digest != f.chunks[k].digest) return false;
      }
      return true;
    };
    auto read = [&](const ChunkRef& c) { return chunks_.Read(scope, c.digest); };
    for (const ManifestFile& f : manifest.files) {
      auto old = old_profiles.find(f.path);
      if (old != old_profiles.end() && unchanged(f)) {
        profiles.emplace_back(f.path, old->second);
        continue;
      }
      if (std::optional<Json> p = profiler_(f, read)) profiles.emplace_back(f.path, std::move(*p));
    }
  }

  DatasetCommit c;
  c.dataset_id = ds.id;
  c.manifest = request.manifest;
  if (parent) c.parents.push_back(parent->id);
  c.message = request.message;
  c.author = request.author;
  c.created_at_ms = request.time_ms != 0 ? request.time_ms : NowMs(env_);
  c.file_count = manifest.files.size();
  c.total_bytes = manifest.TotalBytes();
  c.splits = std::move(splits);
  c.id = Sha256::Of(CommitText(c)).ToHex();

  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  db::Transaction txn(*conn);
  RETURN_IF_ERROR(txn.Begin());
  {
    // The compare-and-swap proper, under the write lock.
    ASSIGN_OR_RETURN(db::Statement * st, conn->Cached(
        "SELECT commit_id FROM data_refs WHERE dataset_id = ? AND kind = 'branch' AND name = ?"));
    st->BindText(1, ds.id);
    st->BindText(2, request.branch);
    ASSIGN_OR_RETURN(bool found, st->Step());
    std::string now_head = found ? std::string(st->ColumnText(0)) : "";
    st->Reset();
    if (now_head != request.expected_head) {
      return absl::AbortedError(fmt::format("branch '{}' of dataset '{}' moved to {} during the commit; retry",
                                            request.branch, ds.name, now_head.empty() ? "nothing" : now_head));
    }
  }
  {
    std::string example;
    ASSIGN_OR_RETURN(size_t missing, ChunkStore::CountMissing(*conn, scope, fresh, &example));
    if (missing > 0) {
      return absl::FailedPreconditionError(fmt::format(
          "{} chunk(s) of the manifest are not stored (e.g. {}): upload them, then commit", missing, example));
    }
  }
  {
    ASSIGN_OR_RETURN(db::Statement * st, conn->Cached(
        "INSERT OR IGNORE INTO data_commits (id, dataset_id, manifest, parents, message, author, created_at, "
        "file_count, total_bytes, splits) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    std::string parents;
    for (const std::string& p : c.parents) parents += (parents.empty() ? "" : " ") + p;
    st->BindText(1, c.id);
    st->BindText(2, c.dataset_id);
    st->BindBlob(3, DigestBlob(c.manifest));
    st->BindText(4, parents);
    st->BindText(5, c.message);
    st->BindText(6, c.author);
    st->BindInt(7, c.created_at_ms);
    st->BindInt(8, static_cast<int64_t>(c.file_count));
    st->BindInt(9, static_cast<int64_t>(c.total_bytes));
    st->BindText(10, SplitsToJson(c.splits).dump());
    RETURN_IF_ERROR(st->Run());
  }
  {
    ASSIGN_OR_RETURN(db::Statement * st,
                     conn->Cached("INSERT OR REPLACE INTO data_profiles (commit_id, path, profile) VALUES (?, ?, ?)"));
    for (const auto& [path, p] : profiles) {
      st->BindText(1, c.id);
      st->BindText(2, path);
      st->BindText(3, p.dump());
      RETURN_IF_ERROR(st->Run());
    }
  }
  {
    ASSIGN_OR_RETURN(db::Statement * st, conn->Cached(
        "INSERT INTO data_refs (dataset_id, kind, name, commit_id, updated_at) VALUES (?, 'branch', ?, ?, ?) "
        "ON CONFLICT (dataset_id, kind, name) DO UPDATE SET commit_id = excluded.commit_id, "
        "updated_at = excluded.updated_at"));
    st->BindText(1, ds.id);
    st->BindText(2, request.branch);
    st->BindText(3, c.id);
    st->BindInt(4, NowMs(env_));
    RETURN_IF_ERROR(st->Run());
  }
  RETURN_IF_ERROR(txn.Commit());
  return CommitResult{.commit = std::move(c), .created = true};
}

absl::StatusOr<std::vector<DatasetCommit>> DatasetStore::Log(const Dataset& ds, std::string_view ref, int limit) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(DatasetCommit c, ResolveIn(*conn, ds, ref));
  std::vector<DatasetCommit> out;
  out.push_back(std::move(c));
  while (static_cast<int>(out.size()) < limit && !out.back().parents.empty()) {
    ASSIGN_OR_RETURN(std::optional<DatasetCommit> p, FindCommit(*conn, out.back().parents[0]));
    if (!p) return absl::DataLossError(fmt::format("commit {} names missing parent {}", out.back().id, out.back().parents[0]));
    out.push_back(std::move(*p));
  }
  return out;
}

absl::StatusOr<std::vector<Ref>> DatasetStore::ListRefs(const Dataset& ds) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st, conn->Cached(
      "SELECT kind, name, commit_id, updated_at FROM data_refs WHERE dataset_id = ? ORDER BY kind, name"));
  st->BindText(1, ds.id);
  std::vector<Ref> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back(Ref{std::string(st->ColumnText(0)), std::string(st->ColumnText(1)), std::string(st->ColumnText(2)),
                      st->ColumnInt(3)});
  }
  st->Reset();
  return out;
}

absl::Status DatasetStore::CreateRef(const Dataset& ds, std::string_view kind, std::string_view name,
                                     std::string_view target) {
  if (kind != "branch" && kind != "tag") return absl::InvalidArgumentError(fmt::format("unknown ref kind '{}'", kind));
  RETURN_IF_ERROR(ValidateName(kind, name));
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  db::Transaction txn(*conn);
  RETURN_IF_ERROR(txn.Begin());
  ASSIGN_OR_RETURN(DatasetCommit c, ResolveIn(*conn, ds, target));
  ASSIGN_OR_RETURN(db::Statement * st, conn->Cached(
      "INSERT INTO data_refs (dataset_id, kind, name, commit_id, updated_at) VALUES (?, ?, ?, ?, ?)"));
  st->BindText(1, ds.id);
  st->BindText(2, kind);
  st->BindText(3, name);
  st->BindText(4, c.id);
  st->BindInt(5, NowMs(env_));
  absl::Status s = st->Run();
  if (absl::IsAlreadyExists(s)) {
    return absl::AlreadyExistsError(fmt::format("{} '{}' already exists in dataset '{}'", kind, name, ds.name));
  }
  RETURN_IF_ERROR(s);
  return txn.Commit();
}

absl::Status DatasetStore::DeleteRef(const Dataset& ds, std::string_view kind, std::string_view name) {
  if (kind != "branch" && kind != "tag") return absl::InvalidArgumentError(fmt::format("unknown ref kind '{}'", kind));
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn->Cached("DELETE FROM data_refs WHERE dataset_id = ? AND kind = ? AND name = ?"));
  st->BindText(1, ds.id);
  st->BindText(2, kind);
  st->BindText(3, name);
  RETURN_IF_ERROR(st->Run());
  if (st->ChangedRows() == 0) {
    return absl::NotFoundError(fmt::format("no {} '{}' in dataset '{}'", kind, name, ds.name));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::pair<std::string, Json>>> DatasetStore::Profiles(std::string_view commit_id) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn->Cached("SELECT path, profile FROM data_profiles WHERE commit_id = ? ORDER BY path"));
  st->BindText(1, commit_id);
  std::vector<std::pair<std::string, Json>> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    Json p = Json::parse(st->ColumnText(1), nullptr, /*allow_exceptions=*/false);
    out.emplace_back(std::string(st->ColumnText(0)), std::move(p));
  }
  st->Reset();
  return out;
}

absl::Status DatasetStore::ReadFile(const Dataset& ds, const ManifestFile& file, uint64_t offset, uint64_t length,
                                    const std::function<absl::Status(std::string_view)>& sink) {
  if (offset > file.size) {
    return absl::OutOfRangeError(fmt::format("offset {} is past the end of '{}' ({} bytes)", offset, file.path, file.size));
  }
  const uint64_t end = offset + std::min(length, file.size - offset);
  ASSIGN_OR_RETURN(ChunkScope scope, ScopeOf(ds));
  uint64_t pos = 0;
  for (const ChunkRef& c : file.chunks) {
    const uint64_t chunk_end = pos + c.size;
    if (chunk_end > offset && pos < end) {
      ASSIGN_OR_RETURN(std::string bytes, chunks_.Read(scope, c.digest));
      if (bytes.size() != c.size) {
        return absl::DataLossError(fmt::format("chunk {} of '{}' has the wrong size", c.digest.ToHex(), file.path));
      }
      const uint64_t from = offset > pos ? offset - pos : 0;
      const uint64_t to = std::min(end, chunk_end) - pos;
      RETURN_IF_ERROR(sink(std::string_view(bytes).substr(from, to - from)));
    }
    pos = chunk_end;
    if (pos >= end) break;
  }
  return absl::OkStatus();
}

absl::Status DatasetStore::ForEachCommit(
    int64_t after_seq, const std::function<absl::Status(const Dataset&, const DatasetCommit&, int64_t)>& fn) {
  std::vector<std::pair<DatasetCommit, int64_t>> commits;
  {
    ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
    ASSIGN_OR_RETURN(db::Statement * st,
                     conn->Cached(fmt::format("SELECT {} FROM data_commits WHERE seq > ? ORDER BY seq", kCommitColumns)));
    st->BindInt(1, after_seq);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st->Step());
      if (!row) break;
      int64_t seq = 0;
      absl::StatusOr<DatasetCommit> c = CommitFromRow(*st, &seq);
      if (!c.ok()) {
        st->Reset();
        return c.status();
      }
      commits.emplace_back(std::move(*c), seq);
    }
    st->Reset();
  }
  absl::flat_hash_map<std::string, Dataset> datasets;
  for (const auto& [c, seq] : commits) {
    auto it = datasets.find(c.dataset_id);
    if (it == datasets.end()) {
      ASSIGN_OR_RETURN(Dataset ds, GetDatasetById(c.dataset_id));
      it = datasets.emplace(c.dataset_id, std::move(ds)).first;
    }
    RETURN_IF_ERROR(fn(it->second, c, seq));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> DatasetStore::CheckConsistency(store::ObjectStore& objects,
                                                                       uint64_t* files_checked) {
  std::vector<std::string> problems;
  uint64_t files = 0;
  {
    ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
    ASSIGN_OR_RETURN(std::unique_ptr<db::Statement> st,
                     conn->Prepare("SELECT scope, chunk_key, object, offset, stored_size FROM data_chunks"));
    absl::flat_hash_map<Digest, uint64_t> sizes;
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st->Step());
      if (!row) break;
      std::optional<Digest> key = internal::DigestFromBlob(st->ColumnBlob(1));
      std::optional<Digest> parsed = internal::DigestFromBlob(st->ColumnBlob(2));
      if (!key || !parsed || st->ColumnInt(3) < 0 || st->ColumnInt(4) < 0) {
        problems.push_back(fmt::format("chunk index: a damaged entry in scope '{}'", st->ColumnText(0)));
        continue;
      }
      const Digest object = *parsed;
      auto it = sizes.find(object);
      if (it == sizes.end()) {
        absl::StatusOr<uint64_t> size = objects.Size(object);
        it = sizes.emplace(object, size.ok() ? *size : UINT64_MAX).first;
      }
      const uint64_t end = static_cast<uint64_t>(st->ColumnInt(3)) + static_cast<uint64_t>(st->ColumnInt(4));
      if (it->second == UINT64_MAX) {
        problems.push_back(fmt::format("chunk index: object {} is missing", object.ToHex()));
      } else if (end > it->second) {
        problems.push_back(fmt::format("chunk index: an entry ends at byte {} of object {} ({} bytes)", end,
                                       object.ToHex(), it->second));
      }
    }
  }
  RETURN_IF_ERROR(ForEachCommit(0, [&](const Dataset& ds, const DatasetCommit& c, int64_t) -> absl::Status {
    if (Sha256::Of(CommitText(c)).ToHex() != c.id) {
      problems.push_back(fmt::format("commit {} of '{}': its content does not hash to its id", c.id, ds.name));
    }
    absl::StatusOr<DatasetManifest> m = GetManifest(ds, c.manifest);
    if (!m.ok()) {
      problems.push_back(fmt::format("commit {} of '{}': manifest: {}", c.id, ds.name, m.status().message()));
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(ChunkScope scope, ScopeOf(ds));
    std::vector<Digest> digests;
    for (const ManifestFile& f : m->files) {
      ++files;
      for (const ChunkRef& ch : f.chunks) digests.push_back(ch.digest);
    }
    ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
    ASSIGN_OR_RETURN(size_t missing, ChunkStore::CountMissing(*conn, scope, digests, nullptr));
    if (missing > 0) {
      problems.push_back(fmt::format("commit {} of '{}': {} chunk(s) are not stored", c.id, ds.name, missing));
    }
    return absl::OkStatus();
  }));
  {
    ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
    ASSIGN_OR_RETURN(std::unique_ptr<db::Statement> st,
                     conn->Prepare("SELECT r.dataset_id, r.kind, r.name, r.commit_id FROM data_refs r "
                                   "LEFT JOIN data_commits c ON c.id = r.commit_id WHERE c.id IS NULL"));
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st->Step());
      if (!row) break;
      problems.push_back(fmt::format("{} '{}' of dataset {} points at missing commit {}", st->ColumnText(1),
                                     st->ColumnText(2), st->ColumnText(0), st->ColumnText(3)));
    }
  }
  if (files_checked != nullptr) *files_checked = files;
  return problems;
}

absl::StatusOr<int> DatasetStore::RewrapKeys(const store::KeyRing& keys) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  db::Transaction txn(*conn);
  RETURN_IF_ERROR(txn.Begin());
  std::vector<std::pair<std::string, std::string>> rows;
  {
    ASSIGN_OR_RETURN(db::Statement * st,
                     conn->Cached("SELECT id, wrapped_key FROM data_datasets WHERE encrypted = 1"));
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st->Step());
      if (!row) break;
      rows.emplace_back(std::string(st->ColumnText(0)), std::string(st->ColumnBlob(1)));
    }
    st->Reset();
  }
  int count = 0;
  ASSIGN_OR_RETURN(db::Statement * up, conn->Cached("UPDATE data_datasets SET wrapped_key = ? WHERE id = ?"));
  for (const auto& [id, wrapped] : rows) {
    ASSIGN_OR_RETURN(int number, store::KeyRing::WrappedKeyNumber(wrapped));
    if (number == keys.current()) continue;
    ASSIGN_OR_RETURN(store::DataKey key, keys.Unwrap(wrapped));
    ASSIGN_OR_RETURN(std::string rewrapped, keys.Wrap(key));
    up->BindBlob(1, rewrapped);
    up->BindText(2, id);
    RETURN_IF_ERROR(up->Run());
    ++count;
  }
  RETURN_IF_ERROR(txn.Commit());
  return count;
}

}  // namespace cairn::data
