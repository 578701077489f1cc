// Fuzzes the safetensors reader (engine/checkpoint/safetensors*.cpp): the
// 8-byte length, the JSON header (syntax, depth, duplicate keys, dtypes,
// shapes, offsets, the tiling of the data region) and the data.
// Must hold for every input: no crash, no hang, no allocation beyond the
// input's size (a header's claimed sizes are checked against the file first);
// a bad file is a CheckpointError. And for a file that loads:
//  - read_safetensors (from a file) and parse_safetensors (from memory) agree;
//  - every tensor converts to f32 and f64;
//  - writing it and reading it back gives the same tensors and metadata.
#include <cstdint>
#include <optional>

#include "engine/checkpoint/safetensors.h"
#include "fuzz_util.h"

using namespace ddpm;

namespace {

bool same(const StFile& a, const StFile& b) {
  if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size()) return false;
  for (auto ia = a.tensors.begin(), ib = b.tensors.begin(); ia != a.tensors.end(); ++ia, ++ib) {
    if (ia->first != ib->first || ia->second.dtype != ib->second.dtype ||
        ia->second.shape != ib->second.shape || ia->second.data != ib->second.data)
      return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::optional<StFile> parsed;
  try {
    parsed = parse_safetensors({data, size}, "fuzz.safetensors");
  } catch (const CheckpointError& e) {
    fuzz::rejected(e);
  }

  fuzz::InputFile& file = fuzz::input_file();
  file.write(data, size);
  std::optional<StFile> read;
  try {
    read = read_safetensors(file.path());
  } catch (const CheckpointError& e) {
    fuzz::rejected(e);
  }
  if (parsed.has_value() != read.has_value())
    fuzz::property_failed("parse_safetensors and read_safetensors disagree on accepting the input");
  if (!parsed) return 0;
  if (!same(*parsed, *read))
    fuzz::property_failed("parse_safetensors and read_safetensors read different tensors");

  for (const auto& [name, t] : parsed->tensors) {
    if (to_f32(t).size() != static_cast<size_t>(t.numel()) ||
        to_f64(t).size() != static_cast<size_t>(t.numel()))
      fuzz::property_failed("a conversion returned the wrong number of values");
  }

  std::vector<uint8_t> bytes;
  try {
    bytes = serialize_safetensors(*parsed, "fuzz-out.safetensors");
  } catch (const CheckpointError&) {
    fuzz::property_failed("a file that loads cannot be written back");
  }
  StFile again;
  try {
    again = parse_safetensors(bytes, "fuzz-out.safetensors");
  } catch (const CheckpointError&) {
    fuzz::property_failed("a file we wrote does not load");
  }
  if (!same(*parsed, again)) fuzz::property_failed("write then read changed the file's content");
  return 0;
}
