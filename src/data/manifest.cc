#include "data/manifest.h"

#include "absl/container/flat_hash_set.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <optional>

namespace cairn::data {
namespace {

constexpr std::string_view kHeader = "cairn-manifest 1\n";
constexpr size_t kMaxPathBytes = 4096;

absl::Status BadPath(std::string_view path, std::string_view why) {
  return absl::InvalidArgumentError(
      fmt::format("invalid dataset path '{}': {}", path.substr(0, 200), why));
}

// Length of the UTF-8 sequence starting at s[i], or 0 if it is invalid.
size_t Utf8Length(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  }
  uint32_t cp = n == 1 ? c : n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (b(i + k) & 0x3F);
  // Overlong forms, surrogates and values past U+10FFFF are invalid.
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return 0;
  return n;
}

bool Unreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-' || c == '~' || c == '/';
}

void AppendEncodedPath(std::string& out, std::string_view path) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : path) {
    if (Unreserved(c)) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
}

std::optional<std::string> DecodePath(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int v = 0;
    auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
    if (ec != std::errc() || p != s.data() + i + 3) return std::nullopt;
    out += static_cast<char>(v);
    i += 2;
  }
  return out;
}

template <typename T>
bool ParseNumber(std::string_view s, T* out, int base = 10) {
  if (s.empty() || (s.size() > 1 && s[0] == '0' && base == 10)) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, base);
  return ec == std::errc() && p == s.data() + s.size();
}

std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t start = 0;
  for (;;) {
    size_t sp = line.find(' ', start);
    fields.push_back(line.substr(start, sp == std::string_view::npos ? std::string_view::npos : sp - start));
    if (sp == std::string_view::npos) return fields;
    start = sp + 1;
  }
}

}  // namespace

absl::Status ValidateDatasetPath(std::string_view path) {
  if (path.empty()) return BadPath(path, "empty");
  if (path.size() > kMaxPathBytes) return BadPath(path, "longer than 4096 bytes");
  if (path.front() == '/') return BadPath(path, "absolute paths are not allowed");
  for (size_t i = 0; i < path.size();) {
    unsigned char c = static_cast<unsigned char>(path[i]);
    if (c == 0) return BadPath(path, "contains a NUL byte");
    if (c < 0x20 || c == 0x7F) return BadPath(path, "contains a control character");
    if (c == '\\') return BadPath(path, "contains a backslash");
    size_t n = Utf8Length(path, i);
    if (n == 0) return BadPath(path, "not valid UTF-8");
    i += n;
  }
  size_t start = 0;
  for (;;) {
    size_t slash = path.find('/', start);
    std::string_view seg =
        path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (seg.empty()) return BadPath(path, "empty path segment");
    if (seg == "." || seg == "..") return BadPath(path, "'.' and '..' segments are not allowed");
    if (slash == std::string_view::npos) return absl::OkStatus();
    start = slash + 1;
  }
}

absl::Status DatasetManifest::Normalize() {
  for (const ManifestFile& f : files) {
    RETURN_IF_ERROR(ValidateDatasetPath(f.path));
    if (f.mode > 07777) {
      return absl::InvalidArgumentError(fmt::format("'{}': mode {:o} has bits beyond permissions", f.path, f.mode));
    }
    uint64_t sum = 0;
    for (const ChunkRef& c : f.chunks) {
      if (c.size == 0) return absl::InvalidArgumentError(fmt::format("'{}': empty chunk", f.path));
      if (sum + c.size < sum) return absl::InvalidArgumentError(fmt::format("'{}': chunk sizes overflow", f.path));
      sum += c.size;
    }
    if (sum != f.size) {
      return absl::InvalidArgumentError(
          fmt::format("'{}': chunks hold {} bytes but the file has {}", f.path, sum, f.size));
    }
  }
  std::sort(files.begin(), files.end(), [](const ManifestFile& a, const ManifestFile& b) { return a.path < b.path; });
  for (size_t i = 1; i < files.size(); ++i) {
    if (files[i].path == files[i - 1].path) {
      return absl::InvalidArgumentError(fmt::format("duplicate path '{}'", files[i].path));
    }
  }
  // A file cannot also be a directory ("a" beside "a/b"). Sorted order does
  // not put them next to each other ("a", "a.txt", "a/b"), so every parent
  // directory of every file is looked up.
  absl::flat_hash_set<std::string_view> paths;
  paths.reserve(files.size());
  for (const ManifestFile& f : files) paths.insert(f.path);
  for (const ManifestFile& f : files) {
    std::string_view p = f.path;
    for (size_t slash = p.find('/'); slash != std::string_view::npos; slash = p.find('/', slash + 1)) {
      if (paths.contains(p.substr(0, slash))) {
        return absl::InvalidArgumentError(fmt::format("'{}' is a file and also a directory", p.substr(0, slash)));
      }
    }
  }
  return absl::OkStatus();
}

std::string DatasetManifest::Serialize() const {
  std::string out(kHeader);
  for (const ManifestFile& f : files) {
    fmt::format_to(std::back_inserter(out), "file {:04o} {} {} ", f.mode, f.size, f.chunks.size());
    AppendEncodedPath(out, f.path);
    out += '\n';
    for (const ChunkRef& c : f.chunks) fmt::format_to(std::back_inserter(out), "chunk {} {}\n", c.digest.ToHex(), c.size);
  }
  return out;
}

Digest DatasetManifest::ComputeDigest() const { return Sha256::Of(Serialize()); }

uint64_t DatasetManifest::TotalBytes() const {
  uint64_t total = 0;
  for (const ManifestFile& f : files) total += f.size;
  return total;
}

absl::StatusOr<DatasetManifest> DatasetManifest::Parse(std::string_view text) {
  if (text.substr(0, kHeader.size()) != kHeader) {
    return absl::InvalidArgumentError("not a Cairn manifest (missing 'cairn-manifest 1' header)");
  }
  DatasetManifest m;
  size_t pos = kHeader.size();
  int line_no = 1;
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(fmt::format("manifest line {}: {}", line_no, why));
  };
  auto next_line = [&](std::string_view* line) {
    if (pos >= text.size()) return false;
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) return false;  // every line ends with '\n'
    *line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    return true;
  };
  std::string_view line;
  while (pos < text.size()) {
    if (!next_line(&line)) return bad("truncated (no final newline)");
    std::vector<std::string_view> f = SplitFields(line);
    ManifestFile file;
    size_t count = 0;
    if (f.size() != 5 || f[0] != "file") return bad("expected 'file MODE SIZE CHUNKS PATH'");
    if (f[1].size() != 4 || !ParseNumber(f[1], &file.mode, 8)) return bad("bad mode");
    if (!ParseNumber(f[2], &file.size) || !ParseNumber(f[3], &count)) return bad("bad size or chunk count");
    if (count > file.size) return bad("more chunks than bytes");
    auto path = DecodePath(f[4]);
    if (!path) return bad("bad path encoding");
    file.path = std::move(*path);
    // Each chunk line takes at least 74 bytes: never reserve more than the
    // text can hold, whatever the (untrusted) count says.
    file.chunks.reserve(std::min(count, (text.size() - pos) / 74));
    for (size_t i = 0; i < count; ++i) {
      if (!next_line(&line)) return bad("truncated chunk list");
      std::vector<std::string_view> c = SplitFields(line);
      ChunkRef ref;
      if (c.size() != 3 || c[0] != "chunk") return bad("expected 'chunk DIGEST SIZE'");
      auto digest = Digest::FromHex(c[1]);
      if (!digest.ok() || !ParseNumber(c[2], &ref.size)) return bad("bad chunk digest or size");
      ref.digest = *digest;
      file.chunks.push_back(ref);
    }
    m.files.push_back(std::move(file));
  }
  RETURN_IF_ERROR(m.Normalize());
  // Only the canonical form is accepted: same order, same encodings, so that
  // a manifest's digest is a function of its content alone.
  if (m.Serialize() != text) return absl::InvalidArgumentError("manifest is not in canonical form");
  return m;
}

}  // namespace cairn::data
