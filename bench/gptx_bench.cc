// gptx_bench.cc — gptx-bench: validates each op against the scalar reference, then times it (on the CPU against the
// machine's peaks, or on a CUDA device).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gptx/gptx.h>

#include "bench_cases.h"
#include "bench_probe.h"

namespace {

using gptx::Tensor;

const char* kUsage = R"(gptx-bench: validate and time the gptx ops, on the CPU or a CUDA device, at GPT-2 small shapes.

  --device D       cpu (default), cuda or cuda:N: where the inputs live and the ops run
  --op NAME        op or row to run (repeatable, or a comma list); default all. See --list.
  --shape S        MxNxK: replaces the matmul shapes (forward and backward);
                   BxNHxTxHS: the attention shape. Repeatable.
  --threads N      CPU kernel and probe threads (default: all cores); on CUDA, threads of the CPU reference
  --isa NAME       CPU kernel path to time: generic, avx2, avx512, reference (default: the one chosen at load;
                   --device cpu only)
  --repeats N      timed runs per op (default: enough for ~1.5 s per op, at least 3)
  --params N       parameter count of adamw_step / global_norm (default 124475904, GPT-2 small)
  --quick          smaller shapes (256 tokens, T=256, 4M parameters), 3 repeats, 64 MiB probe: smoke tests only
  --probe-mib N    size of each bandwidth probe array in MiB (default 256; keep it >> the last-level cache)
  --no-validate    skip the reference check
  --json FILE      also write the results as JSON
  --list           list the ops and exit
)";

struct Options {
    std::vector<std::string> ops, shapes;
    int threads = 0, repeats = 0;
    int64_t params = 0;
    size_t probe_mib = 256;
    std::string device = "cpu", isa, json;
    bool list = false, quick = false, validate = true;
};

[[noreturn]] void usage_error(const std::string& msg) {
    std::fprintf(stderr, "gptx-bench: %s (see gptx-bench --help / --list)\n", msg.c_str());
    std::exit(2);
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    for (std::string item; std::getline(ss, item, sep);)
        if (!item.empty()) out.push_back(item);
    return out;
}

int64_t to_int(const std::string& s, const char* flag) {
    char* end = nullptr;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || v < 1) usage_error(std::string(flag) + " needs a positive integer, got '" + s + "'");
    return v;
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage_error(a + " needs a value");
            return argv[++i];
        };
        if (a == "--device") {
            o.device = value();
        } else if (a == "--op") {
            for (const std::string& n : split(value(), ',')) o.ops.push_back(n);
        } else if (a == "--shape") {
            o.shapes.push_back(value());
        } else if (a == "--threads") {
            o.threads = static_cast<int>(to_int(value(), "--threads"));
        } else if (a == "--isa") {
            o.isa = value();
        } else if (a == "--repeats") {
            o.repeats = static_cast<int>(to_int(value(), "--repeats"));
        } else if (a == "--params") {
            o.params = to_int(value(), "--params");
        } else if (a == "--probe-mib") {
            o.probe_mib = static_cast<size_t>(to_int(value(), "--probe-mib"));
        } else if (a == "--json") {
            o.json = value();
        } else if (a == "--list") {
            o.list = true;
        } else if (a == "--quick") {
            o.quick = true;
        } else if (a == "--no-validate") {
            o.validate = false;
        } else if (a == "-h" || a == "--help") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else {
            usage_error("unknown argument '" + a + "'");
        }
    }
    return o;
}

void apply_shapes(bench::Sizes& s, const std::vector<std::string>& shapes) {
    for (const std::string& text : shapes) {
        std::vector<int64_t> d;
        for (const std::string& part : split(text, 'x')) d.push_back(to_int(part, "--shape"));
        if (d.size() == 3) {
            s.matmuls = {{"custom", d[0], d[1], d[2]}};
            s.matmul_bwd = s.matmuls[0];
        } else if (d.size() == 4) {
            s.attn = {d[0], d[1], d[2], d[3]};
        } else {
            usage_error("--shape takes MxNxK (matmul) or BxNHxTxHS (attention), got '" + text + "'");
        }
    }
}

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

bool on_cuda(const gptx::Device& d) { return d.kind == gptx::Device::Kind::cuda; }

// Work on a GPU is only enqueued by the ops: wait for it before reading a clock or a result.
void finish(const gptx::Device& d) {
    if (on_cuda(d)) gptx::cuda::synchronize(d.index);
}

// ---------------------------------------------------------------------------------------------------- validation
// Normwise relative error max|got - ref| / max|ref|: elementwise relative error is meaningless where a sum cancels
// to near zero, while the norm-wise form bounds every element by a fraction of the output's scale.
double rel_err(const Tensor& got, const Tensor& ref) {
    const float* g = got.data<float>();
    const float* r = ref.data<float>();
    double diff = 0.0, scale = 0.0;
    for (int64_t i = 0; i < ref.numel(); i++) {
        const double d = std::fabs(static_cast<double>(g[i]) - r[i]);
        if (!(d <= diff)) diff = d;  // also catches NaN (then diff stays NaN)
        scale = std::max(scale, std::fabs(static_cast<double>(r[i])));
    }
    if (std::isnan(diff)) return INFINITY;
    return scale > 0 ? diff / scale : diff;
}

struct Validation {
    bool ran = false, ok = false;
    double err = 0.0;
    std::string message;
};

// Switches the whole process to the reference path and back, also when the op throws.
struct IsaGuard {
    std::string restore;
    explicit IsaGuard(const std::string& isa, const std::string& back) : restore(back) { gptx::set_cpu_isa(isa); }
    ~IsaGuard() { gptx::set_cpu_isa(restore); }
};

// The scalar reference runs on the host; the fast path runs on `device`, on its own copy of the same inputs (on the
// CPU: the same problem, run again), and its outputs come back to the host for the comparison.
Validation validate(const bench::Case& c, const std::string& cpu_isa, const gptx::Device& device) {
    Validation v;
    v.ran = true;
    bench::Problem ref_p = c.make(true, gptx::Device::cpu());
    bench::Problem p = on_cuda(device) ? c.make(true, device) : ref_p;
    std::vector<Tensor> ref;
    {
        IsaGuard g("reference", cpu_isa);
        if (ref_p.reset) ref_p.reset();
        ref_p.run();
        for (const Tensor& t : ref_p.results()) ref.push_back(t.clone());
    }
    if (p.reset) p.reset();
    p.run();
    finish(device);
    std::vector<Tensor> got;
    for (const Tensor& t : p.results()) got.push_back(t.to(gptx::Device::cpu()));
    size_t worst = 0;
    for (size_t i = 0; i < got.size(); i++) {
        const double e = rel_err(got[i], ref[i]);
        if (i == 0 || !(e <= v.err)) {
            v.err = e;
            worst = i;
        }
    }
    v.ok = v.err <= c.tol;
    if (!v.ok) {
        char buf[256];
        std::snprintf(buf, sizeof buf, "MISMATCH %s at %s: output %zu off the reference by %.3g (tolerance %.1g)",
                      c.label.c_str(), p.shape.c_str(), worst, v.err, c.tol);
        v.message = buf;
    }
    return v;
}

// ---------------------------------------------------------------------------------------------------- timing
struct Timing {
    int repeats = 0, batch = 1;
    double median_s = 0.0, min_s = 0.0;  // per run of the op
};

// On a GPU one sample is `batch` back-to-back runs between two synchronisations, so that a synchronise and a host
// clock read (typically 5-20 us; not measured here) stay small next to the sample: add_forward at 2048x768 moves
// 19 MB, about 4 us at an H200's 4.8 TB/s. On the CPU a sample is one run.
Timing time_problem(const bench::Problem& p, int repeats, double target_s, const gptx::Device& device) {
    auto sample = [&](int batch) {
        finish(device);
        const double t0 = now_s();
        for (int i = 0; i < batch; i++) p.run();
        finish(device);
        return (now_s() - t0) / batch;
    };
    double t = sample(1);           // warm-up: first touch of the outputs, thread-pool start, caches, kernel loading
    if (t < 0.25) t = sample(1);    // a cheap op gets a second warm-up, which also gives a cleaner estimate
    Timing r;
    if (on_cuda(device)) r.batch = static_cast<int>(std::clamp(2e-3 / std::max(t, 1e-7), 1.0, 1000.0));
    const double per_sample = t * r.batch;
    r.repeats = repeats > 0 ? repeats
                            : static_cast<int>(std::clamp(target_s / std::max(per_sample, 1e-7), 3.0, 20000.0));
    std::vector<double> ts;
    for (int i = 0; i < r.repeats; i++) ts.push_back(sample(r.batch));
    std::sort(ts.begin(), ts.end());
    const size_t n = ts.size();
    r.median_s = n % 2 ? ts[n / 2] : 0.5 * (ts[n / 2 - 1] + ts[n / 2]);
    r.min_s = ts[0];
    return r;
}

// ---------------------------------------------------------------------------------------------------- machine
// What the rates are measured on: the CPU with its probed peaks, or a CUDA device described by its properties
// (they carry no clock or bus width, so no peak: the share-of-peak column stays empty there).
struct Machine {
    gptx::Device device;
    std::string isa;  // CPU kernel path timed (on CUDA: the path the CPU returns to after each reference check)
    bench::MachinePeak peak;
    gptx::cuda::DeviceProperties gpu;
};

std::string describe_gpu(const Machine& m) {
    char buf[512];
    std::snprintf(buf, sizeof buf, "%s %s (sm_%d%d, %d SMs, %.1f GiB)", m.device.str().c_str(), m.gpu.name,
                  m.gpu.major, m.gpu.minor, m.gpu.multiprocessors, m.gpu.total_memory / 1073741824.0);
    return buf;
}

// ---------------------------------------------------------------------------------------------------- output
struct Row {
    std::string name, label, shape, error;
    Timing timing;
    bool compute = false;  // GFLOP/s (else GB/s)
    double rate = 0.0, share = NAN;
    double peak_allocated_mib = NAN;  // CUDA: the allocator's peak while the timed problem lived
    Validation check;
};

std::string json_str(const std::string& s) {
    std::string r = "\"";
    for (char ch : s) {
        if (ch == '"' || ch == '\\') {
            r += '\\';
            r += ch;
        } else if (static_cast<unsigned char>(ch) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", ch);
            r += buf;
        } else {
            r += ch;
        }
    }
    return r + "\"";
}

std::string json_num(double v) {
    if (!std::isfinite(v)) return "null";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}

void write_json(const std::string& path, const Machine& m, const std::vector<Row>& rows) {
    const bench::MachinePeak& peak = m.peak;
    std::ofstream f(path);
    f << "{\n  \"machine\": {\"device\": " << json_str(m.device.str());
    if (on_cuda(m.device))
        f << ", \"device_name\": " << json_str(m.gpu.name) << ", \"compute_capability\": "
          << json_str(std::to_string(m.gpu.major) + "." + std::to_string(m.gpu.minor))
          << ", \"multiprocessors\": " << m.gpu.multiprocessors
          << ", \"total_memory_gib\": " << json_num(m.gpu.total_memory / 1073741824.0);
    f << ", \"cpu\": " << json_str(peak.cpu_model) << ", \"isa\": " << json_str(m.isa)
      << ", \"threads\": " << peak.threads << ", \"peak_gflops\": " << json_num(peak.gflops)
      << ", \"peak_gflops_how\": " << json_str(peak.gflops_how) << ", \"peak_probe_isa\": " << json_str(peak.probe_isa)
      << ", \"bandwidth_gbs\": " << json_num(peak.gbs) << ", \"copy_gbs\": " << json_num(peak.copy_gbs)
      << ", \"triad_gbs\": " << json_num(peak.triad_gbs) << ", \"probe_array_mib\": " << peak.array_mib
      << ", \"gptx_version\": " << json_str(gptx::version()) << "},\n  \"ops\": [";
    for (size_t i = 0; i < rows.size(); i++) {
        const Row& r = rows[i];
        f << (i ? ",\n" : "\n") << "    {\"name\": " << json_str(r.label) << ", \"op\": " << json_str(r.name)
          << ", \"shape\": " << json_str(r.shape);
        if (r.error.empty()) {
            f << ", \"repeats\": " << r.timing.repeats << ", \"median_ms\": " << json_num(r.timing.median_s * 1e3)
              << ", \"min_ms\": " << json_num(r.timing.min_s * 1e3) << ", \"" << (r.compute ? "gflops" : "gbs")
              << "\": " << json_num(r.rate) << ", \"share_of_peak\": " << json_num(r.share);
            if (on_cuda(m.device))
                f << ", \"runs_per_sample\": " << r.timing.batch
                  << ", \"peak_allocated_mib\": " << json_num(r.peak_allocated_mib);
        } else {
            f << ", \"error\": " << json_str(r.error);
        }
        f << ", \"validated\": " << (r.check.ran && r.check.ok ? "true" : "false")
          << ", \"max_rel_err\": " << (r.check.ran ? json_num(r.check.err) : "null") << "}";
    }
    f << "\n  ]\n}\n";
}

bool selected(const bench::Case& c, const std::vector<std::string>& ops) {
    if (ops.empty()) return true;
    for (const std::string& o : ops)
        if (o == "all" || o == c.name || o == c.label) return true;
    return false;
}

// --device: parsed and checked before anything else runs, so a machine or build without CUDA answers at once, in
// one line, with exit code 2 (the message is the library's: no CUDA in this build, or how many devices it sees).
gptx::Device checked_device(const std::string& text) {
    try {
        const gptx::Device d = gptx::Device::parse(text);
        if (on_cuda(d)) gptx::cuda::require_device(d, ("--device " + text).c_str());
        return d;
    } catch (const gptx::Error& e) {  // an unknown device name
        std::fprintf(stderr, "gptx-bench: %s\n", e.what());
        std::exit(2);
    } catch (const gptx::CudaError& e) {  // no CUDA in this build, or no such device
        std::fprintf(stderr, "gptx-bench: %s\n", e.what());
        std::exit(2);
    }
}

}  // namespace

int main(int argc, char** argv) {
    Options opt = parse(argc, argv);
    const gptx::Device device = checked_device(opt.device);
    if (on_cuda(device) && !opt.isa.empty())
        usage_error("--isa picks a CPU kernel path; it does not apply to --device " + opt.device);
    bench::Sizes sizes = opt.quick ? bench::quick_sizes() : bench::gpt2_small_sizes();
    apply_shapes(sizes, opt.shapes);
    if (opt.params > 0) sizes.params = opt.params;
    if (opt.quick && opt.repeats == 0) opt.repeats = 3;
    if (opt.quick && opt.probe_mib == 256) opt.probe_mib = 64;
    const std::vector<bench::Case> cases = bench::make_cases(sizes);

    if (opt.list) {
        for (const bench::Case& c : cases) std::printf("%-28s (--op %s)\n", c.label.c_str(), c.name.c_str());
        return 0;
    }
    std::vector<const bench::Case*> todo;
    for (const bench::Case& c : cases)
        if (selected(c, opt.ops)) todo.push_back(&c);
    for (const std::string& o : opt.ops) {
        const bool known = o == "all" || std::any_of(cases.begin(), cases.end(), [&](const bench::Case& c) {
                               return o == c.name || o == c.label;
                           });
        if (!known) usage_error("unknown op '" + o + "'");
    }

    const int threads = opt.threads > 0 ? opt.threads : omp_get_num_procs();
    gptx::set_num_threads(threads);
    Machine m;
    m.device = device;
    m.isa = opt.isa.empty() ? gptx::cpu_isa() : opt.isa;
    try {
        gptx::set_cpu_isa(m.isa);
    } catch (const gptx::Error& e) {
        usage_error(e.what());
    }

    if (on_cuda(device)) {
        m.gpu = gptx::cuda::device_properties(device.index);
        m.peak.cpu_model = bench::cpu_model_name();
        m.peak.threads = threads;
        m.peak.gflops = m.peak.gbs = m.peak.copy_gbs = m.peak.triad_gbs = NAN;
        std::printf("gptx %s | %s | reference on %s, %d thread(s)\n", gptx::version(), describe_gpu(m).c_str(),
                    m.peak.cpu_model.c_str(), threads);
        std::printf("peak: not probed on CUDA (the %%peak column stays empty)\n\n");
    } else {
        m.peak = bench::measure_peak(threads, opt.probe_mib);
        std::printf("gptx %s | %s | isa %s | %d thread(s)\n", gptx::version(), m.peak.cpu_model.c_str(),
                    m.isa.c_str(), threads);
        std::printf("peak: %.1f GFLOP/s fp32 (%s), %.1f GB/s (copy %.1f, triad %.1f over %zu MiB arrays)\n\n",
                    m.peak.gflops, m.peak.gflops_how.c_str(), m.peak.gbs, m.peak.copy_gbs, m.peak.triad_gbs,
                    m.peak.array_mib);
    }
    std::printf("%-28s %-26s %7s %10s %10s %16s %7s  %s\n", "op", "shape", "reps", "median ms", "min ms", "rate",
                "%peak", "check (rel err)");

    std::vector<Row> rows;
    bool failed = false;
    for (const bench::Case* c : todo) {
        Row r;
        r.name = c->name;
        r.label = c->label;
        try {
            if (opt.validate) {
                r.check = validate(*c, m.isa, device);
                if (!r.check.ok) {
                    std::printf("%s\n", r.check.message.c_str());
                    failed = true;
                }
            }
            if (on_cuda(device)) gptx::cuda::reset_peak(device.index);
            const bench::Problem p = c->make(false, device);
            r.shape = p.shape;
            r.timing = time_problem(p, opt.repeats, 1.5, device);
            if (on_cuda(device))
                r.peak_allocated_mib = gptx::cuda::memory_stats(device.index).peak_allocated / 1048576.0;
            r.compute = p.flops > 0;
            r.rate = (r.compute ? p.flops : p.bytes) / r.timing.median_s * 1e-9;
            const double peak_rate = r.compute ? m.peak.gflops : m.peak.gbs;
            r.share = peak_rate > 0 ? r.rate / peak_rate : NAN;
        } catch (const std::exception& e) {
            r.error = e.what();
            failed = true;
        }
        if (!r.error.empty()) {
            std::printf("%-28s ERROR %s\n", r.label.c_str(), r.error.c_str());
        } else {
            char rate[32], share[16], check[48];
            std::snprintf(rate, sizeof rate, "%.1f %s", r.rate, r.compute ? "GFLOP/s" : "GB/s");
            if (std::isfinite(r.share))
                std::snprintf(share, sizeof share, "%.1f%%", 100 * r.share);
            else
                std::snprintf(share, sizeof share, "-");
            if (!r.check.ran)
                std::snprintf(check, sizeof check, "-");
            else
                std::snprintf(check, sizeof check, "%s (%.1e)", r.check.ok ? "ok" : "FAIL", r.check.err);
            std::printf("%-28s %-26s %7d %10.3f %10.3f %16s %7s  %s\n", r.label.c_str(), r.shape.c_str(),
                        r.timing.repeats, r.timing.median_s * 1e3, r.timing.min_s * 1e3, rate, share, check);
        }
        std::fflush(stdout);
        rows.push_back(r);
    }
    if (!opt.json.empty()) write_json(opt.json, m, rows);
    if (failed) std::printf("\nsome ops FAILED validation or raised an error\n");
    return failed ? 1 : 0;
}
