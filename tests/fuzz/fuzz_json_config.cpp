// Fuzzes the JSON config readers: the UNet2DModel config
// (engine/unet_config.cpp), the scheduler config (engine/scheduler.cpp) and
// the training config (engine/train_config.cpp), all on engine/json_config.cpp.
// Each input is given to all three. Must hold: no crash, no hang, no
// unbounded allocation, no undefined behaviour (integer overflow included);
// a bad config is a ConfigError. A config that parses must be usable: the
// JSON it writes parses again and writes the same JSON (what a checkpoint's
// config goes through), and its scheduler builds and plans a short run.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "engine/scheduler.h"
#include "engine/train_config.h"
#include "engine/unet_config.h"
#include "fuzz_util.h"

using namespace ddpm;

namespace {

void check_scheduler(const SchedulerConfig& c) {
  const Scheduler s(c);
  if (static_cast<int64_t>(s.betas().size()) != c.num_train_timesteps)
    fuzz::property_failed("the scheduler's table does not have num_train_timesteps entries");
  // A few runs of different lengths; a steps_offset that pushes a timestep
  // out of range is an error the scheduler reports (std::invalid_argument).
  for (int64_t steps : {int64_t{1}, int64_t{2}, std::min<int64_t>(c.num_train_timesteps, 50)}) {
    if (steps > c.num_train_timesteps) continue;
    try {
      s.plan(steps);
    } catch (const std::invalid_argument&) {
    }
  }
}

// Parses text with `parse`, or returns nothing when it is a ConfigError; then
// checks that `write` gives JSON that parses back to the same JSON.
template <typename Parse, typename Write>
auto parse_and_round_trip(const std::string& text, Parse parse, Write write, const char* what)
    -> std::optional<decltype(parse(text, ""))> {
  std::optional<decltype(parse(text, ""))> c;
  try {
    c = parse(text, "fuzz.json");
  } catch (const ConfigError& e) {
    fuzz::rejected(e);
    return c;
  }
  const std::string json = write(*c);
  try {
    if (write(parse(json, "written.json")) != json) fuzz::property_failed(what);
  } catch (const ConfigError&) {
    fuzz::property_failed(what);
  }
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (const auto c = parse_and_round_trip(text, parse_unet_config, unet_config_to_json,
                                          "a UNet config does not survive writing and reading"))
    (void)c->time_embed_dim();
  if (const auto c =
          parse_and_round_trip(text, parse_scheduler_config, scheduler_config_to_json,
                               "a scheduler config does not survive writing and reading"))
    check_scheduler(*c);
  if (const auto c =
          parse_and_round_trip(text, parse_train_config, train_config_to_json,
                               "a training config does not survive writing and reading")) {
    check_scheduler(c->scheduler);
    (void)ema_schedule(c->training);
  }
  return 0;
}
