// Writing a file so that a crash, a full disk or an exception midway never
// leaves a half-written file where a good one was: the content goes to a
// temporary file in the same directory (".<name>.tmp-<pid>-<n>"), which is
// flushed and fsynced, then renamed over the target, and the directory is
// fsynced so the rename itself is durable. On any failure the temporary file
// is removed, the target is untouched, and the error is thrown.
//
// Used for checkpoints, JSON configs, images: anything a user would be sorry
// to lose to an interrupted write.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <ostream>
#include <span>
#include <string_view>

#include "engine/checkpoint/errors.h"

namespace ddpm {

// `writer` streams the content. An exception it throws propagates unchanged
// (after the cleanup); an I/O error (the stream's or the OS's) becomes a
// CheckpointError naming the path and the OS error. The new file gets the
// default permissions (0666 less the umask), not the old file's.
void write_file_atomically(const std::filesystem::path& path,
                           const std::function<void(std::ostream&)>& writer);
void write_file_atomically(const std::filesystem::path& path, std::span<const uint8_t> bytes);
void write_file_atomically(const std::filesystem::path& path, std::string_view text);

}  // namespace ddpm
