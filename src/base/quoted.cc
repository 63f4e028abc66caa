#include "base/quoted.h"

namespace cairn {

std::optional<std::string> ReadQuoted(std::string_view text, size_t* pos, Backslash backslash) {
  size_t i = *pos;
  const char quote = text[i++];
  std::string out;
  while (i < text.size()) {
    const char c = text[i++];
    if (c == '\\' && backslash == Backslash::kEscapes && i < text.size()) {
      const char next = text[i++];
      // Other escapes stay as written, so that a LIKE pattern keeps "\%".
      if (next != quote && next != '\\') out += '\\';
      out += next;
      continue;
    }
    if (c == quote) {
      if (i < text.size() && text[i] == quote) {
        out += quote;
        ++i;
        continue;
      }
      *pos = i;
      return out;
    }
    out += c;
  }
  *pos = i;
  return std::nullopt;
}

}  // namespace cairn
