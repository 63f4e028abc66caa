#include "serving/payload_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/env.h"

namespace cairn::serving {
namespace {

// IEEE 754 half -> float (exact: every half is a float).
float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000 | (mantissa << 13);  // inf / NaN
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;  // +-0
  } else {
    // Subnormal half: normalise.
    exponent = 113;
    while ((mantissa & 0x400) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

template <typename T>
Json IntegerArray(const Tensor& t) {
  Json data = Json::array();
  for (T v : t.values<T>()) data.push_back(v);
  return data;
}

template <typename T>
Json FloatArray(const Tensor& t) {
  Json data = Json::array();
  for (T v : t.values<T>()) data.push_back(JsonDouble(static_cast<double>(v)));
  return data;
}

Json TensorData(const Tensor& t) {
  switch (t.datatype) {
    case DataType::kBool: {
      Json data = Json::array();
      for (char c : t.data) data.push_back(c != 0);
      return data;
    }
    case DataType::kUint8:
      return IntegerArray<uint8_t>(t);
    case DataType::kUint16:
      return IntegerArray<uint16_t>(t);
    case DataType::kUint32:
      return IntegerArray<uint32_t>(t);
    case DataType::kUint64:
      return IntegerArray<uint64_t>(t);
    case DataType::kInt8:
      return IntegerArray<int8_t>(t);
    case DataType::kInt16:
      return IntegerArray<int16_t>(t);
    case DataType::kInt32:
      return IntegerArray<int32_t>(t);
    case DataType::kInt64:
      return IntegerArray<int64_t>(t);
    case DataType::kFp16: {
      Json data = Json::array();
      for (uint16_t h : t.values<uint16_t>()) data.push_back(JsonDouble(HalfToFloat(h)));
      return data;
    }
    case DataType::kFp32:
      return FloatArray<float>(t);
    case DataType::kFp64:
      return FloatArray<double>(t);
    case DataType::kBytes: {
      Json data = Json::array();
      for (std::string_view e : t.byte_elements()) data.push_back(std::string(e));
      return data;
    }
  }
  return nullptr;
}

Json TensorsToJson(const std::vector<Tensor>& tensors) {
  Json out = Json::array();
  for (const Tensor& t : tensors) out.push_back(TensorToJson(t));
  return out;
}

// "YYYY-MM-DD" (UTC) of a time in ms since the epoch.
std::string UtcDay(int64_t time_ms) {
  std::time_t seconds = static_cast<std::time_t>(time_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  return fmt::format("{:04}-{:02}-{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

absl::Status ErrnoError(std::string_view what, const std::string& path, int err) {
  std::string message = fmt::format("payload log: {} {}: {}", what, path, std::strerror(err));
  return err == ENOSPC || err == EDQUOT ? absl::ResourceExhaustedError(message) : absl::InternalError(message);
}

}  // namespace

Json TensorToJson(const Tensor& tensor) {
  Json out = {{"name", tensor.name}, {"datatype", std::string(DataTypeName(tensor.datatype))},
              {"shape", tensor.shape}};
  // Tensors here were validated or produced by a backend; a malformed one is
  // still logged, without its data, rather than read out of bounds.
  out["data"] = tensor.CheckConsistent().ok() ? TensorData(tensor) : Json(nullptr);
  return out;
}

Json PredictionRecordToJson(const PredictionRecord& record) {
  Json out = {{"prediction_id", record.prediction_id},
              {"time_ms", record.time_ms},
              {"deployment", record.deployment},
              {"model", record.model},
              {"version", record.version},
              {"role", record.role},
              {"latency_us", record.latency_us},
              {"inputs", TensorsToJson(record.inputs)},
              {"outputs", TensorsToJson(record.outputs)}};
  if (!record.error.empty()) out["error"] = record.error;
  return out;
}

std::string DeploymentFolderName(std::string_view deployment) {
  std::string out;
  for (size_t i = 0; i < deployment.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(deployment[i]);
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                 c == '-' || (c == '.' && i > 0);
    if (plain) {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out.empty() ? "%00" : out;
}

// One deployment's file of the current day (writer thread only).
struct PayloadLog::OpenFile {
  std::string deployment;
  std::string day;
  std::string path;
  int fd = -1;
  bool dirty = false;  // written since the last sync

  ~OpenFile() {
    if (fd >= 0) ::close(fd);
  }
};

absl::StatusOr<std::unique_ptr<PayloadLog>> PayloadLog::Create(PayloadLogOptions options,
                                                               std::shared_ptr<Counter> dropped) {
  if (options.dir.empty()) return absl::InvalidArgumentError("payload log: no directory");
  if (options.queue_capacity == 0) return absl::InvalidArgumentError("payload log: queue_capacity must be > 0");
  if (options.sync_interval_ms < 0) return absl::InvalidArgumentError("payload log: sync_interval_ms must be >= 0");
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) {
    return absl::InternalError(fmt::format("payload log: cannot create {}: {}", options.dir, ec.message()));
  }
  return std::unique_ptr<PayloadLog>(new PayloadLog(std::move(options), std::move(dropped)));
}

PayloadLog::PayloadLog(PayloadLogOptions options, std::shared_ptr<Counter> dropped)
    : options_(std::move(options)), dropped_(std::move(dropped)) {
  writer_ = std::thread([this] { WriterLoop(); });
}

PayloadLog::~PayloadLog() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  writer_.join();
}

void PayloadLog::CountDropped(uint64_t n) {
  dropped_count_.fetch_add(n, std::memory_order_relaxed);
  if (dropped_ != nullptr) dropped_->Increment(n);
}

void PayloadLog::Record(PredictionRecord record) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_ && queue_.size() < options_.queue_capacity) {
      queue_.push_back(std::move(record));
      ++queued_seq_;
      return;
    }
  }
  CountDropped(1);
}

void PayloadLog::PauseWriterForTest(bool paused) {
  absl::MutexLock lock(&mu_);
  paused_ = paused;
}

absl::Status PayloadLog::Flush() {
  absl::MutexLock lock(&mu_);
  const uint64_t target = queued_seq_;
  flush_wanted_ = std::max(flush_wanted_, target);
  mu_.Await(absl::Condition(
      +[](PayloadLog* log) ABSL_NO_THREAD_SAFETY_ANALYSIS { return log->synced_seq_ >= log->flush_wanted_; }, this));
  absl::Status error = std::move(error_);
  error_ = absl::OkStatus();
  return error;
}

absl::Status PayloadLog::Append(const std::string& deployment, const std::string& day, const std::string& lines) {
  OpenFile* file = nullptr;
  for (auto& f : files_) {
    if (f->deployment == deployment) file = f.get();
  }
  if (file != nullptr && file->day != day) {
    // A new day: the old file is complete; make it durable and close it.
    if (file->dirty && ::fdatasync(file->fd) != 0) {
      spdlog::warn("payload log: sync {}: {}", file->path, std::strerror(errno));
    }
    std::erase_if(files_, [file](const std::unique_ptr<OpenFile>& f) { return f.get() == file; });
    file = nullptr;
  }
  if (file == nullptr) {
    std::string dir = JoinPath(options_.dir, DeploymentFolderName(deployment));
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return absl::InternalError(fmt::format("payload log: cannot create {}: {}", dir, ec.message()));
    auto opened = std::make_unique<OpenFile>();
    opened->deployment = deployment;
    opened->day = day;
    opened->path = JoinPath(dir, day + ".jsonl");
    opened->fd = ::open(opened->path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (opened->fd < 0) return ErrnoError("cannot open", opened->path, errno);
    // The new file's directory entry must survive a crash too.
    int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
      ::fsync(dir_fd);
      ::close(dir_fd);
    }
    file = opened.get();
    files_.push_back(std::move(opened));
  }
  size_t done = 0;
  while (done < lines.size()) {
    ssize_t n = ::write(file->fd, lines.data() + done, lines.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot write", file->path, errno);
    }
    done += static_cast<size_t>(n);
  }
  file->dirty = true;
  return absl::OkStatus();
}

absl::Status PayloadLog::SyncAll() {
  absl::Status status;
  for (auto& f : files_) {
    if (!f->dirty) continue;
    if (::fdatasync(f->fd) != 0) {
      if (status.ok()) status = ErrnoError("cannot sync", f->path, errno);
      continue;
    }
    f->dirty = false;
  }
  return status;
}

void PayloadLog::WriterLoop() {
  using Clock = std::chrono::steady_clock;
  const auto sync_interval = std::chrono::milliseconds(options_.sync_interval_ms);
  Clock::time_point last_sync = Clock::now();
  uint64_t written_seq = 0;
  bool unsynced = false;
  std::deque<PredictionRecord> records;
  while (true) {
    bool stop;
    bool flush;
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return stopping_ || (!paused_ && (!queue_.empty() || flush_wanted_ > synced_seq_));
      };
      if (unsynced) {
        // Wake up by the next sync time at the latest.
        auto wait = std::max(sync_interval - (Clock::now() - last_sync), Clock::duration::zero());
        mu_.AwaitWithTimeout(absl::Condition(&has_work),
                             absl::FromChrono(std::chrono::duration_cast<std::chrono::microseconds>(wait)));
      } else {
        mu_.Await(absl::Condition(&has_work));
      }
      if (!paused_ || stopping_) records.swap(queue_);
      stop = stopping_ && queue_.empty() && records.empty();
      flush = flush_wanted_ > synced_seq_ || stopping_;
    }

    // Group consecutive lines per file so that each file gets one write.
    std::vector<std::pair<std::pair<std::string, std::string>, std::pair<std::string, uint64_t>>> groups;
    for (PredictionRecord& r : records) {
      std::string line = PredictionRecordToJson(r).dump(-1, ' ', false, Json::error_handler_t::replace);
      line += '\n';
      std::string day = UtcDay(r.time_ms);
      auto it = std::find_if(groups.begin(), groups.end(),
                             [&](const auto& g) { return g.first.first == r.deployment && g.first.second == day; });
      if (it == groups.end()) {
        groups.push_back({{r.deployment, std::move(day)}, {std::move(line), 1}});
      } else {
        it->second.first += line;
        ++it->second.second;
      }
    }
    absl::Status status;
    for (const auto& [key, content] : groups) {
      absl::Status s = Append(key.first, key.second, content.first);
      if (!s.ok()) {
        CountDropped(content.second);
        spdlog::warn("{} ({} records lost)", s.message(), content.second);
        if (status.ok()) status = s;
      }
    }
    written_seq += records.size();
    unsynced = unsynced || !records.empty();
    records.clear();

    bool synced = false;
    if (unsynced && (flush || Clock::now() - last_sync >= sync_interval)) {
      absl::Status s = SyncAll();
      if (!s.ok() && status.ok()) status = s;
      last_sync = Clock::now();
      unsynced = false;
      synced = true;
    } else if (!unsynced) {
      synced = true;  // nothing written since the last sync
    }
    {
      absl::MutexLock lock(&mu_);
      if (!status.ok() && error_.ok()) error_ = status;
      if (synced) synced_seq_ = written_seq;
    }
    if (stop) break;
  }
  files_.clear();
}

}  // namespace cairn::serving
