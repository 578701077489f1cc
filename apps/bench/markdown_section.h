// Keeps a generated table inside a hand-written markdown file: the text
// between the lines "<!-- kernel-bench:begin -->" and "<!-- kernel-bench:end -->"
// is replaced, everything else kept.
#pragma once

#include <filesystem>
#include <string>

namespace ddpm::bench {

inline constexpr const char* kSectionBegin = "<!-- kernel-bench:begin -->";
inline constexpr const char* kSectionEnd = "<!-- kernel-bench:end -->";

// `doc` with the marked section's content replaced by `table`; a document
// without markers gets them, around the table, appended. Throws
// std::invalid_argument when only one marker is present or they are out of order.
std::string with_marked_section(const std::string& doc, const std::string& table);

// The same on a file, written atomically (temporary file, then rename).
void replace_marked_section(const std::filesystem::path& file, const std::string& table);

}  // namespace ddpm::bench
