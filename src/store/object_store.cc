#include "store/object_store.h"

#include <algorithm>

#include <fmt/format.h>

namespace cairn::store {

namespace {
constexpr size_t kReadChunk = 1 << 20;
}  // namespace

absl::StatusOr<Digest> ObjectStore::Put(std::string_view data) {
  ASSIGN_OR_RETURN(std::unique_ptr<ObjectWriter> writer, NewWriter());
  RETURN_IF_ERROR(writer->Append(data));
  ASSIGN_OR_RETURN(ObjectInfo info, writer->Commit());
  return info.digest;
}

absl::StatusOr<Digest> ObjectWriteBatch::Put(std::string_view data) {
  const Digest d = Sha256::Of(data);
  RETURN_IF_ERROR(PutHashed(d, data));
  return d;
}

namespace {
// Each object durable at once: correct for any store, fast for none.
class ImmediateWriteBatch final : public ObjectWriteBatch {
 public:
  explicit ImmediateWriteBatch(ObjectStore& store) : store_(store) {}
  absl::Status PutHashed(const Digest& digest, std::string_view data) override {
    return store_.PutHashed(digest, data);
  }
  absl::Status Commit() override { return absl::OkStatus(); }

 private:
  ObjectStore& store_;
};
}  // namespace

absl::StatusOr<std::unique_ptr<ObjectWriteBatch>> ObjectStore::NewWriteBatch() {
  return std::make_unique<ImmediateWriteBatch>(*this);
}

absl::Status ObjectStore::PutHashed(const Digest& digest, std::string_view data) {
  ASSIGN_OR_RETURN(Digest actual, Put(data));
  if (actual != digest) {
    return absl::InternalError(
        fmt::format("PutHashed: the caller's digest {} is not the data's {}", digest.ToHex(), actual.ToHex()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ObjectStore::Get(const Digest& digest) {
  ASSIGN_OR_RETURN(std::unique_ptr<ObjectReader> reader, Open(digest));
  // Read straight into the result. The reader verifies the digest on the
  // call that completes the object; one more call must then report the end.
  std::string out(reader->size(), '\0');
  size_t len = 0;
  while (len < out.size()) {
    ASSIGN_OR_RETURN(size_t n, reader->Read(out.data() + len, std::min(kReadChunk, out.size() - len)));
    if (n == 0) break;
    len += n;
  }
  char extra;
  ASSIGN_OR_RETURN(size_t n, reader->Read(&extra, 1));
  if (len != out.size() || n != 0) {
    return absl::DataLossError(
        fmt::format("object {}: read {} bytes, expected {}", digest.ToHex(), len + n, out.size()));
  }
  return out;
}

absl::Status ObjectStore::Verify(const Digest& digest) {
  ASSIGN_OR_RETURN(std::unique_ptr<ObjectReader> reader, Open(digest));
  std::unique_ptr<char[]> buf(new char[kReadChunk]);
  for (;;) {
    ASSIGN_OR_RETURN(size_t n, reader->Read(buf.get(), kReadChunk));
    if (n == 0) return absl::OkStatus();
  }
}

}  // namespace cairn::store
