// Cairn's native dataset API, /api/cairn/v1/datasets/..., and garbage
// collection, /api/cairn/v1/gc. Reference: docs/api-datasets.md.
//
// Uploads are deduplicated and resumable: a client cuts files into chunks,
// asks which the server lacks (chunks/missing), uploads only those
// (chunks; each request is durable on its own, so an interrupted upload
// resumes by asking again), stores the manifest the same way, then commits.
// Downloads stream, with HTTP range requests.
//
// Errors: {"error_code", "message"} as in the MLflow API (api/errors.h).
//
// Thread-safety: handlers are thread-safe; `dir` must outlive the router.
#ifndef CAIRN_API_DATA_API_H_
#define CAIRN_API_DATA_API_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "api/data_directory.h"
#include "base/sha256.h"
#include "http/http.h"

namespace cairn::api {

void AddDataRoutes(DataDirectory& dir, http::Router& router);

// The JSON of a commit, as every route returns it (docs/api-datasets.md).
Json CommitJson(const data::Dataset& ds, const data::DatasetCommit& c);
Json SplitJson(const data::Split& s);

// The chunk upload body: frames of [32-byte SHA-256][4-byte big-endian
// length][bytes], back to back.
inline constexpr uint32_t kMaxUploadFrame = 256u << 20;
std::string EncodeChunkFrame(const Digest& digest, std::string_view data);
// Reads frames from `body` to its end, calling `fn` for each (the bytes view
// is valid during the call only). kInvalidArgument naming the frame for a
// truncated header or body or a length over `max_frame`; `fn`'s errors are
// returned as they are.
absl::Status ReadChunkFrames(http::BodyStream& body, uint32_t max_frame,
                             const std::function<absl::Status(const Digest&, std::string_view)>& fn);

// An in-memory request body.
class StringBody final : public http::BodyStream {
 public:
  explicit StringBody(std::string_view data) : data_(data) {}
  absl::StatusOr<size_t> Read(char* scratch, size_t n) override;
  std::optional<uint64_t> content_length() const override { return data_.size(); }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

// Parses "bytes=A-B", "bytes=A-" or "bytes=-N" against a size into
// [begin, end). kOutOfRange for unsatisfiable ranges, kInvalidArgument for
// malformed or multi-range headers.
absl::StatusOr<std::pair<uint64_t, uint64_t>> ParseByteRange(std::string_view header, uint64_t size);

}  // namespace cairn::api

#endif  // CAIRN_API_DATA_API_H_
