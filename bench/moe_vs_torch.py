#!/usr/bin/env python3
"""The expert part of one BF16 MoE layer (hidden states + top-k ids/weights -> combined output):
torch's grouped-GEMM path (permute tokens, grouped_mm gate+up, SiLU*mul, grouped_mm down, weighted
combine) against moekit's GPU fused_experts, for the presets of shared/anchors.md, at
M in {1, 4, 16, 64, 256, 1024, 4096, 8192}.

Every figure is time / floor (lower is better) next to the time itself, with
floor = max(bytes / copy bandwidth, flops / bf16 matmul peak); both ceilings are measured at the start
of this run (device-to-device copy; torch.matmul 8192^3 bf16). bytes = w13 + w2 of every distinct
expert touched + activations in and out; flops = 2 * M * k * (2I * H + H * I). Routing: logits
~ N(0, 1) fp32 -> softmax -> top-k -> renormalise; x ~ N(0, 1); weights ~ N(0, 0.02^2). Time = median
of CUDA-graph replays with a 256 MiB buffer zeroed before each one (cold L2). moekit runs on the
interleaved w13 layout (rows 2j = gate_j, 2j+1 = up_j: its grouped prefill GEMM 1 then computes the
activation in its epilogue) rearranged once from the same weights, where the build takes
gate_up_interleaved; torch keeps the halves.

    python3 bench/moe_vs_torch.py --csv out.csv [--presets qwen3-30b-a3b] [--sizes 1,64]
"""

import argparse
import csv
import statistics
import sys

import torch
import torch.nn.functional as F

import moekit
import moekit.torch  # noqa: F401  (registers torch.ops.moekit.*)

DEV = "cuda"
BF16 = torch.bfloat16

PRESETS = {  # name: (E, k, H, I)
    "qwen3-30b-a3b": (128, 8, 2048, 768),
    "mixtral-8x7b": (8, 2, 4096, 14336),
    "deepseek-v3": (256, 8, 7168, 2048),
}

_flush = None


def flush_l2():
    global _flush
    if _flush is None:
        _flush = torch.empty(256 << 20, dtype=torch.uint8, device=DEV)
    _flush.zero_()


def time_cold(fns, replays):
    """Median milliseconds of one replay of each fn() captured into its own CUDA graph, L2 flushed
    before each replay (the flush is outside the timed interval). The graphs take turns replay by
    replay, so that clock and temperature drift during the run reach every fn alike."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for fn in fns:
            for _ in range(2):
                fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graphs = []
    for fn in fns:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        graph.replay()
        graphs.append(graph)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = [[] for _ in graphs]
    for _ in range(replays):
        for graph, t in zip(graphs, times):
            flush_l2()
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            t.append(start.elapsed_time(end))
    return [statistics.median(t) for t in times]


def measure_ceilings():
    """(copy bytes/s counting read + write, bf16 matmul flop/s), each the median of 10 runs."""
    n = 1 << 30
    src = torch.empty(n, dtype=torch.uint8, device=DEV)
    dst = torch.empty_like(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def median_ms(fn):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        t = []
        for _ in range(10):
            start.record()
            fn()
            end.record()
            end.synchronize()
            t.append(start.elapsed_time(end))
        return statistics.median(t)

    copy_bw = 2 * n / (median_ms(lambda: dst.copy_(src)) * 1e-3)
    del src, dst
    a = torch.randn(8192, 8192, device=DEV, dtype=BF16)
    b = torch.randn(8192, 8192, device=DEV, dtype=BF16)
    peak = 2 * 8192**3 / (median_ms(lambda: torch.matmul(a, b)) * 1e-3)
    return copy_bw, peak


def grouped_mm(a, b, offs):
    """[sum M, K] x [E, K, N] (b a transposed view of [E, N, K]) -> [sum M, N] with rows of group e
    ending at offs[e]."""
    fn = getattr(F, "grouped_mm", None)
    if fn is not None:
        return fn(a, b, offs=offs)
    return torch._grouped_mm(a, b, offs=offs)


def torch_moe(x, w13, w2, topk_weights, topk_ids):
    """torch's path: permute tokens by expert, grouped_mm gate+up, SiLU*mul, grouped_mm down,
    weight and combine (fp32 sum over k)."""
    M, H = x.shape
    E, two_i, _ = w13.shape
    k = topk_ids.shape[1]
    flat = topk_ids.flatten().long()
    order = torch.argsort(flat, stable=True)
    counts = torch.zeros(E, device=DEV, dtype=torch.long).scatter_add_(0, flat, torch.ones_like(flat))
    offs = torch.cumsum(counts, 0).int()
    xs = x.index_select(0, order // k)
    h = grouped_mm(xs, w13.transpose(1, 2), offs)
    i = two_i // 2
    a = F.silu(h[:, :i]) * h[:, i:]
    y = grouped_mm(a, w2.transpose(1, 2), offs)
    unpermuted = torch.empty_like(y).index_copy_(0, order, y)
    return (unpermuted.view(M, k, H).float() * topk_weights.unsqueeze(-1)).sum(1).to(x.dtype)


def interleaved_rows(w13):
    """[E, 2I, H] gate/up halves -> rows 2j = gate_j, 2j+1 = up_j (same values)."""
    E, two_i, H = w13.shape
    return w13.view(E, 2, two_i // 2, H).transpose(1, 2).reshape(E, two_i, H).contiguous()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", help="write the table as CSV here")
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--sizes", default="1,4,16,64,256,1024,4096,8192")
    parser.add_argument("--replays", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("moe_vs_torch: needs a CUDA GPU", file=sys.stderr)
        return 1
    has_moekit = moekit.built_with_cuda() and hasattr(moekit._C, "fused_experts")
    copy_bw, peak = measure_ceilings()
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, moekit {moekit.__version__}")
    print(f"# ceilings: copy {copy_bw / 1e9:.0f} GB/s, bf16 matmul 8192^3 {peak / 1e12:.0f} TFLOP/s")
    interleave = has_moekit and "gate_up_interleaved" in str(torch.ops.moekit.fused_experts.default._schema)
    if not has_moekit:
        print("# moekit fused_experts is not in this build: torch only")
    else:
        print(f"# moekit w13 layout: {'interleaved' if interleave else 'halves'}")
    header = ["preset", "M", "floor_us", "torch_us", "torch_x_floor", "moekit_us",
              "moekit_x_floor", "moekit_vs_torch_rel_err", "copy_GBps", "matmul_TFLOPs"]
    rows = []
    print(f"{'preset':<16}{'M':>6}{'floor us':>10}{'torch us':>10}{'x floor':>8}{'moekit us':>11}{'x floor':>8}{'rel err':>9}")
    gen = torch.Generator(device=DEV)
    gen.manual_seed(0)
    for preset in args.presets.split(","):
        E, k, H, I = PRESETS[preset]
        w13 = torch.randn(E, 2 * I, H, device=DEV, dtype=BF16, generator=gen).mul_(0.02)
        w2 = torch.randn(E, H, I, device=DEV, dtype=BF16, generator=gen).mul_(0.02)
        w13_moekit = interleaved_rows(w13) if interleave else w13
        moekit_kwargs = {"gate_up_interleaved": True} if interleave else {}
        for M in (int(s) for s in args.sizes.split(",")):
            x = torch.randn(M, H, device=DEV, dtype=BF16, generator=gen)
            logits = torch.randn(M, E, device=DEV, generator=gen)
            topk_weights, topk_ids = torch.topk(torch.softmax(logits, -1), k)
            topk_weights = topk_weights / topk_weights.sum(-1, keepdim=True)
            topk_ids = topk_ids.int()
            touched = int(torch.unique(topk_ids).numel())
            bytes_ = touched * 3 * I * H * 2 + 2 * M * H * 2
            flops = 2 * M * k * (2 * I * H + H * I)
            floor_ms = max(bytes_ / copy_bw, flops / peak) * 1e3
            out = {}

            def run_torch():
                out["torch"] = torch_moe(x, w13, w2, topk_weights, topk_ids)

            if has_moekit:
                def run_moekit():
                    out["moekit"] = torch.ops.moekit.fused_experts(x, w13_moekit, w2, topk_weights, topk_ids,
                                                                   **moekit_kwargs)

                t_torch, t_mk = time_cold([run_torch, run_moekit], args.replays)
            else:
                (t_torch,) = time_cold([run_torch], args.replays)
            row = [preset, M, f"{floor_ms * 1e3:.1f}", f"{t_torch * 1e3:.1f}",
                   f"{t_torch / floor_ms:.2f}", "", "", "", f"{copy_bw / 1e9:.0f}",
                   f"{peak / 1e12:.0f}"]
            line = f"{preset:<16}{M:>6}{floor_ms * 1e3:>10.1f}{t_torch * 1e3:>10.1f}{t_torch / floor_ms:>8.2f}"
            if has_moekit:
                run_torch()
                run_moekit()
                ref = out["torch"].float()
                err = ((out["moekit"].float() - ref).norm() / ref.norm().clamp_min(1e-30)).item()
                row[5:8] = [f"{t_mk * 1e3:.1f}", f"{t_mk / floor_ms:.2f}", f"{err:.2e}"]
                line += f"{t_mk * 1e3:>11.1f}{t_mk / floor_ms:>8.2f}{err:>9.1e}"
            print(line)
            rows.append(row)
            del x, logits, out
        del w13, w2, w13_moekit
        torch.cuda.empty_cache()
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        print(f"# wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
