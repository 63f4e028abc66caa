// Registry inputs from outside: search filters (models and versions),
// order_by clauses, page tokens and promotion policies (YAML or JSON). Any
// input is parsed or refused with a Status, never a crash; a policy that
// parses survives a round trip through its JSON form.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "registry/model_filter.h"
#include "registry/promotion_gate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  using namespace cairn::registry;
  (void)ParseModelFilter(text, FilterTarget::kRegisteredModels);
  (void)ParseModelFilter(text, FilterTarget::kModelVersions);
  (void)ParseModelOrderBy({std::string(text)}, FilterTarget::kModelVersions);
  (void)DecodePageToken(text);
  auto policy = ParsePromotionPolicy(text);
  if (policy.ok()) {
    auto again = PromotionPolicyFromJson(PromotionPolicyToJson(*policy));
    if (!again.ok() || PromotionPolicyToJson(*again) != PromotionPolicyToJson(*policy)) __builtin_trap();
  }
  return 0;
}
