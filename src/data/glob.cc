#include "data/glob.h"

#include <cstdint>
#include <string>

namespace cairn::data {
namespace {

constexpr size_t kNone = std::string_view::npos;

// Length of the UTF-8 sequence starting at s[i] (1 for a byte that does not
// start a well-formed sequence, so malformed input still advances) and its
// code point in *cp. Paths are validated UTF-8; patterns need not be.
size_t DecodeChar(std::string_view s, size_t i, uint32_t* cp) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) {
    *cp = c;
    return 1;
  }
  uint32_t v = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) {
      *cp = c;
      return 1;
    }
    v = (v << 6) | (b(i + k) & 0x3F);
  }
  *cp = v;
  return n;
}

// One character of a bracket expression at p[i], honouring '\' escapes.
// Returns its length in the pattern, 0 if the pattern ends first.
size_t ClassChar(std::string_view p, size_t i, uint32_t* cp) {
  if (i >= p.size()) return 0;
  if (p[i] != '\\') return DecodeChar(p, i, cp);
  if (i + 1 >= p.size()) return 0;
  return 1 + DecodeChar(p, i + 1, cp);
}

struct ClassResult {
  size_t end = 0;               // index just past the closing ']'; 0 if malformed
  bool matched = false;         // whether `c` is in the class
  const char* error = nullptr;  // why it is malformed
};

// Parses the bracket expression opening at p[open] == '[' and tests code
// point `c` against it. Validation and matching share this one parser so
// they cannot disagree about where a class ends.
ClassResult ParseClass(std::string_view p, size_t open, uint32_t c) {
  ClassResult r;
  size_t i = open + 1;
  bool negate = false;
  if (i < p.size() && p[i] == '!') {
    negate = true;
    ++i;
  }
  bool in = false;
  for (bool first = true;; first = false) {
    if (i >= p.size()) {
      r.error = "unclosed '['";
      return r;
    }
    if (p[i] == ']' && !first) {
      r.end = i + 1;
      r.matched = in != negate;
      return r;
    }
    uint32_t lo = 0;
    size_t n = ClassChar(p, i, &lo);
    if (n == 0) {
      r.error = "unclosed '['";
      return r;
    }
    i += n;
    uint32_t hi = lo;
    if (i + 1 < p.size() && p[i] == '-' && p[i + 1] != ']') {
      n = ClassChar(p, i + 1, &hi);
      if (n == 0) {
        r.error = "unclosed '['";
        return r;
      }
      if (hi < lo) {
        r.error = "reversed range in '[...]'";
        return r;
      }
      i += 1 + n;
    }
    if (lo <= c && c <= hi) in = true;
  }
}

// Matches one pattern element (not '*') at p[pi] against the character at
// s[si]. On success stores where both continue.
bool MatchOne(std::string_view p, size_t pi, std::string_view s, size_t si, size_t* p_next, size_t* s_next) {
  uint32_t c = 0;
  size_t clen = DecodeChar(s, si, &c);
  switch (p[pi]) {
    case '?':
      *p_next = pi + 1;
      *s_next = si + clen;
      return true;
    case '[': {
      ClassResult r = ParseClass(p, pi, c);
      if (r.end == 0 || !r.matched) return false;
      *p_next = r.end;
      *s_next = si + clen;
      return true;
    }
    case '\\':
      if (pi + 1 >= p.size()) return false;
      ++pi;
      break;
    default:
      break;
  }
  uint32_t unused = 0;
  size_t plen = DecodeChar(p, pi, &unused);
  if (s.substr(si, plen) != p.substr(pi, plen)) return false;
  *p_next = pi + plen;
  *s_next = si + plen;
  return true;
}

// `*`, `?`, classes and escapes within one segment (neither side holds '/').
bool MatchSegment(std::string_view p, std::string_view s) {
  size_t pi = 0;
  size_t si = 0;
  size_t star_p = kNone;  // pattern index just past the most recent '*'
  size_t star_s = 0;      // where that '*' currently stops consuming
  while (si < s.size()) {
    if (pi < p.size() && p[pi] == '*') {
      while (pi < p.size() && p[pi] == '*') ++pi;
      star_p = pi;
      star_s = si;
      continue;
    }
    size_t p_next = 0;
    size_t s_next = 0;
    if (pi < p.size() && MatchOne(p, pi, s, si, &p_next, &s_next)) {
      pi = p_next;
      si = s_next;
      continue;
    }
    if (star_p == kNone) return false;
    // Let the last '*' swallow one more character and retry after it.
    // Earlier stars never need revisiting: whatever the later part needs
    // is reachable by the last star alone.
    uint32_t unused = 0;
    star_s += DecodeChar(s, star_s, &unused);
    pi = star_p;
    si = star_s;
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

// Walks the segments of a pattern. Positions are byte offsets of segment
// starts, plus two sentinels past the end: `virtual_star` stands for the
// implicit `*` segment after a trailing `**` (which makes `dir/**` mean
// `dir/**/*`: at least one segment under dir), and `end`.
struct PatternSegments {
  std::string_view pattern;
  size_t virtual_star() const { return pattern.size() + 1; }
  size_t end() const { return pattern.size() + 2; }
  std::string_view At(size_t pos, size_t* next) const {
    if (pos == virtual_star()) {
      *next = end();
      return "*";
    }
    size_t slash = pattern.find('/', pos);
    if (slash == kNone) {
      std::string_view seg = pattern.substr(pos);
      *next = seg == "**" ? virtual_star() : end();
      return seg;
    }
    *next = slash + 1;
    return pattern.substr(pos, slash - pos);
  }
};

struct PathSegments {
  std::string_view path;
  size_t end() const { return path.size() + 1; }
  std::string_view At(size_t pos, size_t* next) const {
    size_t slash = path.find('/', pos);
    if (slash == kNone) {
      *next = end();
      return path.substr(pos);
    }
    *next = slash + 1;
    return path.substr(pos, slash - pos);
  }
};

absl::Status BadGlob(std::string_view pattern, std::string_view why) {
  return absl::InvalidArgumentError(fmt::format("invalid glob '{}': {}", pattern, why));
}

}  // namespace

absl::Status ValidateGlob(std::string_view pattern) {
  if (pattern.empty()) return BadGlob(pattern, "empty pattern");
  if (pattern.front() == '/') {
    return BadGlob(pattern, "patterns are relative to the dataset root and must not start with '/'");
  }
  size_t start = 0;
  for (;;) {
    size_t slash = pattern.find('/', start);
    std::string_view seg = pattern.substr(start, slash == kNone ? kNone : slash - start);
    if (seg.empty()) {
      return BadGlob(pattern, slash == kNone ? "trailing '/' (write 'dir/**' for everything under dir)"
                                             : "empty path segment ('//')");
    }
    if (seg == "." || seg == "..") return BadGlob(pattern, "'.' and '..' segments never match a dataset path");
    for (size_t i = 0; i < seg.size();) {
      if (seg[i] == '[') {
        ClassResult r = ParseClass(seg, i, 0);
        if (r.end == 0) return BadGlob(pattern, r.error);
        i = r.end;
      } else if (seg[i] == '\\') {
        if (i + 1 >= seg.size()) return BadGlob(pattern, "'\\' escapes nothing (at the end of a segment)");
        i += 2;
      } else {
        ++i;
      }
    }
    if (slash == kNone) return absl::OkStatus();
    start = slash + 1;
  }
}

bool MatchGlob(std::string_view pattern, std::string_view path) {
  const PatternSegments pat{pattern};
  const PathSegments str{path};
  size_t pp = 0;
  size_t sp = 0;
  size_t star_pp = kNone;  // pattern position just past the most recent `**`
  size_t star_sp = 0;      // where that `**` currently stops consuming
  while (sp != str.end()) {
    if (pp != pat.end()) {
      size_t p_next = 0;
      std::string_view pseg = pat.At(pp, &p_next);
      if (pseg == "**") {
        star_pp = p_next;
        star_sp = sp;
        pp = p_next;
        continue;
      }
      size_t s_next = 0;
      std::string_view sseg = str.At(sp, &s_next);
      if (MatchSegment(pseg, sseg)) {
        pp = p_next;
        sp = s_next;
        continue;
      }
    }
    if (star_pp == kNone) return false;
    // The same backtracking as MatchSegment, one level up: the last `**`
    // absorbs one more whole segment.
    str.At(star_sp, &star_sp);
    pp = star_pp;
    sp = star_sp;
  }
  while (pp != pat.end()) {
    size_t p_next = 0;
    if (pat.At(pp, &p_next) != "**") return false;
    pp = p_next;
  }
  return true;
}

}  // namespace cairn::data
