// write_file_atomically: the target is replaced whole or not at all, the
// temporary file never outlives the call, and errors name the path and the OS
// error.
#include <gtest/gtest.h>
#include <unistd.h>

#include "engine/checkpoint/atomic_file.h"
#include "tests/checkpoint/checkpoint_test_util.h"

namespace ddpm {
namespace {

using test::error_of;

std::vector<uint8_t> bytes_of(const std::string& s) {
  return {s.begin(), s.end()};
}

struct InjectedFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

TEST(AtomicFile, WritesANewFile) {
  test::ScratchDir dir;
  write_file_atomically(dir / "a.txt", [](std::ostream& out) { out << "hello " << 42; });
  EXPECT_EQ(test::read_bytes(dir / "a.txt"), bytes_of("hello 42"));
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"a.txt"});
}

TEST(AtomicFile, ReplacesAnExistingFile) {
  test::ScratchDir dir;
  write_file_atomically(dir / "a.txt", std::string_view("a much longer old content"));
  write_file_atomically(dir / "a.txt", std::string_view("new"));
  EXPECT_EQ(test::read_bytes(dir / "a.txt"), bytes_of("new"));
  const std::vector<uint8_t> bin = {0, 1, 2, 255, 0};
  write_file_atomically(dir / "a.txt", std::span<const uint8_t>(bin));
  EXPECT_EQ(test::read_bytes(dir / "a.txt"), bin);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"a.txt"});
}

TEST(AtomicFile, WriterThrowingMidwayKeepsTheOldFile) {
  test::ScratchDir dir;
  write_file_atomically(dir / "ckpt.bin", std::string_view("old checkpoint"));
  // Small writes still sit in the buffer; large ones have reached the
  // temporary file. Either way the target must not change.
  for (size_t before_failure : {size_t{5}, size_t{1} << 20}) {
    std::filesystem::path seen_tmp;
    try {
      write_file_atomically(dir / "ckpt.bin", [&](std::ostream& out) {
        const std::string block(before_failure, 'x');
        out.write(block.data(), static_cast<std::streamsize>(block.size()));
        out.flush();
        // The temporary file exists beside the target while the writer runs.
        for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
          if (e.path().filename() != "ckpt.bin") seen_tmp = e.path();
        }
        throw InjectedFailure("disk on fire");
      });
      ADD_FAILURE() << "the writer's exception did not propagate";
    } catch (const InjectedFailure& e) {
      EXPECT_STREQ(e.what(), "disk on fire");  // propagates unchanged
    }
    EXPECT_EQ(seen_tmp.filename().string().rfind(".ckpt.bin.tmp-" + std::to_string(::getpid()), 0),
              0u)
        << seen_tmp;
    EXPECT_EQ(test::read_bytes(dir / "ckpt.bin"), bytes_of("old checkpoint"));
    EXPECT_EQ(dir.entries(), std::vector<std::string>{"ckpt.bin"});
  }
}

TEST(AtomicFile, FailedStreamIsAnError) {
  test::ScratchDir dir;
  const auto path = dir / "a.txt";
  EXPECT_EQ(error_of([&] {
              write_file_atomically(path, [](std::ostream& out) {
                out << "x";
                out.setstate(std::ios::failbit);
              });
            }),
            "cannot write " + path.string() + ": the writer left its stream in a failed state");
  EXPECT_TRUE(dir.entries().empty());
}

TEST(AtomicFile, MissingDirectory) {
  test::ScratchDir dir;
  const auto path = dir / "missing" / "a.txt";
  const std::string e = error_of([&] { write_file_atomically(path, std::string_view("x")); });
  const std::string tmp_prefix = (dir / "missing" / ".a.txt.tmp-").string();
  EXPECT_EQ(
      e.rfind("cannot write " + path.string() + ": cannot create temporary file " + tmp_prefix, 0),
      0u)
      << e;
  EXPECT_TRUE(e.ends_with(": No such file or directory")) << e;
}

TEST(AtomicFile, TargetIsADirectory) {
  test::ScratchDir dir;
  std::filesystem::create_directory(dir / "sub");
  std::filesystem::create_directory(dir / "sub" / "inner");  // a non-empty directory
  const auto path = dir / "sub";
  const std::string e = error_of([&] { write_file_atomically(path, std::string_view("x")); });
  EXPECT_EQ(e.rfind("cannot write " + path.string() + ": renaming ", 0), 0u) << e;
  EXPECT_TRUE(e.ends_with(" over it failed: Is a directory")) << e;
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"sub"});  // the temporary file is gone
}

TEST(AtomicFile, PathWithoutAFileName) {
  test::ScratchDir dir;
  const std::filesystem::path path = dir.path() / "";
  EXPECT_EQ(error_of([&] { write_file_atomically(path, std::string_view("x")); }),
            path.string() + ": not a file name (the path ends in a separator)");
}

TEST(AtomicFile, RelativePathInTheCurrentDirectory) {
  test::ScratchDir dir;
  const auto old_cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  try {
    write_file_atomically("plain.txt", std::string_view("here"));
  } catch (...) {
    std::filesystem::current_path(old_cwd);
    throw;
  }
  std::filesystem::current_path(old_cwd);
  EXPECT_EQ(test::read_bytes(dir / "plain.txt"), bytes_of("here"));
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"plain.txt"});
}

}  // namespace
}  // namespace ddpm
