#include "engine/train_config.h"

#include <fstream>
#include <sstream>

#include "engine/json_config.h"

namespace ddpm {

using nlohmann::json;

EmaSchedule ema_schedule(const TrainConfig::Training& t) {
  EmaSchedule s;
  s.decay = t.ema_decay;
  s.warmup = t.ema_warmup == "power"  ? EmaWarmup::power
             : t.ema_warmup == "none" ? EmaWarmup::none
                                      : EmaWarmup::diffusers_default;
  s.inv_gamma = t.ema_inv_gamma;
  s.power = t.ema_power;
  s.update_after_step = t.ema_update_after_step;
  s.min_decay = t.ema_min_decay;
  return s;
}

TrainConfig parse_train_config(const std::string& text, const std::string& source) {
  const json j = parse_json_object(text, source);
  TrainConfig c;
  JsonSection top(j, "", source);
  if (const json* m = top.get("model")) {
    if (!m->is_object()) top.fail("model", "expected a UNet2DModel config object");
    c.model = parse_unet_config(m->dump(), source + " (model)");
  } else {
    top.fail("model", "missing: the UNet2DModel config (diffusers' config.json keys)");
  }
  if (const json* s = top.get("scheduler")) {
    if (!s->is_object()) top.fail("scheduler", "expected a DDPMScheduler config object");
    c.scheduler = parse_scheduler_config(s->dump(), source + " (scheduler)");
  }
  if (const json* d = top.get("data")) {
    JsonSection s(*d, "data", source);
    s.read("kind", c.data.kind);
    s.read("path", c.data.path);
    s.reject_unknown("keys");
    if (c.data.kind != "fashion-mnist" && c.data.kind != "idx" && c.data.kind != "cifar10" &&
        c.data.kind != "png-folder")
      s.fail("kind",
             "\"" + c.data.kind + "\" is not supported (fashion-mnist, idx, cifar10, png-folder)");
  }
  if (const json* t = top.get("training")) {
    JsonSection s(*t, "training", source);
    auto& r = c.training;
    s.read("batch_size", r.batch_size);
    s.read("steps", r.steps);
    s.read("learning_rate", r.learning_rate);
    s.read("adam_beta1", r.adam_beta1);
    s.read("adam_beta2", r.adam_beta2);
    s.read("adam_epsilon", r.adam_epsilon);
    s.read("weight_decay", r.weight_decay);
    s.read("warmup_steps", r.warmup_steps);
    s.read("grad_clip_norm", r.grad_clip_norm);
    s.read("ema_decay", r.ema_decay);
    s.read("ema_warmup", r.ema_warmup);
    s.read("ema_inv_gamma", r.ema_inv_gamma);
    s.read("ema_power", r.ema_power);
    s.read("ema_update_after_step", r.ema_update_after_step);
    s.read("ema_min_decay", r.ema_min_decay);
    s.read("random_flip", r.random_flip);
    s.read("seed", r.seed);
    s.read("precision", r.precision);
    s.reject_unknown("keys");
    if (r.precision != "fp32" && r.precision != "bf16")
      s.fail("precision", "\"" + r.precision + "\" is not supported (fp32, bf16)");
    if (r.batch_size < 1) s.fail("batch_size", "must be at least 1");
    if (r.steps < 1) s.fail("steps", "must be at least 1");
    if (!(r.learning_rate > 0)) s.fail("learning_rate", "must be positive");
    if (!(r.adam_beta1 >= 0 && r.adam_beta1 < 1)) s.fail("adam_beta1", "must be in [0, 1)");
    if (!(r.adam_beta2 >= 0 && r.adam_beta2 < 1)) s.fail("adam_beta2", "must be in [0, 1)");
    if (!(r.adam_epsilon > 0)) s.fail("adam_epsilon", "must be positive");
    if (!(r.weight_decay >= 0)) s.fail("weight_decay", "must be non-negative");
    if (r.warmup_steps < 0) s.fail("warmup_steps", "must be non-negative");
    if (!(r.grad_clip_norm >= 0)) s.fail("grad_clip_norm", "must be non-negative (0 disables)");
    if (!(r.ema_decay >= 0 && r.ema_decay < 1)) s.fail("ema_decay", "must be in [0, 1)");
    if (r.ema_warmup != "default" && r.ema_warmup != "power" && r.ema_warmup != "none")
      s.fail("ema_warmup", "\"" + r.ema_warmup + "\" is not supported (default, power, none)");
    if (!(r.ema_inv_gamma > 0)) s.fail("ema_inv_gamma", "must be positive");
    if (!(r.ema_power > 0)) s.fail("ema_power", "must be positive");
    if (r.ema_update_after_step < 0) s.fail("ema_update_after_step", "must be non-negative");
    if (!(r.ema_min_decay >= 0 && r.ema_min_decay < 1))
      s.fail("ema_min_decay", "must be in [0, 1)");
  }
  if (const json* l = top.get("logging")) {
    JsonSection s(*l, "logging", source);
    auto& r = c.logging;
    s.read("log_every", r.log_every);
    s.read("sample_every", r.sample_every);
    s.read("sample_count", r.sample_count);
    s.read("sample_steps", r.sample_steps);
    s.read("sample_scheduler", r.sample_scheduler);
    s.read("checkpoint_every", r.checkpoint_every);
    s.reject_unknown("keys");
    if (r.log_every < 1) s.fail("log_every", "must be at least 1");
    if (r.sample_count < 1) s.fail("sample_count", "must be at least 1");
    if (r.sample_steps < 1 || r.sample_steps > c.scheduler.num_train_timesteps)
      s.fail("sample_steps", "must be in [1, num_train_timesteps]");
    if (r.sample_scheduler != "ddpm" && r.sample_scheduler != "ddim")
      s.fail("sample_scheduler", "\"" + r.sample_scheduler + "\" is not supported (ddpm, ddim)");
    if (r.sample_every < 0) s.fail("sample_every", "must be non-negative (0: only at the end)");
    if (r.checkpoint_every < 0)
      s.fail("checkpoint_every", "must be non-negative (0: only at the end)");
  }
  top.reject_unknown("keys");
  return c;
}

DType activation_dtype(const TrainConfig::Training& t) {
  return t.precision == "bf16" ? DType::bf16 : DType::f32;
}

TrainConfig load_train_config(const std::filesystem::path& path) {
  std::ifstream f(path);
  if (!f) throw ConfigError("cannot open training config " + path.string());
  std::stringstream s;
  s << f.rdbuf();
  return parse_train_config(s.str(), path.string());
}

std::string train_config_to_json(const TrainConfig& c) {
  json j;
  j["model"] = json::parse(unet_config_to_json(c.model));
  j["scheduler"] = json::parse(scheduler_config_to_json(c.scheduler));
  j["data"] = {{"kind", c.data.kind}, {"path", c.data.path}};
  const auto& t = c.training;
  j["training"] = {{"batch_size", t.batch_size},
                   {"steps", t.steps},
                   {"learning_rate", t.learning_rate},
                   {"adam_beta1", t.adam_beta1},
                   {"adam_beta2", t.adam_beta2},
                   {"adam_epsilon", t.adam_epsilon},
                   {"weight_decay", t.weight_decay},
                   {"warmup_steps", t.warmup_steps},
                   {"grad_clip_norm", t.grad_clip_norm},
                   {"ema_decay", t.ema_decay},
                   {"ema_warmup", t.ema_warmup},
                   {"ema_inv_gamma", t.ema_inv_gamma},
                   {"ema_power", t.ema_power},
                   {"ema_update_after_step", t.ema_update_after_step},
                   {"ema_min_decay", t.ema_min_decay},
                   {"random_flip", t.random_flip},
                   {"seed", t.seed},
                   {"precision", t.precision}};
  const auto& l = c.logging;
  j["logging"] = {{"log_every", l.log_every},
                  {"sample_every", l.sample_every},
                  {"sample_count", l.sample_count},
                  {"sample_steps", l.sample_steps},
                  {"sample_scheduler", l.sample_scheduler},
                  {"checkpoint_every", l.checkpoint_every}};
  return j.dump(2) + "\n";
}

}  // namespace ddpm
