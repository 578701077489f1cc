#include "apps/bench/markdown_section.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "engine/checkpoint/atomic_file.h"

namespace ddpm::bench {

std::string with_marked_section(const std::string& doc, const std::string& table) {
  const std::string begin = std::string(kSectionBegin) + "\n";
  const std::string end = kSectionEnd;
  std::string body = table;
  if (!body.empty() && body.back() != '\n') body += '\n';
  const size_t b = doc.find(begin);
  const size_t e = doc.find(end);
  if (b == std::string::npos && e == std::string::npos) {
    std::string out = doc;
    if (!out.empty() && out.back() != '\n') out += '\n';
    return out + "\n" + begin + body + end + "\n";
  }
  if (b == std::string::npos || e == std::string::npos || e < b)
    throw std::invalid_argument(std::string("expected the line ") + kSectionBegin +
                                " before the line " + kSectionEnd + " (or neither)");
  return doc.substr(0, b + begin.size()) + body + doc.substr(e);
}

void replace_marked_section(const std::filesystem::path& file, const std::string& table) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + file.string());
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    write_file_atomically(file, std::string_view(with_marked_section(ss.str(), table)));
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(file.string() + ": " + e.what());
  }
}

}  // namespace ddpm::bench
