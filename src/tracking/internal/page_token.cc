#include "tracking/internal/page_token.h"

#include <openssl/evp.h>

#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/json.h"

namespace cairn::tracking::internal {

std::string EncodePageToken(int64_t offset) {
  std::string json = Json{{"offset", offset}}.dump();
  std::string out(4 * ((json.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(json.data()), static_cast<int>(json.size()));
  out.resize(n);
  return out;
}

absl::StatusOr<int64_t> DecodePageToken(std::string_view token) {
  if (token.empty()) return 0;
  auto bad = [&] { return absl::InvalidArgumentError(fmt::format("Invalid page token, could not base64-decode")); };
  if (token.size() % 4 != 0 || token.size() > 256) return bad();
  std::vector<unsigned char> raw(token.size());
  int n = EVP_DecodeBlock(raw.data(), reinterpret_cast<const unsigned char*>(token.data()),
                          static_cast<int>(token.size()));
  if (n < 0) return bad();
  // EVP_DecodeBlock keeps the zero bytes that padding stands for.
  size_t pad = 0;
  if (token.size() >= 1 && token.back() == '=') ++pad;
  if (token.size() >= 2 && token[token.size() - 2] == '=') ++pad;
  std::string json(reinterpret_cast<const char*>(raw.data()), static_cast<size_t>(n) - pad);
  auto parsed = ParseJson(json);
  if (!parsed.ok() || !parsed->is_object() || !parsed->contains("offset") ||
      !(*parsed)["offset"].is_number_integer()) {
    return absl::InvalidArgumentError("Invalid page token");
  }
  int64_t offset = (*parsed)["offset"].get<int64_t>();
  if (offset < 0) return absl::InvalidArgumentError("Invalid page token: negative offset");
  return offset;
}

}  // namespace cairn::tracking::internal
