// The native dataset API (/api/cairn/v1/datasets/...), end to end: a real
// server on an ephemeral port over a fresh data directory, driven by a real
// HTTP client that speaks the upload protocol by hand — ask what is missing,
// upload chunk frames, store the manifest as a chunk, commit — and then reads
// everything back: files with byte ranges, history, diffs, trees, refs, the
// runs that used a commit, encryption at rest and garbage collection.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>

#include "api/data_api.h"
#include "api/data_directory.h"
#include "api/mlflow_api.h"
#include "base/json.h"
#include "base/sha256.h"
#include "base/testing.h"
#include "data/manifest.h"
#include "http/http.h"
#include "tests/support/api_server_test.h"

namespace cairn::api {
namespace {

using ::cairn::testing::IsOk;
using http::Method;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

constexpr char kDatasets[] = "/api/cairn/v1/datasets";

// Deterministic incompressible bytes (zstd cannot shrink them, so stored
// chunks hold them verbatim unless encrypted).
std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

// One file's content cut into fixed-size chunks (the server does not care
// where the boundaries are, only that every named chunk is stored).
struct Chunked {
  data::ManifestFile file;
  std::vector<std::string> pieces;
};
Chunked Chunk(const std::string& path, const std::string& content, size_t piece) {
  Chunked c;
  c.file.path = path;
  c.file.size = content.size();
  c.file.mode = 0644;
  for (size_t pos = 0; pos < content.size(); pos += piece) {
    std::string p = content.substr(pos, piece);
    c.file.chunks.push_back({Sha256::Of(p), p.size()});
    c.pieces.push_back(std::move(p));
  }
  return c;
}

std::string Frames(const std::vector<std::string>& pieces) {
  std::string out;
  for (const std::string& p : pieces) out += EncodeChunkFrame(Sha256::Of(p), p);
  return out;
}

std::vector<std::string> Hexes(const std::vector<std::string>& pieces) {
  std::vector<std::string> out;
  for (const std::string& p : pieces) out.push_back(Sha256::Of(p).ToHex());
  return out;
}

class DataApiTest : public cairn::testing::ApiServerTest {
 protected:
  struct Answer {
    int status = 0;
    Json body;
    std::string raw;
    http::ClientResponse response;
    std::string Header(std::string_view name) const { return std::string(response.Header(name).value_or("")); }
  };
  Answer Call(Method method, const std::string& target, const std::string& body = "",
              const std::string& content_type = "application/json",
              const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    auto r = client_->Send(method, target, body, content_type, headers);
    EXPECT_THAT(r, IsOk());
    if (!r.ok()) return {};
    auto parsed = ParseJson(r->body);
    return {r->status, parsed.ok() ? *parsed : Json(), r->body, *r};
  }
  static std::string Path(const std::string& dataset, const std::string& rest = "") {
    return std::string(kDatasets) + "/" + dataset + (rest.empty() ? "" : "/" + rest);
  }
  Answer Post(const std::string& target, const Json& body) { return Call(Method::kPost, target, body.dump()); }
  Answer Get(const std::string& target,
             const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    return Call(Method::kGet, target, "", "application/json", headers);
  }
  Answer Upload(const std::string& dataset, const std::string& frames) {
    return Call(Method::kPost, Path(dataset, "chunks"), frames, "application/octet-stream");
  }
  std::vector<std::string> Missing(const std::string& dataset, const std::vector<std::string>& hexes) {
    Answer a = Post(Path(dataset, "chunks/missing"), {{"digests", hexes}});
    EXPECT_EQ(a.status, 200) << a.raw;
    std::vector<std::string> out;
    for (const Json& j : a.body.value("missing", Json::array())) out.push_back(j.get<std::string>());
    return out;
  }
  void CreateDataset(const std::string& name, bool encrypted = false) {
    Answer a = Post(kDatasets, {{"name", name}, {"encrypted", encrypted}});
    ASSERT_EQ(a.status, 200) << a.raw;
  }
  // Uploads a manifest's text as a chunk; returns its digest.
  std::string UploadManifestText(const std::string& dataset, const std::string& text) {
    Answer a = Upload(dataset, EncodeChunkFrame(Sha256::Of(text), text));
    EXPECT_EQ(a.status, 200) << a.raw;
    return Sha256::Of(text).ToHex();
  }
  // Uploads `files` (cut into `piece`-byte chunks) and their manifest, and
  // commits them to `branch`; returns the POST .../commits answer.
  Answer CommitFiles(const std::string& dataset, const std::map<std::string, std::string>& files,
                     const std::string& expected_head, Json extra = Json::object(), size_t piece = 1000) {
    data::DatasetManifest m;
    std::string frames;
    for (const auto& [path, content] : files) {
      Chunked c = Chunk(path, content, piece);
      frames += Frames(c.pieces);
      m.files.push_back(std::move(c.file));
    }
    EXPECT_THAT(m.Normalize(), IsOk());
    if (!frames.empty()) {
      Answer up = Upload(dataset, frames);
      EXPECT_EQ(up.status, 200) << up.raw;
    }
    Json body = std::move(extra);
    body["manifest"] = UploadManifestText(dataset, m.Serialize());
    body["expected_head"] = expected_head;
    if (!body.contains("message")) body["message"] = "test commit";
    return Post(Path(dataset, "commits"), body);
  }
  std::string CommitOk(const std::string& dataset, const std::map<std::string, std::string>& files,
                       const std::string& expected_head, Json extra = Json::object(), size_t piece = 1000) {
    Answer a = CommitFiles(dataset, files, expected_head, std::move(extra), piece);
    EXPECT_EQ(a.status, 200) << a.raw;
    return a.body["commit"].value("id", "");
  }
  std::string Head(const std::string& dataset, const std::string& branch = "main") {
    Answer a = Get(Path(dataset, "commits/" + branch));
    if (a.status == 404) return "";
    EXPECT_EQ(a.status, 200) << a.raw;
    return a.body["commit"].value("id", "");
  }

  static void ExpectError(const Answer& a, int status, const std::string& code) {
    EXPECT_EQ(a.status, status) << a.raw;
    ASSERT_TRUE(a.body.is_object()) << a.raw;
    EXPECT_EQ(a.body.value("error_code", ""), code) << a.raw;
    EXPECT_FALSE(a.body.value("message", "").empty()) << a.raw;
  }

};

TEST_F(DataApiTest, CreateListAndGetDatasets) {
  Answer created = Post(kDatasets, {{"name", "mnist"}, {"description", "digits"}});
  ASSERT_EQ(created.status, 200) << created.raw;
  EXPECT_EQ(created.body["dataset"]["name"], "mnist");
  EXPECT_EQ(created.body["dataset"]["description"], "digits");
  EXPECT_EQ(created.body["dataset"]["encrypted"], false);
  EXPECT_FALSE(created.body["dataset"].value("id", "").empty());

  ExpectError(Post(kDatasets, {{"name", "mnist"}}), 400, "RESOURCE_ALREADY_EXISTS");
  for (const char* bad : {"../etc", "a b", "", "-x", ".hidden", "a/b"}) {
    ExpectError(Post(kDatasets, {{"name", bad}}), 400, "INVALID_PARAMETER_VALUE");
  }
  ExpectError(Post(kDatasets, Json::object()), 400, "INVALID_PARAMETER_VALUE");  // no name
  ExpectError(Call(Method::kPost, kDatasets, "{not json"), 400, "INVALID_PARAMETER_VALUE");

  Answer list = Get(kDatasets);
  ASSERT_EQ(list.status, 200) << list.raw;
  ASSERT_EQ(list.body["datasets"].size(), 1u);
  EXPECT_EQ(list.body["datasets"][0]["name"], "mnist");
  EXPECT_FALSE(list.body["datasets"][0].contains("head"));  // nothing committed yet

  Answer shown = Get(Path("mnist"));
  ASSERT_EQ(shown.status, 200) << shown.raw;
  EXPECT_EQ(shown.body["dataset"]["name"], "mnist");
  EXPECT_THAT(shown.body["refs"], IsEmpty());
  EXPECT_FALSE(shown.body.contains("head"));

  ExpectError(Get(Path("nope")), 404, "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Get(Path("nope", "commits")), 404, "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Get(Path("mnist", "commits/main")), 404, "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Get(Path("mnist", "frobnicate")), 404, "RESOURCE_DOES_NOT_EXIST");

  // After a commit, the list shows the head and its size.
  std::string head = CommitOk("mnist", {{"a.bin", "hello"}}, "");
  list = Get(kDatasets);
  EXPECT_EQ(list.body["datasets"][0]["head"], head);
  EXPECT_EQ(list.body["datasets"][0]["file_count"], 1);
  EXPECT_EQ(list.body["datasets"][0]["total_bytes"], 5);
}

TEST_F(DataApiTest, UploadsOnlyWhatIsMissing) {
  CreateDataset("d");
  std::vector<std::string> pieces = {RandomBytes(100, 1), RandomBytes(200'000, 2), "small"};
  EXPECT_EQ(Missing("d", Hexes(pieces)), Hexes(pieces));
  Answer up = Upload("d", Frames(pieces));
  ASSERT_EQ(up.status, 200) << up.raw;
  EXPECT_EQ(up.body["received"], 3);
  EXPECT_EQ(up.body["stored"], 3);
  EXPECT_GT(up.body["stored_bytes"].get<int64_t>(), 0);
  EXPECT_THAT(Missing("d", Hexes(pieces)), IsEmpty());
  // Uploading them again stores nothing (dedup), and a request may repeat a chunk.
  up = Upload("d", Frames({pieces[0], pieces[0], pieces[2]}));
  ASSERT_EQ(up.status, 200) << up.raw;
  EXPECT_EQ(up.body["received"], 3);
  EXPECT_EQ(up.body["stored"], 0);
  // An empty upload is a no-op; an empty query has an empty answer.
  up = Upload("d", "");
  ASSERT_EQ(up.status, 200) << up.raw;
  EXPECT_EQ(up.body["received"], 0);
  EXPECT_THAT(Missing("d", {}), IsEmpty());
  // Malformed digests in the query.
  ExpectError(Post(Path("d", "chunks/missing"), {{"digests", {"xyz"}}}), 400, "INVALID_PARAMETER_VALUE");
  ExpectError(Post(Path("d", "chunks/missing"), {{"digests", {1, 2}}}), 400, "INVALID_PARAMETER_VALUE");
  ExpectError(Post(Path("nope", "chunks/missing"), {{"digests", Json::array()}}), 404, "RESOURCE_DOES_NOT_EXIST");
}

TEST_F(DataApiTest, InterruptedUploadResumesWithExactlyTheRest) {
  CreateDataset("d");
  std::vector<std::string> pieces;
  for (int i = 0; i < 20; ++i) pieces.push_back(RandomBytes(500 + 37 * i, 100 + i));
  const std::vector<std::string> first(pieces.begin(), pieces.begin() + 10);
  const std::vector<std::string> rest(pieces.begin() + 10, pieces.end());
  ASSERT_EQ(Upload("d", Frames(first)).status, 200);
  EXPECT_EQ(Missing("d", Hexes(pieces)), Hexes(rest));
  // Each upload request is durable on its own: a new client on a new
  // connection sees the same.
  auto other = http::Client::Create("127.0.0.1", server_->port());
  ASSERT_THAT(other, IsOk());
  auto r = (*other)->PostJson(Path("d", "chunks/missing"), Json{{"digests", Hexes(pieces)}});
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ((*r)["missing"].size(), rest.size());
  ASSERT_EQ(Upload("d", Frames(rest)).status, 200);
  EXPECT_THAT(Missing("d", Hexes(pieces)), IsEmpty());
}

TEST_F(DataApiTest, AFrameWithAWrongDigestRejectsTheWholeRequest) {
  CreateDataset("d");
  const std::string good_small = RandomBytes(300, 7);
  const std::string good_big = RandomBytes(300'000, 8);  // big enough to be an object of its own
  const std::string liar = RandomBytes(400, 9);
  const Digest claimed = Sha256::Of("something else");
  std::string frames = EncodeChunkFrame(Sha256::Of(good_small), good_small) +
                       EncodeChunkFrame(Sha256::Of(good_big), good_big) + EncodeChunkFrame(claimed, liar);
  Answer a = Upload("d", frames);
  ExpectError(a, 400, "INVALID_PARAMETER_VALUE");
  EXPECT_THAT(a.body.value("message", ""), HasSubstr(claimed.ToHex()));
  // Nothing of that request was indexed, not even the good chunks before it.
  const std::vector<std::string> asked = {Sha256::Of(good_small).ToHex(), Sha256::Of(good_big).ToHex(),
                                          claimed.ToHex(), Sha256::Of(liar).ToHex()};
  EXPECT_EQ(Missing("d", asked), asked);
  // A manifest naming the good chunks cannot be committed.
  data::DatasetManifest m;
  m.files.push_back(Chunk("f", good_small, 1000).file);
  ASSERT_THAT(m.Normalize(), IsOk());
  Answer c = Post(Path("d", "commits"), {{"manifest", UploadManifestText("d", m.Serialize())}});
  ExpectError(c, 400, "INVALID_STATE");
}

TEST_F(DataApiTest, MalformedUploadBodiesAreRejected) {
  CreateDataset("d");
  const std::string good = "good chunk";
  const std::string good_frame = EncodeChunkFrame(Sha256::Of(good), good);

  // A header cut short (20 of 36 bytes), after a good frame.
  ExpectError(Upload("d", good_frame + std::string(20, 'x')), 400, "INVALID_PARAMETER_VALUE");
  // A body shorter than its frame's length says.
  const std::string body = RandomBytes(100, 3);
  std::string truncated = EncodeChunkFrame(Sha256::Of(body), body);
  truncated.resize(truncated.size() - 50);
  ExpectError(Upload("d", good_frame + truncated), 400, "INVALID_PARAMETER_VALUE");
  // A length over the limit (0xffffffff).
  std::string oversize = good_frame + std::string(reinterpret_cast<const char*>(Sha256::Of(good).bytes.data()), 32);
  oversize += std::string(4, '\xff');
  Answer big = Upload("d", oversize);
  ExpectError(big, 400, "INVALID_PARAMETER_VALUE");
  EXPECT_THAT(big.body.value("message", ""), HasSubstr("at most"));
  // None of those requests indexed the good frame in front.
  EXPECT_EQ(Missing("d", {Sha256::Of(good).ToHex()}), std::vector<std::string>{Sha256::Of(good).ToHex()});
  // The server is still fine, and the good frame alone goes through.
  ASSERT_EQ(Upload("d", good_frame).status, 200);
  EXPECT_THAT(Missing("d", {Sha256::Of(good).ToHex()}), IsEmpty());
}

TEST_F(DataApiTest, CommitValidatesItsManifestAndHead) {
  CreateDataset("d");
  const std::string first = CommitOk("d", {{"a.txt", "alpha"}, {"b/c.txt", "beta gamma"}}, "");
  ASSERT_EQ(first.size(), 64u);
  EXPECT_EQ(Head("d"), first);

  // A manifest naming a chunk that was never uploaded: refused, branch stays.
  {
    data::DatasetManifest m;
    m.files.push_back(Chunk("never.bin", "never uploaded", 1000).file);
    ASSERT_THAT(m.Normalize(), IsOk());
    Answer a = Post(Path("d", "commits"),
                    {{"manifest", UploadManifestText("d", m.Serialize())}, {"expected_head", first}});
    ExpectError(a, 400, "INVALID_STATE");
    EXPECT_THAT(a.body.value("message", ""), HasSubstr("not stored"));
    EXPECT_EQ(Head("d"), first);
  }
  // A stale expected head (a lost compare-and-swap): 409, branch stays.
  {
    Answer a = CommitFiles("d", {{"a.txt", "changed"}}, std::string(64, '0'));
    ExpectError(a, 409, "RESOURCE_CONFLICT");
    a = CommitFiles("d", {{"a.txt", "changed"}}, "");  // "creating" a branch that exists
    ExpectError(a, 409, "RESOURCE_CONFLICT");
    EXPECT_EQ(Head("d"), first);
  }
  // Malformed bodies.
  ExpectError(Call(Method::kPost, Path("d", "commits"), "{\"manifest\": "), 400, "INVALID_PARAMETER_VALUE");
  ExpectError(Post(Path("d", "commits"), {{"expected_head", first}}), 400, "INVALID_PARAMETER_VALUE");
  ExpectError(Post(Path("d", "commits"), {{"manifest", "not-hex"}}), 400, "INVALID_PARAMETER_VALUE");
  ExpectError(Post(Path("d", "commits"), {{"manifest", std::string(64, 'a')}, {"branch", "bad branch"},
                                          {"expected_head", ""}}),
              400, "INVALID_PARAMETER_VALUE");

  // Manifest texts that are not canonical or name an escaping path, built by
  // hand and uploaded as chunks: each refused, branch stays.
  const std::string chunk = "payload";
  ASSERT_EQ(Upload("d", EncodeChunkFrame(Sha256::Of(chunk), chunk)).status, 200);
  const std::string line = "chunk " + Sha256::Of(chunk).ToHex() + " 7\n";
  const std::vector<std::string> bad_texts = {
      "cairn-manifest 1\nfile 0644 7 1 ../x\n" + line,          // escapes the checkout
      "cairn-manifest 1\nfile 0644 7 1 /abs\n" + line,          // absolute
      "cairn-manifest 1\nfile 0644 7 1 a/./b\n" + line,         // "." segment
      "cairn-manifest 1\nfile 644 7 1 x\n" + line,              // mode not four digits
      "cairn-manifest 1\nfile 0644 07 1 x\n" + line,            // leading zero
      "cairn-manifest 1\nfile 0644 8 1 x\n" + line,             // sizes do not add up
      "cairn-manifest 1\nfile 0644 7 1 b\n" + line + "file 0644 7 1 a\n" + line,  // out of order
      "cairn-manifest 1\nfile 0644 7 1 x\n" + line + "file 0644 7 1 x\n" + line,  // duplicate
      "cairn-manifest 1\nfile  0644 7 1 x\n" + line,            // two spaces
      "cairn-manifest 2\nfile 0644 7 1 x\n" + line,             // unknown version
      "cairn-manifest 1\nfile 0644 7 1 x\n" + line.substr(0, line.size() - 1),  // no final newline
      "cairn-manifest 1\nfile 0644 7 1 a%5Cb\n" + line,         // a backslash, percent-encoded
  };
  for (const std::string& text : bad_texts) {
    Answer a = Post(Path("d", "commits"), {{"manifest", UploadManifestText("d", text)}, {"expected_head", first}});
    EXPECT_EQ(a.status, 400) << text << "\n" << a.raw;
    EXPECT_EQ(Head("d"), first) << text;
  }
  // The hand-built canonical form of the same file is accepted: the checks
  // above failed for their defect, not for being hand-built.
  Answer ok = Post(Path("d", "commits"), {{"manifest", UploadManifestText("d", "cairn-manifest 1\nfile 0644 7 1 x\n" + line)},
                                          {"expected_head", first}});
  ASSERT_EQ(ok.status, 200) << ok.raw;
  EXPECT_EQ(ok.body["created"], true);
  EXPECT_EQ(ok.body["commit"]["parents"], Json::array({first}));
  EXPECT_EQ(Head("d"), ok.body["commit"]["id"]);

  // Committing the head's manifest again creates nothing.
  Answer same = Post(Path("d", "commits"), {{"manifest", ok.body["commit"]["manifest"]},
                                            {"expected_head", ok.body["commit"]["id"]}});
  ASSERT_EQ(same.status, 200) << same.raw;
  EXPECT_EQ(same.body["created"], false);
  EXPECT_EQ(same.body["commit"]["id"], ok.body["commit"]["id"]);
}

TEST_F(DataApiTest, FilesReadWholeAndByRange) {
  CreateDataset("d");
  std::string content;
  for (int i = 0; i < 100; ++i) content.push_back(static_cast<char>('A' + i % 26));
  // 16-byte chunks so that ranges cross chunk boundaries.
  const std::string id = CommitOk("d", {{"dir/f.txt", content}, {"empty", ""}}, "", Json::object(), 16);
  const std::string f = Path("d", "files/main/dir/f.txt");

  Answer whole = Get(f);
  ASSERT_EQ(whole.status, 200);
  EXPECT_EQ(whole.raw, content);
  EXPECT_EQ(whole.Header("Accept-Ranges"), "bytes");
  EXPECT_EQ(whole.Header("X-Cairn-Commit"), id);
  EXPECT_EQ(Get(Path("d", "files/" + id + "/dir/f.txt")).raw, content);  // by commit id
  Answer empty = Get(Path("d", "files/main/empty"));
  EXPECT_EQ(empty.status, 200);
  EXPECT_EQ(empty.raw, "");

  Answer mid = Get(f, {{"Range", "bytes=10-19"}});
  EXPECT_EQ(mid.status, 206);
  EXPECT_EQ(mid.Header("Content-Range"), "bytes 10-19/100");
  EXPECT_EQ(mid.raw, content.substr(10, 10));
  Answer across = Get(f, {{"Range", "bytes=15-48"}});  // spans three chunk boundaries
  EXPECT_EQ(across.status, 206);
  EXPECT_EQ(across.raw, content.substr(15, 34));
  Answer suffix = Get(f, {{"Range", "bytes=-5"}});
  EXPECT_EQ(suffix.status, 206);
  EXPECT_EQ(suffix.Header("Content-Range"), "bytes 95-99/100");
  EXPECT_EQ(suffix.raw, content.substr(95));
  Answer open = Get(f, {{"Range", "bytes=5-"}});
  EXPECT_EQ(open.status, 206);
  EXPECT_EQ(open.Header("Content-Range"), "bytes 5-99/100");
  EXPECT_EQ(open.raw, content.substr(5));
  Answer clamped = Get(f, {{"Range", "bytes=90-5000"}});
  EXPECT_EQ(clamped.status, 206);
  EXPECT_EQ(clamped.raw, content.substr(90));
  Answer longer_suffix = Get(f, {{"Range", "bytes=-500"}});
  EXPECT_EQ(longer_suffix.status, 206);
  EXPECT_EQ(longer_suffix.raw, content);

  Answer past = Get(f, {{"Range", "bytes=999999-"}});
  EXPECT_EQ(past.status, 416);
  EXPECT_EQ(past.Header("Content-Range"), "bytes */100");
  EXPECT_EQ(Get(f, {{"Range", "bytes=100-"}}).status, 416);
  EXPECT_EQ(Get(f, {{"Range", "bytes=-0"}}).status, 416);
  for (const char* bad : {"bytes=abc", "bytes=5", "items=1-2", "bytes=9-3", "bytes=1-2,4-5", "bytes=--1"}) {
    ExpectError(Get(f, {{"Range", bad}}), 400, "INVALID_PARAMETER_VALUE");
  }

  EXPECT_EQ(Get(f + "?offset=30&length=40").raw, content.substr(30, 40));
  EXPECT_EQ(Get(f + "?offset=90&length=40").raw, content.substr(90));
  EXPECT_EQ(Get(f + "?offset=7").raw, content.substr(7));
  EXPECT_EQ(Get(f + "?length=3").raw, content.substr(0, 3));
  EXPECT_EQ(Get(f + "?offset=100").raw, "");
  ExpectError(Get(f + "?offset=101"), 400, "INVALID_PARAMETER_VALUE");
  ExpectError(Get(f + "?offset=-1"), 400, "INVALID_PARAMETER_VALUE");
  ExpectError(Get(f + "?length=x"), 400, "INVALID_PARAMETER_VALUE");

  ExpectError(Get(Path("d", "files/main/dir/nope.txt")), 404, "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Get(Path("d", "files/main/dir")), 404, "RESOURCE_DOES_NOT_EXIST");  // a directory, not a file
  ExpectError(Get(Path("d", "files/nobranch/dir/f.txt")), 404, "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Get(Path("d", "files/main")), 400, "INVALID_PARAMETER_VALUE");

  // The manifest endpoint serves the canonical text whose digest the commit names.
  Answer manifest = Get(Path("d", "manifest/main"));
  ASSERT_EQ(manifest.status, 200);
  EXPECT_EQ(manifest.Header("X-Cairn-Commit"), id);
  EXPECT_EQ(Sha256::Of(manifest.raw).ToHex(), Get(Path("d", "commits/main")).body["commit"]["manifest"]);
}

TEST_F(DataApiTest, HistoryDiffTreeSplitsAndRefs) {
  CreateDataset("d");
  const std::string c1 = CommitOk("d", {{"a.csv", "x,y\n1,2\n"}, {"b/x.bin", "xx"}, {"b/y.bin", "yyy"}}, "",
                                  {{"message", "first"}});
  const std::string c2 = CommitOk("d", {{"a.csv", "x,y\n1,2\n3,4\n"}, {"b/y.bin", "yyy"}, {"c.txt", "new"}}, c1,
                                  {{"message", "second"}, {"splits", {{{"name", "test"}, {"globs", {"b/**"}}}}}});
  ASSERT_FALSE(c2.empty());

  // Log: newest first, limit, errors.
  Answer log = Get(Path("d", "commits"));
  ASSERT_EQ(log.status, 200) << log.raw;
  ASSERT_EQ(log.body["commits"].size(), 2u);
  EXPECT_EQ(log.body["commits"][0]["id"], c2);
  EXPECT_EQ(log.body["commits"][0]["message"], "second");
  EXPECT_EQ(log.body["commits"][1]["id"], c1);
  EXPECT_EQ(log.body["commits"][1]["parents"], Json::array());
  Answer one = Get(Path("d", "commits?limit=1"));
  ASSERT_EQ(one.body["commits"].size(), 1u);
  EXPECT_EQ(one.body["commits"][0]["id"], c2);
  for (const char* bad : {"0", "-1", "abc", "1x", "10001"}) {
    ExpectError(Get(Path("d", std::string("commits?limit=") + bad)), 400, "INVALID_PARAMETER_VALUE");
  }
  ExpectError(Get(Path("d", "commits?ref=nobranch")), 404, "RESOURCE_DOES_NOT_EXIST");

  // REF~N and id prefixes.
  EXPECT_EQ(Get(Path("d", "commits/main~1")).body["commit"]["id"], c1);
  EXPECT_EQ(Get(Path("d", "commits/main~")).body["commit"]["id"], c1);
  EXPECT_EQ(Get(Path("d", "commits/main~0")).body["commit"]["id"], c2);
  EXPECT_EQ(Get(Path("d", "commits/" + c2 + "~1")).body["commit"]["id"], c1);
  EXPECT_EQ(Get(Path("d", "commits/" + c1.substr(0, 10))).body["commit"]["id"], c1);
  ExpectError(Get(Path("d", "commits/main~2")), 404, "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Get(Path("d", "commits/main~x")), 400, "INVALID_PARAMETER_VALUE");
  Answer shown = Get(Path("d", "commits/main"));
  EXPECT_EQ(shown.body["commit"]["file_count"], 3);
  EXPECT_EQ(shown.body["commit"]["total_bytes"], 12 + 3 + 3);
  ASSERT_EQ(shown.body["commit"]["splits"].size(), 1u);
  EXPECT_EQ(shown.body["commit"]["splits"][0]["name"], "test");
  EXPECT_EQ(shown.body["commit"]["splits"][0]["files"], 1);
  EXPECT_EQ(shown.body["commit"]["splits"][0]["sealed"], false);

  // Diff, sorted by path, with sizes.
  Answer diff = Get(Path("d", "diff?from=" + c1 + "&to=main"));
  ASSERT_EQ(diff.status, 200) << diff.raw;
  EXPECT_EQ(diff.body["from"], c1);
  EXPECT_EQ(diff.body["to"], c2);
  const Json& ch = diff.body["changes"];
  ASSERT_EQ(ch.size(), 3u) << diff.raw;
  EXPECT_EQ(ch[0], Json({{"kind", "modified"}, {"path", "a.csv"}, {"old_size", 8}, {"new_size", 12}}));
  EXPECT_EQ(ch[1], Json({{"kind", "removed"}, {"path", "b/x.bin"}, {"old_size", 2}, {"new_size", 0}}));
  EXPECT_EQ(ch[2], Json({{"kind", "added"}, {"path", "c.txt"}, {"old_size", 0}, {"new_size", 3}}));
  EXPECT_THAT(Get(Path("d", "diff?from=main&to=main")).body["changes"], IsEmpty());
  ExpectError(Get(Path("d", "diff?from=main")), 400, "INVALID_PARAMETER_VALUE");
  ExpectError(Get(Path("d", "diff?from=main&to=nope")), 404, "RESOURCE_DOES_NOT_EXIST");

  // Tree: all, by prefix, by split, at an older commit.
  auto paths = [](const Answer& a) {
    std::vector<std::string> out;
    for (const Json& f : a.body.value("files", Json::array())) out.push_back(f["path"]);
    return out;
  };
  Answer tree = Get(Path("d", "tree/main"));
  ASSERT_EQ(tree.status, 200) << tree.raw;
  EXPECT_EQ(tree.body["commit"], c2);
  EXPECT_THAT(paths(tree), ElementsAre("a.csv", "b/y.bin", "c.txt"));
  EXPECT_EQ(tree.body["files"][0]["size"], 12);
  EXPECT_EQ(tree.body["files"][0]["mode"], 0644);
  EXPECT_THAT(paths(Get(Path("d", "tree"))), ElementsAre("a.csv", "b/y.bin", "c.txt"));  // default: main
  EXPECT_THAT(paths(Get(Path("d", "tree/main?prefix=b/"))), ElementsAre("b/y.bin"));
  EXPECT_THAT(paths(Get(Path("d", "tree/main?split=test"))), ElementsAre("b/y.bin"));
  EXPECT_THAT(paths(Get(Path("d", "tree/" + c1 + "?prefix=b"))), ElementsAre("b/x.bin", "b/y.bin"));
  ExpectError(Get(Path("d", "tree/main?split=train")), 404, "RESOURCE_DOES_NOT_EXIST");

  // Refs: tags and branches, created at a commit, listed, deleted.
  Answer tag = Post(Path("d", "refs"), {{"kind", "tag"}, {"name", "v1"}, {"target", c1}});
  ASSERT_EQ(tag.status, 200) << tag.raw;
  EXPECT_EQ(tag.body["ref"]["commit"], c1);
  ExpectError(Post(Path("d", "refs"), {{"kind", "tag"}, {"name", "v1"}, {"target", c2}}), 400,
              "RESOURCE_ALREADY_EXISTS");
  ExpectError(Post(Path("d", "refs"), {{"kind", "tag"}, {"name", "bad name"}, {"target", c2}}), 400,
              "INVALID_PARAMETER_VALUE");
  ExpectError(Post(Path("d", "refs"), {{"kind", "tag"}, {"name", "v2"}, {"target", "nope"}}), 404,
              "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Post(Path("d", "refs"), {{"kind", "tag"}, {"name", "v2"}}), 400, "INVALID_PARAMETER_VALUE");
  Answer branch = Post(Path("d", "refs"), {{"kind", "branch"}, {"name", "dev"}, {"target", "main~1"}});
  ASSERT_EQ(branch.status, 200) << branch.raw;
  EXPECT_EQ(branch.body["ref"]["commit"], c1);
  Answer refs = Get(Path("d", "refs"));
  ASSERT_EQ(refs.status, 200);
  std::vector<std::string> names;
  for (const Json& r : refs.body["refs"]) names.push_back(r["kind"].get<std::string>() + ":" + r["name"].get<std::string>());
  EXPECT_THAT(names, UnorderedElementsAreArray({"branch:main", "branch:dev", "tag:v1"}));
  EXPECT_EQ(Get(Path("d", "files/v1/b/x.bin")).raw, "xx");
  EXPECT_EQ(Get(Path("d", "files/dev/a.csv")).raw, "x,y\n1,2\n");
  // A commit on the new branch moves it, not main.
  const std::string c3 = CommitOk("d", {{"dev.txt", "on dev"}}, c1, {{"branch", "dev"}});
  EXPECT_EQ(Head("d", "dev"), c3);
  EXPECT_EQ(Head("d", "main"), c2);

  ASSERT_EQ(Call(Method::kDelete, Path("d", "refs/tag/v1")).status, 200);
  ExpectError(Get(Path("d", "commits/v1")), 404, "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Call(Method::kDelete, Path("d", "refs/tag/v1")), 404, "RESOURCE_DOES_NOT_EXIST");
  ASSERT_EQ(Call(Method::kDelete, Path("d", "refs/branch/dev")).status, 200);
  // The commits stay: reachable by id.
  EXPECT_EQ(Get(Path("d", "commits/" + c3)).body["commit"]["id"], c3);
}

TEST_F(DataApiTest, SealedSplitsStaySealedAndDeclared) {
  CreateDataset("d");
  const std::string c1 = CommitOk(
      "d", {{"train/a", "1"}, {"test/b", "2"}}, "",
      {{"splits", {{{"name", "train"}, {"globs", {"train/**"}}}, {{"name", "test"}, {"globs", {"test/**"}}}}},
       {"seal", {"test"}}});
  Answer shown = Get(Path("d", "commits/main"));
  ASSERT_EQ(shown.body["commit"]["splits"].size(), 2u);
  for (const Json& s : shown.body["commit"]["splits"]) EXPECT_EQ(s["sealed"], s["name"] == "test") << s.dump();
  // A commit that stops declaring the sealed split is refused.
  Answer drop = CommitFiles("d", {{"train/a", "1"}, {"test/b", "2"}, {"train/c", "3"}}, c1,
                            {{"splits", {{{"name", "train"}, {"globs", {"train/**"}}}}}});
  ExpectError(drop, 400, "INVALID_STATE");
  EXPECT_EQ(Head("d"), c1);
  // Re-declaring it unsealed keeps it sealed; leaving splits out keeps the parent's.
  const std::string c2 = CommitOk("d", {{"train/a", "1"}, {"test/b", "2"}, {"train/c", "3"}}, c1,
                                  {{"splits", {{{"name", "test"}, {"globs", {"test/**"}}, {"sealed", false}}}}});
  Answer after = Get(Path("d", "commits/" + c2));
  ASSERT_EQ(after.body["commit"]["splits"].size(), 1u);
  EXPECT_EQ(after.body["commit"]["splits"][0]["sealed"], true);
  const std::string c3 = CommitOk("d", {{"train/a", "1"}, {"test/b", "2"}, {"train/d", "4"}}, c2);
  EXPECT_EQ(Get(Path("d", "commits/" + c3)).body["commit"]["splits"], after.body["commit"]["splits"]);
  // Overlapping splits, and a split matching nothing, are refused.
  ExpectError(CommitFiles("d", {{"test/b", "2"}}, c3,
                          {{"splits", {{{"name", "test"}, {"globs", {"test/**"}}}, {{"name", "b"}, {"globs", {"test/b"}}}}}}),
              400, "INVALID_PARAMETER_VALUE");
  ExpectError(CommitFiles("d", {{"test/b", "2"}}, c3,
                          {{"splits", {{{"name", "test"}, {"globs", {"test/**"}}}, {{"name", "x"}, {"globs", {"nope/**"}}}}}}),
              400, "INVALID_PARAMETER_VALUE");
  EXPECT_EQ(Head("d"), c3);
}

TEST_F(DataApiTest, CommitShowsTheRunsThatUsedIt) {
  CreateDataset("iris");
  const std::string id = CommitOk("iris", {{"iris.csv", "sepal,species\n5.1,setosa\n4.9,setosa\n7.0,versicolor\n"}}, "");

  Answer none = Get("/api/cairn/v1/commits/" + id);
  ASSERT_EQ(none.status, 200) << none.raw;
  EXPECT_EQ(none.body["commit"]["id"], id);
  EXPECT_EQ(none.body["commit"]["dataset"], "iris");
  EXPECT_THAT(none.body["runs"], IsEmpty());
  // The CSV was profiled at commit.
  ASSERT_TRUE(none.body["profiles"].contains("iris.csv")) << none.raw;
  EXPECT_EQ(none.body["profiles"]["iris.csv"]["rows"], 3);

  Answer run = Post("/api/2.0/mlflow/runs/create", {{"experiment_id", "0"}, {"start_time", 1000}});
  ASSERT_EQ(run.status, 200) << run.raw;
  const std::string run_id = run.body["run"]["info"]["run_id"];
  Answer other = Post("/api/2.0/mlflow/runs/create", {{"experiment_id", "0"}, {"start_time", 2000}});
  const std::string other_id = other.body["run"]["info"]["run_id"];
  Json input = {{"tags", {{{"key", "mlflow.data.context"}, {"value", "training"}}}},
                {"dataset",
                 {{"name", "iris"}, {"digest", id}, {"source_type", "cairn"}, {"source", "cairn:iris@" + id}}}};
  ASSERT_EQ(Post("/api/2.0/mlflow/runs/log-inputs", {{"run_id", run_id}, {"datasets", {input}}}).status, 200);
  // A run that logged some other digest is not listed.
  Json unrelated = input;
  unrelated["dataset"]["digest"] = std::string(64, 'e');
  ASSERT_EQ(Post("/api/2.0/mlflow/runs/log-inputs", {{"run_id", other_id}, {"datasets", {unrelated}}}).status, 200);

  Answer used = Get("/api/cairn/v1/commits/" + id);
  ASSERT_EQ(used.status, 200) << used.raw;
  ASSERT_EQ(used.body["runs"].size(), 1u) << used.raw;
  EXPECT_EQ(used.body["runs"][0]["run_id"], run_id);
  EXPECT_EQ(used.body["runs"][0]["experiment_id"], "0");
  EXPECT_EQ(used.body["runs"][0]["context"], "training");
  // The per-dataset form shows the same.
  EXPECT_EQ(Get(Path("iris", "commits/main")).body["runs"], used.body["runs"]);

  ExpectError(Get("/api/cairn/v1/commits/" + std::string(64, 'f')), 404, "RESOURCE_DOES_NOT_EXIST");
}

// Every byte under `dir`, file by file.
std::vector<std::string> ReadAllFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    out.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return out;
}

bool AnyContains(const std::vector<std::string>& blobs, const std::string& needle) {
  for (const std::string& b : blobs) {
    if (b.find(needle) != std::string::npos) return true;
  }
  return false;
}

TEST_F(DataApiTest, EncryptedDatasetRoundTripsAndItsObjectsRevealNothing) {
  CreateDataset("open");
  CreateDataset("secret", /*encrypted=*/true);
  Answer shown = Get(Path("secret"));
  EXPECT_EQ(shown.body["dataset"]["encrypted"], true);

  // Incompressible content, so that a plaintext chunk is stored verbatim:
  // the open dataset is the control that the scan below can find plaintext.
  const std::string open_small = RandomBytes(3000, 11), open_big = RandomBytes(150'000, 12);
  const std::string secret_small = RandomBytes(3000, 21), secret_big = RandomBytes(150'000, 22);
  const std::string secret_name = "patient-records-7f3a9c.bin";
  const std::string secret_text = "SSN 078-05-1120 belongs to a very secret person";
  ASSERT_FALSE(CommitOk("open", {{"small.bin", open_small}, {"big.bin", open_big}}, "", Json::object(), 200'000).empty());
  const std::string id = CommitOk(
      "secret", {{"small.bin", secret_small}, {"big.bin", secret_big}, {secret_name, secret_text}}, "",
      Json::object(), 200'000);
  ASSERT_FALSE(id.empty());

  EXPECT_EQ(Get(Path("secret", "files/main/small.bin")).raw, secret_small);
  EXPECT_EQ(Get(Path("secret", "files/main/big.bin")).raw, secret_big);
  EXPECT_EQ(Get(Path("secret", "files/main/" + secret_name)).raw, secret_text);
  EXPECT_EQ(Get(Path("secret", "files/main/big.bin"), {{"Range", "bytes=70000-70099"}}).raw,
            secret_big.substr(70000, 100));
  EXPECT_EQ(Get(Path("open", "files/main/big.bin")).raw, open_big);

  // Dedup inside the encrypted dataset; none across scopes.
  Answer again = Upload("secret", Frames({secret_small}));
  ASSERT_EQ(again.status, 200);
  EXPECT_EQ(again.body["stored"], 0);
  EXPECT_EQ(Missing("secret", Hexes({open_small})), Hexes({open_small}));
  EXPECT_EQ(Missing("open", Hexes({secret_small})), Hexes({secret_small}));

  const std::vector<std::string> objects = ReadAllFiles(data_path_ + "/objects");
  ASSERT_FALSE(objects.empty());
  EXPECT_TRUE(AnyContains(objects, open_small.substr(1000, 64)));  // the control
  EXPECT_TRUE(AnyContains(objects, open_big.substr(100'000, 64)));
  for (size_t at : {0, 1000, 2900}) EXPECT_FALSE(AnyContains(objects, secret_small.substr(at, 64))) << at;
  for (size_t at : {0, 70'000, 149'900}) EXPECT_FALSE(AnyContains(objects, secret_big.substr(at, 64))) << at;
  EXPECT_FALSE(AnyContains(objects, "very secret person"));
  EXPECT_FALSE(AnyContains(objects, "patient-records"));  // file names are in the sealed manifest
  // Nor do the object names give the plaintext digests away.
  for (const std::string& piece : {secret_small, secret_big}) {
    const std::string hex = Sha256::Of(piece).ToHex();
    EXPECT_FALSE(std::filesystem::exists(data_path_ + "/objects/" + hex.substr(0, 2) + "/" + hex.substr(2, 2) + "/" + hex));
  }
}

TEST_F(DataApiTest, GcRefusesAShortGraceAndDryRunsFreeNothing) {
  CreateDataset("d");
  const std::string big = RandomBytes(120'000, 5);
  const std::string id = CommitOk("d", {{"big.bin", big}}, "", Json::object(), 200'000);
  // An uploaded chunk that no commit names.
  ASSERT_EQ(Upload("d", Frames({RandomBytes(100'000, 6)})).status, 200);

  ExpectError(Post("/api/cairn/v1/gc", {{"grace_seconds", 60}}), 400, "INVALID_PARAMETER_VALUE");
  ExpectError(Post("/api/cairn/v1/gc", {{"grace_seconds", 299}, {"dry_run", true}}), 400, "INVALID_PARAMETER_VALUE");
  ExpectError(Post("/api/cairn/v1/gc", {{"grace_seconds", -1}}), 400, "INVALID_PARAMETER_VALUE");
  ExpectError(Post("/api/cairn/v1/gc", {{"grace_seconds", "soon"}}), 400, "INVALID_PARAMETER_VALUE");
  ExpectError(Call(Method::kPost, "/api/cairn/v1/gc", "{oops"), 400, "INVALID_PARAMETER_VALUE");

  Answer dry = Post("/api/cairn/v1/gc", {{"grace_seconds", 300}, {"dry_run", true}});
  ASSERT_EQ(dry.status, 200) << dry.raw;
  EXPECT_EQ(dry.body["dry_run"], true);
  EXPECT_EQ(dry.body["grace_seconds"], 300);
  EXPECT_EQ(dry.body["commits"], 1);
  EXPECT_GE(dry.body["live_chunks"].get<int64_t>(), 2);  // the file's chunk and the manifest
  EXPECT_EQ(dry.body["freed_bytes"], 0);                // everything is younger than the grace period
  // A real run inside the grace period frees nothing either; data still reads back.
  Answer real = Post("/api/cairn/v1/gc", {{"grace_seconds", 300}});
  ASSERT_EQ(real.status, 200) << real.raw;
  EXPECT_EQ(real.body["dry_run"], false);
  EXPECT_EQ(real.body["freed_objects"], 0);
  EXPECT_EQ(Get(Path("d", "files/" + id + "/big.bin")).raw, big);
  // An empty body means the defaults (one hour, not a dry run).
  Answer defaults = Call(Method::kPost, "/api/cairn/v1/gc", "");
  ASSERT_EQ(defaults.status, 200) << defaults.raw;
  EXPECT_EQ(defaults.body["grace_seconds"], 3600);
}

}  // namespace
}  // namespace cairn::api
