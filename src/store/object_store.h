// ObjectStore: immutable, content-addressed blobs named by their SHA-256.
// Artifacts, dataset chunks, manifests and model files all live here;
// identical content is stored once.
//
// Implementations: LocalObjectStore (local/sharded files; store/local_object_store.h).
// An S3-compatible one will follow and must pass store/object_store_test.cc.
//
// Integrity: readers verify the digest of what they return. A full read
// (ObjectReader to EOF, Get) fails with kDataLoss instead of returning the
// last bytes when the stored bytes do not hash to the object's name.
//
// Thread-safety: ObjectStore is thread-safe. Writers and readers are not
// (one thread each), and must not outlive their store.
//
// Usage:
//   ASSIGN_OR_RETURN(Digest d, store.Put("bytes"));
//   ASSIGN_OR_RETURN(auto w, store.NewWriter());   // streaming, bounded memory
//   RETURN_IF_ERROR(w->Append(chunk1));
//   RETURN_IF_ERROR(w->Append(chunk2));
//   ASSIGN_OR_RETURN(ObjectInfo info, w->Commit()); // durable once this returns
//   ASSIGN_OR_RETURN(auto r, store.Open(info.digest));
//   char buf[65536];
//   for (;;) { ASSIGN_OR_RETURN(size_t n, r->Read(buf, sizeof buf)); if (n == 0) break; ... }
#ifndef CAIRN_STORE_OBJECT_STORE_H_
#define CAIRN_STORE_OBJECT_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/sha256.h"
#include "base/status.h"

namespace cairn::store {

struct ObjectInfo {
  Digest digest;
  uint64_t size = 0;
  // When the object was last written or re-put (List only; 0 if unknown).
  // Garbage collection spares objects younger than its grace period.
  int64_t mtime_micros = 0;
};

// Streams a new object in. Nothing is visible until Commit() returns OK; a
// writer destroyed without Commit() leaves nothing behind.
class ObjectWriter {
 public:
  virtual ~ObjectWriter() = default;
  virtual absl::Status Append(std::string_view data) = 0;
  // Makes the object durable and visible under its digest. If an object with
  // the same digest already exists, the new bytes are discarded and the
  // existing object is freshened (its mtime_micros set to now).
  virtual absl::StatusOr<ObjectInfo> Commit() = 0;
};

// Streams an object out.
class ObjectReader {
 public:
  virtual ~ObjectReader() = default;
  // Size of the object (or of the requested range).
  virtual uint64_t size() const = 0;
  // Reads up to `n` bytes; 0 at the end. For a full read, the call that
  // reaches the end verifies the digest and returns kDataLoss on mismatch.
  virtual absl::StatusOr<size_t> Read(char* scratch, size_t n) = 0;
};

// Writes many objects and makes them durable together: each object is
// written at once, but synced and made visible only by Commit(), which pays
// the waits for all of them at the end (most data is already written back by
// then) instead of one fsync per object as it goes. Until Commit() returns
// OK, none of the batch's objects is visible; a batch destroyed without
// Commit() leaves nothing behind.
//
// Thread-safety: PutHashed/Put may be called from several threads at once;
// Commit() must not overlap them.
class ObjectWriteBatch {
 public:
  virtual ~ObjectWriteBatch() = default;
  // Adds an object whose digest the caller computed (see
  // ObjectStore::PutHashed). REQUIRES: digest == SHA-256(data).
  virtual absl::Status PutHashed(const Digest& digest, std::string_view data) = 0;
  absl::StatusOr<Digest> Put(std::string_view data);
  virtual absl::Status Commit() = 0;
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;

  virtual absl::StatusOr<std::unique_ptr<ObjectWriter>> NewWriter() = 0;
  // Whole-object reader, verified at the end. kNotFound if absent.
  virtual absl::StatusOr<std::unique_ptr<ObjectReader>> Open(const Digest& digest) = 0;
  // Reader of bytes [offset, offset + length) (clamped to the object's size);
  // a range is not digest-verified (fsck and full reads are).
  // kOutOfRange if offset > size.
  virtual absl::StatusOr<std::unique_ptr<ObjectReader>> OpenRange(const Digest& digest, uint64_t offset,
                                                                  uint64_t length) = 0;
  virtual absl::StatusOr<bool> Has(const Digest& digest) = 0;
  // Size in bytes; kNotFound if absent.
  virtual absl::StatusOr<uint64_t> Size(const Digest& digest) = 0;
  // Removes an object (used by garbage collection only); OK if absent.
  virtual absl::Status Delete(const Digest& digest) = 0;
  // Calls `fn` for every stored object; stops early and returns its error if
  // `fn` fails.
  virtual absl::Status List(const std::function<absl::Status(const ObjectInfo&)>& fn) = 0;

  // Stores `data` whose SHA-256 the caller has just computed from these very
  // bytes, so the store need not hash them again (dataset ingest hashes every
  // chunk once and cannot afford a second pass). REQUIRES: digest ==
  // SHA-256(data); a wrong digest is a bug in the caller, reported as corrupt
  // by full reads and fsck. The default implementation hashes anyway and
  // fails with kInternal on a mismatch.
  virtual absl::Status PutHashed(const Digest& digest, std::string_view data);

  // A batch of writes made durable together (see ObjectWriteBatch). The
  // default implementation writes each object durably at once.
  virtual absl::StatusOr<std::unique_ptr<ObjectWriteBatch>> NewWriteBatch();

  // Convenience: whole-object put and get through the streaming calls.
  absl::StatusOr<Digest> Put(std::string_view data);
  absl::StatusOr<std::string> Get(const Digest& digest);
  // Reads the whole object and checks its digest: OK, kDataLoss, or kNotFound.
  absl::Status Verify(const Digest& digest);
};

}  // namespace cairn::store

#endif  // CAIRN_STORE_OBJECT_STORE_H_
