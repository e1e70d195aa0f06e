// `moekit bench`: one MoE layer of a model preset, timed on one or more back ends for a list of
// token counts, each result checked against the oracle on a sample of rows and printed beside the
// roofline of the machine (ceilings measured in the same run).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "bench_backend.h"
#include "bench_layer.h"
#include "ceilings.h"
#include "commands.h"
#include "common/checks.h"
#include "common/numeric.h"
#include "moekit/cpu.h"

namespace moekit::bench {
namespace {

struct Options {
  std::string preset = "qwen3-30b-a3b";
  std::string scheme = "bf16";
  std::string backends = "auto";
  std::vector<int64_t> tokens;  // empty: each back end's default
  std::string csv;
  int threads = 0;  // 0: cpu_threads()
  int check_rows = 8;
  int warmup = -1, repeat = -1;  // -1: the back end's default
  uint64_t seed = 0;
  bool quiet = false;
};

void print_usage(FILE* out) {
  std::string presets_list, schemes_list, backends_list;
  for (const Preset& p : presets()) presets_list += (presets_list.empty() ? "" : ", ") + p.name;
  for (WeightScheme s : bench_schemes()) schemes_list += (schemes_list.empty() ? "" : ", ") + std::string(weight_scheme_name(s));
  for (const BackendEntry& b : registered_backends())
    backends_list += detail::cat("\n      ", b.name, ": ", b.summary);
  std::fprintf(out,
               "usage: moekit bench [options]\n"
               "  --preset NAME      model layer: %s (default qwen3-30b-a3b)\n"
               "  --tokens LIST      token counts, e.g. 1,16,128 (default: per back end)\n"
               "  --scheme NAME      weight scheme: %s (default bf16)\n"
               "  --backend LIST     auto (the best one present) or names, comma-separated:%s\n"
               "  --csv FILE         also write the rows as CSV\n"
               "  --threads N        CPU threads (default: MOEKIT_CPU_THREADS or all)\n"
               "  --check-rows N     token rows checked against the oracle per run (default 8, 0 = off)\n"
               "  --warmup N, --repeat N   untimed and timed runs (default: per back end)\n"
               "  --seed N           data seed (default 0)\n"
               "  --quiet            no progress on stderr\n",
               presets_list.c_str(), schemes_list.c_str(), backends_list.c_str());
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, sep))
    if (!part.empty()) parts.push_back(part);
  return parts;
}

int64_t parse_int(const std::string& flag, const std::string& text, int64_t lo) {
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  detail::require(!text.empty() && *end == '\0' && v >= lo, flag, ": expected an integer >= ", lo,
                  ", got '", text, "'");
  return v;
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 0; i < argc; ++i) {
    std::string flag = argv[i];
    auto value = [&]() -> std::string {
      detail::require(i + 1 < argc, flag, ": expected a value, got nothing");
      return argv[++i];
    };
    if (flag == "--preset") o.preset = value();
    else if (flag == "--scheme") o.scheme = value();
    else if (flag == "--backend") o.backends = value();
    else if (flag == "--csv") o.csv = value();
    else if (flag == "--threads") o.threads = static_cast<int>(parse_int(flag, value(), 1));
    else if (flag == "--check-rows") o.check_rows = static_cast<int>(parse_int(flag, value(), 0));
    else if (flag == "--warmup") o.warmup = static_cast<int>(parse_int(flag, value(), 0));
    else if (flag == "--repeat") o.repeat = static_cast<int>(parse_int(flag, value(), 1));
    else if (flag == "--seed") o.seed = static_cast<uint64_t>(parse_int(flag, value(), 0));
    else if (flag == "--quiet") o.quiet = true;
    else if (flag == "--tokens") {
      o.tokens.clear();
      for (const std::string& t : split(value(), ',')) o.tokens.push_back(parse_int(flag, t, 1));
      detail::require(!o.tokens.empty(), "--tokens: expected a comma-separated list, got nothing");
    } else {
      detail::fail(detail::cat("unknown option '", flag, "' (moekit bench --help lists them)"));
    }
  }
  return o;
}

struct Selected {
  const BackendEntry* entry;
  std::unique_ptr<Backend> backend;
};

std::vector<Selected> select_backends(const std::string& list) {
  std::vector<Selected> out;
  for (const std::string& name : split(list, ',')) {
    if (name == "auto") {
      const BackendEntry* best = nullptr;
      std::unique_ptr<Backend> best_backend;
      for (const BackendEntry& e : registered_backends()) {
        auto b = e.make();
        std::string why;
        if (b->available(&why) && (!best || e.rank > best->rank)) {
          best = &e;
          best_backend = std::move(b);
        }
      }
      detail::require(best != nullptr, "--backend auto: no back end is available");
      out.push_back({best, std::move(best_backend)});
      continue;
    }
    const BackendEntry* e = find_backend(name);
    if (!e) {
      std::string known = "auto";
      for (const BackendEntry& b : registered_backends()) known += detail::cat(", ", b.name);
      detail::fail(detail::cat("--backend: expected one of ", known, ", got '", name, "'"));
    }
    auto b = e->make();
    std::string why;
    if (!b->available(&why))
      detail::fail(detail::cat("--backend ", name, ": not available here: ", why), ErrorKind::NotSupported);
    out.push_back({e, std::move(b)});
  }
  detail::require(!out.empty(), "--backend: expected at least one name, got '", list, "'");
  return out;
}

class Progress {
 public:
  explicit Progress(bool quiet) : quiet_(quiet), start_(now_seconds()) {}
  template <typename... Args>
  void say(const Args&... args) const {
    if (quiet_) return;
    std::fprintf(stderr, "[moekit bench %7.1fs] %s\n", now_seconds() - start_, detail::cat(args...).c_str());
    std::fflush(stderr);
  }

 private:
  bool quiet_;
  double start_;
};

// Evenly spread sample of min(n, M) token rows, first and last included.
std::vector<int32_t> sample_rows(int64_t tokens, int n) {
  std::vector<int32_t> rows;
  if (n <= 0 || tokens == 0) return rows;
  if (n >= tokens) {
    for (int64_t r = 0; r < tokens; ++r) rows.push_back(static_cast<int32_t>(r));
    return rows;
  }
  if (n == 1) return {0};
  for (int j = 0; j < n; ++j) rows.push_back(static_cast<int32_t>(static_cast<int64_t>(j) * (tokens - 1) / (n - 1)));
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  return rows;
}

double decode(DType dtype, uint16_t v) {
  return dtype == DType::kBFloat16 ? numeric::bf16_to_float(v) : numeric::half_to_float(v);
}

// One unit in the last place of r in the output dtype (bf16: 8 significant bits, fp16: 11).
double ulp(DType dtype, double r) {
  int bits = dtype == DType::kBFloat16 ? 8 : 11;
  int min_exponent = dtype == DType::kBFloat16 ? -125 : -13;
  int exponent = min_exponent;  // r = 0: the smallest spacing
  if (r != 0) std::frexp(r, &exponent);
  return std::ldexp(1.0, std::max(exponent, min_exponent) - bits);
}

struct CheckResult {
  int rows = 0;
  int bad_rows = 0;
  int64_t nonfinite = 0;  // over the whole output: the inputs give finite results everywhere
  double max_calc_diff = 0;
  std::string first_failure;
  bool failed() const { return bad_rows > 0 || nonfinite > 0; }
  std::string text() const {
    char buf[128];
    if (nonfinite) {
      std::snprintf(buf, sizeof buf, "FAIL %lld non-finite", static_cast<long long>(nonfinite));
      return buf;
    }
    if (rows == 0) return "skipped";
    std::snprintf(buf, sizeof buf, "%s %d rows, diff %.1e", bad_rows ? "FAIL" : "ok", rows, max_calc_diff);
    return buf;
  }
};

// Against the oracle on `rows`: per row calc_diff < 1e-5 and per element
// |y - r| <= 2 ulp(r) + 1e-2 rms(r_row) + |rsf| * sum_t ulp(y_t). The row bound is cpu-moe.md
// section 9's; the 1e-2 rms term is its looser "ideal" one, because a kernel may keep more precision
// than the oracle at a rounding point (e.g. not rounding each slot's weighted output), which moves
// elements near zero by ~1e-3 rms. The last term allows one rounding flip of each slot's output y_t
// (R2): an fp32 GEMM sum next to a rounding point of y_t rounds either way, and y_t can be far larger
// than the element it adds to (deepseek-v3 M=64: |y_t| in [1, 2), one flip = 2^-7 on -0.12).
CheckResult check_rows(const MoeLayer& layer, const RoutedBatch& b, const std::vector<uint16_t>& got,
                       const std::vector<int32_t>& rows) {
  CheckResult result;
  const int64_t H = layer.preset.hidden;
  for (size_t i = 0; i < got.size(); ++i)
    if (!std::isfinite(decode(layer.act_dtype, got[i])) && result.nonfinite++ == 0)
      result.first_failure = detail::cat("row ", i / H, " col ", i % H, " is not finite (never written?)");
  if (rows.empty()) return result;
  std::vector<uint16_t> expected(static_cast<size_t>(b.tokens * H), 0x7fc0);
  TensorView expected_view(expected.data(), layer.act_dtype, {b.tokens, H});
  std::vector<int32_t> rows_copy = rows;
  TensorView rows_view(rows_copy.data(), DType::kInt32, {static_cast<int64_t>(rows_copy.size())});
  reference::fused_experts(b.hidden, layer.w13, layer.w2, b.topk_weights, b.topk_ids, expected_view,
                           layer.options, rows_view);
  // Each slot's y_t alone: the oracle with every other slot dropped (-1) and rsf 1 returns y_t as
  // rounded at R2.
  const int64_t k = b.topk_ids.shape[1];
  std::vector<double> slot_ulps(rows.size() * static_cast<size_t>(H), 0.0);  // per checked row
  std::vector<int32_t> slot_ids(static_cast<size_t>(b.tokens * k));
  std::vector<uint16_t> slot_out(static_cast<size_t>(b.tokens * H));
  FusedExpertsOptions slot_options = layer.options;
  slot_options.routed_scaling_factor = 1.0;
  const auto* ids = static_cast<const int32_t*>(b.topk_ids.data);
  for (int64_t t = 0; t < k; ++t) {
    for (int64_t i = 0; i < b.tokens * k; ++i) slot_ids[i] = i % k == t ? ids[i] : -1;
    TensorView slot_ids_view(slot_ids.data(), DType::kInt32, {b.tokens, k});
    TensorView slot_out_view(slot_out.data(), layer.act_dtype, {b.tokens, H});
    reference::fused_experts(b.hidden, layer.w13, layer.w2, b.topk_weights, slot_ids_view, slot_out_view,
                             slot_options, rows_view);
    for (size_t c = 0; c < rows.size(); ++c)
      for (int64_t h = 0; h < H; ++h)
        slot_ulps[c * H + h] += ulp(layer.act_dtype, decode(layer.act_dtype, slot_out[rows[c] * H + h]));
  }
  const double rsf = std::abs(layer.options.routed_scaling_factor);
  for (size_t c = 0; c < rows.size(); ++c) {
    const int64_t m = rows[c];
    double sum_ab = 0, sum_aa = 0, sum_bb = 0;
    for (int64_t h = 0; h < H; ++h) {
      double y = decode(layer.act_dtype, got[m * H + h]), r = decode(layer.act_dtype, expected[m * H + h]);
      sum_ab += y * r;
      sum_aa += y * y;
      sum_bb += r * r;
    }
    double rms = std::sqrt(sum_bb / static_cast<double>(H));
    double calc_diff = sum_aa + sum_bb > 0 ? 1.0 - 2.0 * sum_ab / (sum_aa + sum_bb) : 0.0;
    bool ok = std::isfinite(calc_diff) && calc_diff < 1e-5;
    if (std::isnan(calc_diff)) calc_diff = std::numeric_limits<double>::infinity();
    for (int64_t h = 0; h < H && ok; ++h) {
      double y = decode(layer.act_dtype, got[m * H + h]), r = decode(layer.act_dtype, expected[m * H + h]);
      if (!(std::abs(y - r) <= 2 * ulp(layer.act_dtype, r) + 1e-2 * rms + rsf * slot_ulps[c * H + h])) {
        ok = false;
        if (result.first_failure.empty())
          result.first_failure = detail::cat("row ", m, " col ", h, ": got ", y, ", oracle ", r, " (row rms ", rms, ")");
      }
    }
    if (!ok && result.first_failure.empty())
      result.first_failure = detail::cat("row ", m, ": calc_diff ", calc_diff, " >= 1e-5");
    result.max_calc_diff = std::max(result.max_calc_diff, calc_diff);
    result.rows += 1;
    result.bad_rows += ok ? 0 : 1;
  }
  return result;
}

std::string human_bytes(double bytes) {
  char buf[32];
  if (bytes >= 1e9) std::snprintf(buf, sizeof buf, "%.2f GB", bytes / 1e9);
  else std::snprintf(buf, sizeof buf, "%.1f MB", bytes / 1e6);
  return buf;
}

// Best anchor at (preset, M), time / floor on one H100 (anchors.md; BF16 GPU only); 0 if none.
double anchor_ratio(const std::string& preset, int64_t tokens) {
  static const int64_t grid[8] = {1, 4, 16, 64, 256, 1024, 4096, 8192};
  static const struct {
    const char* preset;
    double ratio[8];
  } anchors[] = {
      {"qwen3-30b-a3b", {2.00, 1.34, 1.09, 1.06, 1.10, 1.26, 2.01, 1.83}},
      {"mixtral-8x7b", {1.15, 1.05, 1.03, 1.03, 1.10, 1.64, 1.28, 1.17}},
      {"deepseek-v3", {1.17, 1.07, 1.01, 1.01, 1.03, 1.13, 1.37, 1.95}},
  };
  for (const auto& a : anchors)
    if (preset == a.preset)
      for (int i = 0; i < 8; ++i)
        if (grid[i] == tokens) return a.ratio[i];
  return 0.0;
}

struct Roofline {
  double bytes_per_s = 0, flops = 0;
  size_t read_buffer_bytes = 0;                  // CPU: the read-bandwidth buffer, to measure again between rows
  double (*peak_loop)(int, double) = nullptr;  // CPU: the active ISA's peak loop, likewise
};

Roofline measure_and_print_cpu_ceilings(const Progress& progress) {
  progress.say("measuring CPU ceilings (read bandwidth, peak per ISA)");
  CpuCeilings c = measure_cpu_ceilings(cpu_threads());
  std::printf("# cpu ceilings: read bandwidth %.1f GB/s (%s buffer, %d threads)", c.read_bytes_per_s / 1e9,
              human_bytes(static_cast<double>(c.buffer_bytes)).c_str(), c.threads);
  for (const CpuPeak& p : c.peaks) std::printf("; %s peak %.2f TFLOP/s", p.name.c_str(), p.flops / 1e12);
  std::printf("\n");
  Roofline roof{c.read_bytes_per_s, 0.0, c.buffer_bytes};
  if (const CpuPeak* p = c.peak_for_active_isa()) {
    roof.flops = p->flops;
    roof.peak_loop = p->measure;
    std::printf("# cpu roofline: %.1f GB/s, %.2f TFLOP/s (%s)\n", c.read_bytes_per_s / 1e9, p->flops / 1e12,
                p->name.c_str());
  } else {
    std::printf("# cpu roofline: %.1f GB/s, no peak measured for isa path %s (floor from bytes only)\n",
                c.read_bytes_per_s / 1e9, cpu_isa_name(cpu_isa()));
  }
  std::fflush(stdout);
  return roof;
}

Roofline measure_and_print_gpu_ceilings(const Progress& progress) {
  progress.say("measuring GPU ceilings (copy bandwidth, cuBLAS bf16 8192^3)");
  GpuCeilings g = measure_gpu_ceilings();
  std::printf("# gpu ceilings (%s): copy %.0f GB/s (read + written), bf16 matmul %.1f TFLOP/s\n",
              g.device.c_str(), g.copy_bytes_per_s / 1e9, g.bf16_flops / 1e12);
  std::fflush(stdout);
  return {g.copy_bytes_per_s, g.bf16_flops};
}

}  // namespace

int ceilings_command(int argc, char** argv) {
  for (int i = 0; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--threads" && i + 1 < argc) set_cpu_threads(static_cast<int>(parse_int(flag, argv[++i], 1)));
    else detail::fail(detail::cat("moekit ceilings: unknown option '", flag, "' (takes --threads N)"));
  }
  Progress progress(false);
  measure_and_print_cpu_ceilings(progress);
#if defined(MOEKIT_WITH_CUDA)
  for (const std::string& line : gpu_info_lines()) std::printf("# gpu: %s\n", line.c_str());
  measure_and_print_gpu_ceilings(progress);
#endif
  return 0;
}

int bench_command(int argc, char** argv) {
  Options o;
  try {
    for (int i = 0; i < argc; ++i)
      if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
        print_usage(stdout);
        return 0;
      }
    o = parse_options(argc, argv);
  } catch (const Error& e) {
    std::fprintf(stderr, "moekit bench: %s\n", e.what());
    print_usage(stderr);
    return 2;
  }

  if (o.threads > 0) set_cpu_threads(o.threads);
  Progress progress(o.quiet);
  const Preset& preset = find_preset(o.preset);
  WeightScheme scheme = parse_scheme(o.scheme);
  std::vector<Selected> selected = select_backends(o.backends);

  int64_t max_tokens = 0;
  for (const Selected& s : selected) {
    const std::vector<int64_t> t = o.tokens.empty() ? s.backend->default_tokens() : o.tokens;
    max_tokens = std::max(max_tokens, *std::max_element(t.begin(), t.end()));
  }

  std::string command = "moekit bench";
  for (int i = 0; i < argc; ++i) command += detail::cat(" ", argv[i]);
  std::printf("# %s\n", command.c_str());
  std::printf("# preset %s: E=%lld k=%lld H=%lld I=%lld", preset.name.c_str(), (long long)preset.experts,
              (long long)preset.topk, (long long)preset.hidden, (long long)preset.intermediate);
  if (preset.groups > 1) std::printf(" (grouped routing: %lld groups, %lld kept)", (long long)preset.groups, (long long)preset.groups_kept);
  std::printf("; scheme %s; seed %llu\n", o.scheme.c_str(), (unsigned long long)o.seed);
  std::printf("# cpu: %s; isa path %s; %d threads\n", cpu_feature_string().c_str(), cpu_isa_name(cpu_isa()),
              cpu_threads());
  for (const std::string& line : gpu_info_lines()) std::printf("# gpu: %s\n", line.c_str());

  bool need_cpu = false, need_gpu = false;
  for (const Selected& s : selected) (s.backend->device() == DeviceKind::kCPU ? need_cpu : need_gpu) = true;
  Roofline cpu_roof, gpu_roof;
  if (need_cpu) cpu_roof = measure_and_print_cpu_ceilings(progress);
  if (need_gpu) gpu_roof = measure_and_print_gpu_ceilings(progress);

  progress.say("building the layer and the inputs of ", max_tokens, " tokens");
  RoutedInputs inputs = make_inputs(preset, max_tokens, o.seed);
  MoeLayer layer = make_layer(preset, scheme, inputs, o.seed);
  progress.say("layer ready: ", work_of(layer, batch(inputs, max_tokens)).distinct_experts, " of ", preset.experts,
               " experts routed to, ", human_bytes(static_cast<double>(layer.expert_bytes() * preset.experts)),
               " of weights");

  std::ofstream csv;
  if (!o.csv.empty()) {
    csv.open(o.csv);
    detail::require(csv.good(), "--csv: cannot write '", o.csv, "'");
    csv << "preset,scheme,backend,tokens,distinct_experts,time_us,min_us,bytes,flops,gbps,tflops,floor_us,"
           "pct_roofline,time_over_floor,bandwidth_gbps,peak_tflops,check,checked_rows,max_calc_diff\n";
  }

  int failures = 0;
  for (Selected& s : selected) {
    Backend& backend = *s.backend;
    std::string why;
    if (!backend.supports(layer, &why)) {
      std::printf("\n## %s: skipped (%s)\n", s.entry->name, why.c_str());
      continue;
    }
    Roofline& roof = backend.device() == DeviceKind::kCPU ? cpu_roof : gpu_roof;
    const double start_bytes_per_s = roof.bytes_per_s, start_flops = roof.flops;
    TimingOptions timing = backend.default_timing();
    if (o.warmup >= 0) timing.warmup = o.warmup;
    if (o.repeat >= 0) timing.repeat = o.repeat;
    std::string describe = backend.describe();
    std::printf("\n## %s%s%s (warmup %d, repeat %d, median)\n", s.entry->name, describe.empty() ? "" : ": ",
                describe.c_str(), timing.warmup, timing.repeat);
    // The anchors are H100 BF16 figures: shown beside GPU runs of BF16 weights.
    const bool show_anchor = backend.device() == DeviceKind::kCUDA && scheme == WeightScheme::kBF16;
    std::printf("| tokens | experts | time us | GB/s | TFLOP/s | %% roofline | time/floor |%s check |\n",
                show_anchor ? " anchor |" : "");
    std::printf("|---:|---:|---:|---:|---:|---:|---:|%s---|\n", show_anchor ? "---:|" : "");
    std::fflush(stdout);

    progress.say(s.entry->name, ": prepare (pack / upload weights)");
    backend.prepare(layer);
    const std::vector<int64_t> token_list = o.tokens.empty() ? backend.default_tokens() : o.tokens;
    for (int64_t M : token_list) {
      RoutedBatch b = batch(inputs, M);
      Work work = work_of(layer, b);
      progress.say(s.entry->name, ": tokens ", M, ": run");
      backend.set_batch(b);
      Timing t = backend.time(timing);
      std::vector<uint16_t> got(static_cast<size_t>(M * preset.hidden), 0x7fc0);
      backend.fetch_output(TensorView(got.data(), layer.act_dtype, {M, preset.hidden}));
      std::vector<int32_t> rows = sample_rows(M, o.check_rows);
      if (!rows.empty()) progress.say(s.entry->name, ": tokens ", M, ": checking ", rows.size(), " rows against the oracle");
      CheckResult check = check_rows(layer, b, got, rows);
      if (check.failed()) {
        if (!backend.is_baseline()) ++failures;
        std::fprintf(stderr, "moekit bench: %s tokens %lld: check failed%s: %s\n", s.entry->name, (long long)M,
                     backend.is_baseline() ? " (a baseline: reported, not counted)" : "", check.first_failure.c_str());
      }

      // The CPU read ceiling again, right after this row: each row's floor uses the fastest reading
      // so far (on a shared 2-core VM one invocation's start read 35.9 GB/s and the next one's
      // 66.1, while the layer itself read 57-62 in both: "0.6 x floor", 2026-11-27).
      // The peak loop likewise: on the GPU machine's shared host the AMX peak of 2 threads read 1.9 to
      // 5.0 TFLOP/s between invocations minutes apart, and one that read low at its start put a row at
      // 71% of "the peak".
      if (roof.read_buffer_bytes > 0)
        roof.bytes_per_s = std::max(roof.bytes_per_s, measure_cpu_read_bandwidth(cpu_threads(), roof.read_buffer_bytes));
      if (roof.peak_loop) roof.flops = std::max(roof.flops, roof.peak_loop(cpu_threads(), 0.3));
      double floor_s = std::max(roof.bytes_per_s > 0 ? work.bytes / roof.bytes_per_s : 0.0,
                                roof.flops > 0 ? work.flops / roof.flops : 0.0);
      double time_s = t.median_s;
      double pct = time_s > 0 ? 100.0 * floor_s / time_s : 0.0;
      double ratio = floor_s > 0 ? time_s / floor_s : 0.0;
      std::string anchor;
      if (show_anchor) {
        double a = anchor_ratio(preset.name, M);
        anchor = a > 0 ? detail::cat(" ", a, ratio <= a ? " beaten |" : " missed |") : " - |";
      }
      std::printf("| %lld | %lld | %.1f | %.1f | %.2f | %.1f | %.2f |%s %s |\n", (long long)M,
                  (long long)work.distinct_experts, time_s * 1e6, work.bytes / time_s / 1e9, work.flops / time_s / 1e12,
                  pct, ratio, anchor.c_str(), check.text().c_str());
      std::fflush(stdout);
      if (csv.is_open()) {
        csv << preset.name << ',' << o.scheme << ',' << s.entry->name << ',' << M << ',' << work.distinct_experts
            << ',' << time_s * 1e6 << ',' << t.min_s * 1e6 << ',' << work.bytes << ',' << work.flops << ','
            << work.bytes / time_s / 1e9 << ',' << work.flops / time_s / 1e12 << ',' << floor_s * 1e6 << ','
            << pct << ',' << ratio << ',' << roof.bytes_per_s / 1e9 << ',' << roof.flops / 1e12 << ','
            << (check.failed() ? "FAIL" : check.rows == 0 ? "skipped" : "ok") << ',' << check.rows << ','
            << check.max_calc_diff << '\n';
        csv.flush();
      }
    }
    if (roof.bytes_per_s > start_bytes_per_s)
      std::printf("# cpu read bandwidth, taken again after each row: up to %.1f GB/s (%.1f before the rows); each "
                  "row's floor used the fastest reading up to its own\n",
                  roof.bytes_per_s / 1e9, start_bytes_per_s / 1e9);
    if (roof.flops > start_flops)
      std::printf("# cpu peak, taken again after each row: up to %.2f TFLOP/s (%.2f before the rows); each row's "
                  "floor used the fastest reading up to its own\n",
                  roof.flops / 1e12, start_flops / 1e12);
  }
  progress.say("done");
  return failures ? 1 : 0;
}

}  // namespace moekit::bench
