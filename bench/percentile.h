// The p-th percentile (0..1) of latency samples, for the benchmark tools'
// JSON lines. Reorders `samples`; 0 when there are none.
#ifndef CAIRN_BENCH_PERCENTILE_H_
#define CAIRN_BENCH_PERCENTILE_H_

#include <algorithm>
#include <cstddef>
#include <vector>

namespace cairn::bench {

inline double Percentile(std::vector<double>& samples, double p) {
  if (samples.empty()) return 0;
  size_t k = std::min(samples.size() - 1, static_cast<size_t>(p * static_cast<double>(samples.size())));
  std::nth_element(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(k), samples.end());
  return samples[k];
}

}  // namespace cairn::bench

#endif  // CAIRN_BENCH_PERCENTILE_H_
