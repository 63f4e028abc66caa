// Quoted strings in filter expressions ('x', "x" or `x`), as MLflow's search
// grammars write them.
//
// Usage:
//   size_t pos = ...;  // on the opening quote
//   std::optional<std::string> s = ReadQuoted(text, &pos, Backslash::kLiteral);
//   if (!s) return Error("unterminated quoted string");
#ifndef CAIRN_BASE_QUOTED_H_
#define CAIRN_BASE_QUOTED_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace cairn {

enum class Backslash {
  kLiteral,  // a backslash is an ordinary character
  kEscapes,  // "\q" (q the quote) and "\\" stand for q and \; "\x" otherwise stays "\x"
};

// Reads the quoted run whose opening quote is text[*pos] and moves *pos past
// its closing quote. Inside, the quote doubled stands for itself. Returns
// nullopt if the run is not closed (then *pos is text.size()).
std::optional<std::string> ReadQuoted(std::string_view text, size_t* pos, Backslash backslash);

}  // namespace cairn

#endif  // CAIRN_BASE_QUOTED_H_
