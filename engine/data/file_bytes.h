// Reading a whole data file into memory, inflating it when it is gzipped
// (recognised by the gzip magic bytes 1f 8b, whatever the file is called).
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

namespace ddpm {

// Throws DataError naming the file when it is missing, unreadable, or a gzip
// stream that is corrupt or ends early. `was_gzip`, when given, says whether
// the bytes were inflated.
std::vector<uint8_t> read_file_bytes(const std::filesystem::path& path, bool* was_gzip = nullptr);

// The file's bytes as they are (no inflating); same errors.
std::vector<uint8_t> read_file_raw(const std::filesystem::path& path);

bool is_gzip(const std::vector<uint8_t>& bytes);

}  // namespace ddpm
