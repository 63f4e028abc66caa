#include "serving/payload_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <span>
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

// Appends `s` as a JSON string; bytes that are not valid UTF-8 become
// U+FFFD (nlohmann's replacement rule). Plain ASCII, the common case, is
// copied as it is.
void AppendString(std::string& out, std::string_view s) {
  bool plain = true;
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x80 || c == '"' || c == '\\') {
      plain = false;
      break;
    }
  }
  if (plain) {
    out.push_back('"');
    out.append(s);
    out.push_back('"');
    return;
  }
  out += Json(std::string(s)).dump(-1, ' ', false, Json::error_handler_t::replace);
}

// Element writers for AppendArray: each writes one element's text at `p`
// (at most kMaxElementChars bytes) and returns the end of what it wrote.
constexpr size_t kMaxElementChars = 32;  // "-2.2250738585072014e-308.0" is 26

template <typename T>
char* WriteInteger(char* p, T value) {
  return std::to_chars(p, p + kMaxElementChars, value).ptr;
}

template <typename T>
void AppendInteger(std::string& out, T value) {
  char buf[kMaxElementChars];
  out.append(buf, WriteInteger(buf, value));
}

char* WriteLiteral(char* p, std::string_view text) {
  std::memcpy(p, text.data(), text.size());
  return p + text.size();
}

// A float as a JSON number: the shortest text that reads back as the same
// value, with ".0" on integral values so that readers see a float; NaN and
// infinities as strings.
template <typename T>
char* WriteFloat(char* p, T value) {
  if (std::isnan(value)) return WriteLiteral(p, "\"NaN\"");
  if (std::isinf(value)) return WriteLiteral(p, value > 0 ? "\"Infinity\"" : "\"-Infinity\"");
  // Integral values below 1e5 (pixels, counts, codes) skip the search for
  // the shortest form: it is their integer text, plus ".0". From 1e5 on the
  // shortest form may be exponential ("1e+05"), and -0 keeps its sign, so
  // those take the general path.
  if (value > -1e5 && value < 1e5 && value == std::trunc(value) && !(value == 0 && std::signbit(value))) {
    p = WriteInteger(p, static_cast<int32_t>(value));
    return WriteLiteral(p, ".0");
  }
  char* start = p;
  p = std::to_chars(p, p + kMaxElementChars, value).ptr;
  if (std::find_if(start, p, [](char c) { return c == '.' || c == 'e'; }) == p) p = WriteLiteral(p, ".0");
  return p;
}

// Appends `[e0,e1,...]`, writing the elements straight into `out`: room for
// the longest text of every element is made first and the rest cut after.
template <typename T, typename Write>
void AppendArray(std::string& out, const Tensor& t, const Write& write) {
  const std::span<const T> values = t.values<T>();
  const size_t start = out.size();
  out.resize(start + 2 + values.size() * (kMaxElementChars + 1));
  char* p = out.data() + start;
  *p++ = '[';
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) *p++ = ',';
    p = write(p, values[i]);
  }
  *p++ = ']';
  out.resize(static_cast<size_t>(p - out.data()));
}

void AppendTensorData(std::string& out, const Tensor& t) {
  switch (t.datatype) {
    case DataType::kBool:
      return AppendArray<uint8_t>(out, t,
                                  [](char* p, uint8_t v) { return WriteLiteral(p, v != 0 ? "true" : "false"); });
    case DataType::kUint8:
      return AppendArray<uint8_t>(out, t, WriteInteger<uint8_t>);
    case DataType::kUint16:
      return AppendArray<uint16_t>(out, t, WriteInteger<uint16_t>);
    case DataType::kUint32:
      return AppendArray<uint32_t>(out, t, WriteInteger<uint32_t>);
    case DataType::kUint64:
      return AppendArray<uint64_t>(out, t, WriteInteger<uint64_t>);
    case DataType::kInt8:
      return AppendArray<int8_t>(out, t, WriteInteger<int8_t>);
    case DataType::kInt16:
      return AppendArray<int16_t>(out, t, WriteInteger<int16_t>);
    case DataType::kInt32:
      return AppendArray<int32_t>(out, t, WriteInteger<int32_t>);
    case DataType::kInt64:
      return AppendArray<int64_t>(out, t, WriteInteger<int64_t>);
    case DataType::kFp16:  // widened to its exact value
      return AppendArray<uint16_t>(
          out, t, [](char* p, uint16_t h) { return WriteFloat(p, static_cast<double>(HalfToFloat(h))); });
    case DataType::kFp32:
      return AppendArray<float>(out, t, WriteFloat<float>);
    case DataType::kFp64:
      return AppendArray<double>(out, t, WriteFloat<double>);
    case DataType::kBytes: {
      out.push_back('[');
      bool first = true;
      for (std::string_view e : t.byte_elements()) {
        if (!first) out.push_back(',');
        first = false;
        AppendString(out, e);
      }
      out.push_back(']');
      return;
    }
  }
  out += "null";
}

void AppendTensors(std::string& out, const std::vector<Tensor>& tensors) {
  out.push_back('[');
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendTensorJson(out, tensors[i]);
  }
  out.push_back(']');
}

constexpr int64_t kMsPerDay = 86'400'000;

// Days since the epoch (UTC) of a time in ms since the epoch.
int64_t DayNumber(int64_t time_ms) {
  return time_ms >= 0 ? time_ms / kMsPerDay : -((-time_ms + kMsPerDay - 1) / kMsPerDay);
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

void AppendTensorJson(std::string& out, const Tensor& tensor) {
  out += "{\"name\":";
  AppendString(out, tensor.name);
  out += ",\"datatype\":\"";
  out += DataTypeName(tensor.datatype);
  out += "\",\"shape\":[";
  for (size_t i = 0; i < tensor.shape.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendInteger(out, tensor.shape[i]);
  }
  out += "],\"data\":";
  // Tensors here were validated or produced by a backend; a malformed one is
  // still logged, without its data, rather than read out of bounds.
  if (tensor.CheckConsistent().ok()) {
    AppendTensorData(out, tensor);
  } else {
    out += "null";
  }
  out.push_back('}');
}

void AppendPredictionRecordLine(std::string& out, const PredictionRecord& record) {
  out += "{\"prediction_id\":";
  AppendString(out, record.prediction_id);
  out += ",\"time_ms\":";
  AppendInteger(out, record.time_ms);
  out += ",\"deployment\":";
  AppendString(out, record.deployment);
  out += ",\"model\":";
  AppendString(out, record.model);
  out += ",\"version\":";
  AppendInteger(out, record.version);
  out += ",\"role\":";
  AppendString(out, record.role);
  out += ",\"latency_us\":";
  AppendInteger(out, record.latency_us);
  out += ",\"inputs\":";
  AppendTensors(out, record.inputs);
  out += ",\"outputs\":";
  AppendTensors(out, record.outputs);
  if (!record.error.empty()) {
    out += ",\"error\":";
    AppendString(out, record.error);
  }
  out += "}\n";
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
  // Line buffers kept from batch to batch (up to kKeptBufferBytes each), so
  // that a busy log does not grow them anew for every batch.
  constexpr size_t kKeptBufferBytes = 4 << 20;
  std::vector<std::string> spare_texts;
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
      // Let records gather for a moment, so that a busy server wakes this
      // thread once per batch rather than once per request.
      auto batch_ready = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return stopping_ || paused_ || flush_wanted_ > synced_seq_ || queue_.size() >= options_.write_batch;
      };
      if (!queue_.empty() && options_.write_delay_ms > 0) {
        mu_.AwaitWithTimeout(absl::Condition(&batch_ready), absl::Milliseconds(options_.write_delay_ms));
      }
      if (!paused_ || stopping_) records.swap(queue_);
      stop = stopping_ && queue_.empty() && records.empty();
      flush = flush_wanted_ > synced_seq_ || stopping_;
    }

    // The lines of one file go out in one write.
    struct Group {
      const std::string* deployment;
      int64_t day_number;
      std::string text;
      uint64_t records = 0;
    };
    std::vector<Group> groups;
    for (const PredictionRecord& r : records) {
      const int64_t day = DayNumber(r.time_ms);
      auto it = std::find_if(groups.begin(), groups.end(),
                             [&](const Group& g) { return g.day_number == day && *g.deployment == r.deployment; });
      if (it == groups.end()) {
        it = groups.insert(groups.end(), Group{&r.deployment, day, {}});
        if (!spare_texts.empty()) {
          it->text = std::move(spare_texts.back());
          spare_texts.pop_back();
        }
      }
      AppendPredictionRecordLine(it->text, r);
      ++it->records;
    }
    absl::Status status;
    for (Group& g : groups) {
      absl::Status s = Append(*g.deployment, UtcDay(g.day_number * kMsPerDay), g.text);
      if (!s.ok()) {
        CountDropped(g.records);
        spdlog::warn("{} ({} records lost)", s.message(), g.records);
        if (status.ok()) status = s;
      }
      if (g.text.capacity() <= kKeptBufferBytes) {
        g.text.clear();
        spare_texts.push_back(std::move(g.text));
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
