// A large artifact streams through the real server in bounded memory:
// upload 768 MiB through the mlflow-artifacts proxy, check the server's peak
// RSS stayed far below that, download it and compare digests.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "base/json.h"
#include "base/sha256.h"
#include "base/testing.h"
#include "http/http.h"
#include "tests/support/server_process.h"

namespace cairn {
namespace {

using ::cairn::testing::CairnBinary;
using ::cairn::testing::IsOk;
using ::cairn::testing::ServerProcess;

TEST(LargeArtifactTest, UploadAndDownloadInBoundedMemory) {
  constexpr uint64_t kSize = 768ull << 20;
  cairn::testing::ScopedTempDir tmp;
  auto server = ServerProcess::Start(CairnBinary(), tmp.path() + "/data");
  ASSERT_THAT(server, IsOk());
  auto client = http::Client::Create("127.0.0.1", (*server)->port());
  ASSERT_THAT(client, IsOk());
  auto run = (*client)->PostJson("/api/2.0/mlflow/runs/create", Json{{"experiment_id", "0"}});
  ASSERT_THAT(run, IsOk());
  std::string run_id = (*run)["run"]["info"]["run_id"];
  std::string target = "/api/2.0/mlflow-artifacts/artifacts/0/" + run_id + "/artifacts/big.bin";

  // A deterministic, non-repeating byte stream, hashed as it is sent.
  Sha256 sent;
  uint64_t produced = 0;
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto source = [&](char* scratch, size_t n) -> absl::StatusOr<size_t> {
    size_t len = static_cast<size_t>(std::min<uint64_t>(n, kSize - produced)) & ~size_t{7};
    for (size_t i = 0; i < len; i += 8) {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      std::memcpy(scratch + i, &state, 8);
    }
    sent.Update(std::string_view(scratch, len));
    produced += len;
    return len;
  };
  auto put = (*client)->SendStream(http::Method::kPut, target, kSize, source);
  ASSERT_THAT(put, IsOk());
  ASSERT_EQ(put->status, 200) << put->body;
  Digest sent_digest = sent.Finish();

  Sha256 received;
  uint64_t received_bytes = 0;
  auto got = (*client)->Download(target, [&](std::string_view chunk) {
    received.Update(chunk);
    received_bytes += chunk.size();
    return absl::OkStatus();
  });
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(received_bytes, kSize);
  EXPECT_EQ(received.Finish(), sent_digest);
  EXPECT_EQ(got->Header("X-Content-Digest").value_or(""), "sha256:" + sent_digest.ToHex());

  // The whole upload and download went through the server in chunks.
  uint64_t peak = (*server)->PeakRssBytes();
  EXPECT_GT(peak, 0u);
  std::printf("server peak RSS: %llu MiB\n", static_cast<unsigned long long>(peak >> 20));
  EXPECT_LT(peak, 64ull << 20) << "server peak RSS " << (peak >> 20) << " MiB for a " << (kSize >> 20)
                                << " MiB artifact";
  EXPECT_EQ((*server)->Kill(SIGTERM), 0);
}

}  // namespace
}  // namespace cairn
