// The shared ObjectStore test suite (object_store_test.cc). Every
// ObjectStore implementation instantiates it with a factory for its harness:
//
//   INSTANTIATE_TEST_SUITE_P(Local, ObjectStoreTest,
//       ::testing::Values(ObjectStoreTestParam{"Mem", &MakeMemHarness}), ParamName);
//
// and links object_store_test.cc into its test binary.
#ifndef CAIRN_STORE_OBJECT_STORE_TEST_H_
#define CAIRN_STORE_OBJECT_STORE_TEST_H_

#include <functional>
#include <memory>
#include <string>

#include "base/fault_injection_env.h"
#include "base/testing.h"
#include "store/object_store.h"

namespace cairn::store {

// Owns a store under test plus the test hooks the shared suite needs.
class ObjectStoreHarness {
 public:
  virtual ~ObjectStoreHarness() = default;
  virtual ObjectStore& store() = 0;
  // Damages the stored bytes of `digest` behind the store's back.
  virtual absl::Status FlipByteForTest(const Digest& digest, uint64_t offset) = 0;
  virtual absl::Status TruncateForTest(const Digest& digest, uint64_t size) = 0;
  virtual absl::Status AppendGarbageForTest(const Digest& digest) = 0;
  // Writes that started but were neither committed nor cleaned up (temp
  // files, open multipart uploads...).
  virtual absl::StatusOr<int> PendingWritesForTest() = 0;
  // The fault injector under the store, or nullptr if the implementation has
  // none (fault tests are then skipped).
  virtual FaultInjectionEnv* faults() = 0;
};

struct ObjectStoreTestParam {
  std::string name;
  std::function<std::unique_ptr<ObjectStoreHarness>()> make;
};

inline std::string ObjectStoreTestParamName(const ::testing::TestParamInfo<ObjectStoreTestParam>& info) {
  return info.param.name;
}

class ObjectStoreTest : public ::testing::TestWithParam<ObjectStoreTestParam> {
 protected:
  void SetUp() override { harness_ = GetParam().make(); }
  ObjectStore& store() { return harness_->store(); }
  std::unique_ptr<ObjectStoreHarness> harness_;
};

}  // namespace cairn::store

#endif  // CAIRN_STORE_OBJECT_STORE_TEST_H_
