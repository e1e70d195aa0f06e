#!/usr/bin/env python3
"""moekit's small MoE ops against the same computation composed from torch ops, in one process on
one GPU: routing (topk_softmax, topk_sigmoid, moe_fused_gate, kimi_k2_moe_fused_gate), dispatch
(moe_align_block_size, prepare_moe_input, shuffle_rows), combine (moe_sum, moe_sum_reduce,
apply_shuffle_mul_sum) and fused_qk_norm_rope, at decode sizes M in {1, 16, 64} and a prefill of
16384 tokens.

Timing: each side is captured into a CUDA graph of `--inner` back-to-back calls; every replay is
timed with CUDA events and the median replay time / inner is reported (microseconds per call).
Inputs stay the same between calls (L2-warm, as in a decode step). The results of the two sides are
compared once (max abs difference; ids compared exactly where the op is exact).

    python3 bench/ops_vs_torch.py --csv out.csv [--ops topk_softmax,moe_sum] [--sizes 1,16]
"""

import argparse
import csv
import math
import statistics
import sys

import torch
import torch.nn.functional as F

import moekit
import moekit.torch as mk  # noqa: F401  (registers torch.ops.moekit.*)

DEV = "cuda"
BF16 = torch.bfloat16


def time_graph(fn, inner, replays):
    """Median microseconds per call of fn() captured `inner` times into one CUDA graph."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(inner):
            fn()
    for _ in range(3):
        graph.replay()
    times = []
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(replays):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0 / inner)
    return statistics.median(times)


def max_diff(a, b):
    if a.numel() == 0:
        return 0.0
    return (a.float() - b.float()).abs().max().item()


# ---------------------------------------------------------------------------------------------
# One entry per op: setup(M) -> (moekit_fn, torch_fn, compare) where compare() returns the max
# difference between the two sides' results after one call of each.


def routing_weights_ids(M, k):
    return (torch.empty(M, k, device=DEV), torch.empty(M, k, device=DEV, dtype=torch.int32))


def op_topk_softmax(M, E=128, k=8):
    logits = torch.randn(M, E, device=DEV)
    w, ids = routing_weights_ids(M, k)
    out = {}

    def mk_fn():
        torch.ops.moekit.topk_softmax(w, ids, logits, True)

    def torch_fn():
        tw, tids = torch.topk(torch.softmax(logits, -1), k)
        out["w"], out["ids"] = tw / tw.sum(-1, keepdim=True), tids.int()

    def compare():
        mk_fn(); torch_fn()
        return max(max_diff(w, out["w"]), float((ids != out["ids"]).sum().item()))

    return mk_fn, torch_fn, compare, f"E={E} k={k} fp32 renorm"


def op_topk_sigmoid(M, E=128, k=8):
    logits = torch.randn(M, E, device=DEV)
    bias = torch.randn(E, device=DEV) * 0.1
    w, ids = routing_weights_ids(M, k)
    out = {}

    def mk_fn():
        torch.ops.moekit.topk_sigmoid(w, ids, logits, True, bias)

    def torch_fn():
        s = torch.sigmoid(logits)
        tids = torch.topk(s + bias, k)[1]
        tw = s.gather(1, tids)
        out["w"], out["ids"] = tw / tw.sum(-1, keepdim=True), tids.int()

    def compare():
        mk_fn(); torch_fn()
        return max(max_diff(w, out["w"]), float((ids != out["ids"]).sum().item()))

    return mk_fn, torch_fn, compare, f"E={E} k={k} bias renorm"


def torch_biased_grouped_topk(logits, bias, G, topk_group, k):
    """SGLang's PyTorch DeepSeek-V3 router (biased_grouped_topk), renormalised."""
    M, E = logits.shape
    s = torch.sigmoid(logits)
    t = s + bias
    group_scores = t.view(M, G, -1).topk(2, dim=-1)[0].sum(-1)
    group_idx = torch.topk(group_scores, topk_group, dim=-1, sorted=False)[1]
    group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
    score_mask = group_mask.unsqueeze(-1).expand(M, G, E // G).reshape(M, E)
    ids = torch.topk(t.masked_fill(~score_mask.bool(), float("-inf")), k, dim=-1)[1]
    w = s.gather(1, ids)
    return w / w.sum(-1, keepdim=True), ids.int()


def op_moe_fused_gate(M, E=256, G=8, topk_group=4, k=8):
    logits = torch.randn(M, E, device=DEV)
    bias = torch.randn(E, device=DEV) * 0.1
    res = {}

    def mk_fn():
        res["mk"] = torch.ops.moekit.moe_fused_gate(logits, bias, G, topk_group, k)

    def torch_fn():
        res["torch"] = torch_biased_grouped_topk(logits, bias, G, topk_group, k)

    def compare():
        mk_fn(); torch_fn()
        (w, ids), (tw, tids) = res["mk"], res["torch"]
        return max(max_diff(w, tw), float((ids != tids).sum().item()))

    return mk_fn, torch_fn, compare, f"E={E} G={G} groups={topk_group} k={k}"


def op_kimi_k2_moe_fused_gate(M, E=384, k=8):
    logits = torch.randn(M, E, device=DEV)
    bias = torch.randn(E, device=DEV) * 0.1
    res = {}

    def mk_fn():
        res["mk"] = torch.ops.moekit.kimi_k2_moe_fused_gate(logits, bias, k, True, 2.872, True)

    def torch_fn():
        s = torch.sigmoid(logits)
        ids = torch.topk(s + bias, k)[1]
        w = s.gather(1, ids)
        res["torch"] = (w / w.sum(-1, keepdim=True) * 2.872, ids.int())

    def compare():
        mk_fn(); torch_fn()
        (w, ids), (tw, tids) = res["mk"], res["torch"]
        return max(max_diff(w, tw), float((ids != tids).sum().item()))

    return mk_fn, torch_fn, compare, f"E={E} k={k} renorm rsf"


def random_topk_ids(M, E, k):
    return torch.rand(M, E, device=DEV).argsort(1)[:, :k].int().contiguous()


def op_moe_align_block_size(M, E=128, k=8, bs=64):
    ids = random_topk_ids(M, E, k)
    numel = M * k
    P, B = moekit.ops.moe_align_block_size_capacity(numel, E + 1, bs)
    sorted_ids = torch.empty(P, device=DEV, dtype=torch.int32)
    experts = torch.empty(B, device=DEV, dtype=torch.int32)
    post_pad = torch.empty(1, device=DEV, dtype=torch.int32)
    cumsum = torch.empty(E + 2, device=DEV, dtype=torch.int32)
    t_sorted = torch.empty_like(sorted_ids)
    t_experts = torch.empty_like(experts)
    t_post_pad = torch.empty_like(post_pad)

    def mk_fn():
        torch.ops.moekit.moe_align_block_size(ids, E + 1, bs, sorted_ids, experts, post_pad,
                                              cumsum, True)

    def torch_fn():
        # Buckets 0..E (bucket 0 = invalid ids), stable order inside a bucket, padded to bs.
        flat = ids.flatten().long() + 1
        order = torch.argsort(flat, stable=True)
        counts = torch.zeros(E + 1, device=DEV, dtype=torch.long).scatter_add_(
            0, flat, torch.ones_like(flat))
        padded = (counts + bs - 1) // bs * bs
        pad_end = torch.cumsum(padded, 0)
        pad_start = pad_end - padded
        count_start = torch.cumsum(counts, 0) - counts
        bucket = flat[order]
        slot = pad_start[bucket] + torch.arange(numel, device=DEV) - count_start[bucket]
        t_sorted.fill_(numel)
        t_sorted.scatter_(0, slot, order.int())
        block_start = torch.arange(B, device=DEV) * bs
        block_bucket = torch.searchsorted(pad_end, block_start, right=True)
        t_experts.copy_(torch.where(block_start < pad_end[-1], block_bucket - 1, 0).int())
        t_post_pad.copy_(pad_end[-1:].int())

    def compare():
        mk_fn(); torch_fn()
        used = int(post_pad.item())
        return max(float((sorted_ids[:used] != t_sorted[:used]).sum().item()),
                   float((experts[:used // bs] != t_experts[:used // bs]).sum().item()),
                   float((post_pad != t_post_pad).sum().item()))

    return mk_fn, torch_fn, compare, f"E={E} k={k} block={bs} pad"


def op_route_and_align_block_size(M, E=128, k=8, bs=64):
    """moekit's fused route + align against torch's softmax top-k followed by the torch align
    composition of op_moe_align_block_size."""
    logits = torch.randn(M, E, device=DEV)
    w, ids = routing_weights_ids(M, k)
    P, B = moekit.ops.moe_align_block_size_capacity(M * k, E, bs)
    i32 = dict(device=DEV, dtype=torch.int32)
    sorted_ids, experts, post_pad = torch.empty(P, **i32), torch.empty(B, **i32), torch.empty(1, **i32)
    res = {}

    def mk_fn():
        torch.ops.moekit.route_and_align_block_size(logits, None, w, ids, sorted_ids, experts,
                                                    post_pad, "topk_softmax", True, 0.0, "logit",
                                                    1, 1, 0, 0.0, False, bs, True)

    def torch_fn():
        tw, tids = torch.topk(torch.softmax(logits, -1), k)
        tw = tw / tw.sum(-1, keepdim=True)
        flat = tids.flatten()
        order = torch.argsort(flat, stable=True)
        counts = torch.zeros(E, device=DEV, dtype=torch.long).scatter_add_(0, flat, torch.ones_like(flat))
        padded = (counts + bs - 1) // bs * bs
        pad_end = torch.cumsum(padded, 0)
        slot = (pad_end - padded)[flat[order]] + torch.arange(M * k, device=DEV) - (
            torch.cumsum(counts, 0) - counts)[flat[order]]
        t_sorted = torch.full((P,), M * k, device=DEV, dtype=torch.int32).scatter_(0, slot, order.int())
        block_start = torch.arange(B, device=DEV) * bs
        t_experts = torch.searchsorted(pad_end, block_start, right=True).int()
        res["torch"] = (tw, tids.int(), t_sorted, t_experts, pad_end[-1:].int())

    def compare():
        mk_fn(); torch_fn()
        tw, tids, t_sorted, t_experts, t_post = res["torch"]
        used = int(post_pad.item())
        return max(max_diff(w, tw), float((ids != tids).sum().item()),
                   float((sorted_ids[:used] != t_sorted[:used]).sum().item()),
                   float((experts[:used // bs] != t_experts[:used // bs]).sum().item()),
                   float((post_pad != t_post).sum().item()))

    return mk_fn, torch_fn, compare, f"E={E} k={k} block={bs} softmax renorm + align"


def op_prepare_moe_input(M, E=128, k=8, n=768, h=2048):
    ids = random_topk_ids(M, E, k)
    i32 = dict(device=DEV, dtype=torch.int32)
    offsets, sizes1, sizes2 = torch.empty(E + 1, **i32), torch.empty(E, 3, **i32), torch.empty(E, 3, **i32)
    in_perm, out_perm = torch.empty(M * k, **i32), torch.empty(M * k, **i32)
    res = {}

    def mk_fn():
        torch.ops.moekit.prepare_moe_input(ids, offsets, sizes1, sizes2, in_perm, out_perm, E, n, h, None)

    def torch_fn():
        flat = ids.flatten().long()
        counts = torch.zeros(E, device=DEV, dtype=torch.long).scatter_add_(0, flat, torch.ones_like(flat))
        t_offsets = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)]).int()
        order = torch.argsort(flat, stable=True)
        t_in = (order // k).int()
        t_out = torch.empty_like(order).scatter_(0, order, torch.arange(M * k, device=DEV)).int()
        c = counts.int()
        t_s1 = torch.stack([c, torch.full_like(c, 2 * n), torch.full_like(c, h)], 1)
        t_s2 = torch.stack([c, torch.full_like(c, h), torch.full_like(c, n)], 1)
        res["torch"] = (t_offsets, t_s1, t_s2, t_in, t_out)

    def compare():
        mk_fn(); torch_fn()
        return float(sum((a != b).sum().item() for a, b in
                         zip((offsets, sizes1, sizes2, in_perm, out_perm), res["torch"])))

    return mk_fn, torch_fn, compare, f"E={E} k={k}"


def op_shuffle_rows(M, k=8, h=2048):
    x = torch.randn(M * k, h, device=DEV, dtype=BF16)
    perm = torch.randperm(M * k, device=DEV).int()
    res = {}

    def mk_fn():
        res["mk"] = torch.ops.moekit.shuffle_rows(x, perm, [M * k, h])

    def torch_fn():
        res["torch"] = x.index_select(0, perm)

    def compare():
        mk_fn(); torch_fn()
        return max_diff(res["mk"], res["torch"])

    return mk_fn, torch_fn, compare, f"rows=M*{k} H={h} bf16"


def op_moe_sum(M, k=8, h=2048):
    x = torch.randn(M, k, h, device=DEV, dtype=BF16)
    out, t_out = torch.empty(M, h, device=DEV, dtype=BF16), torch.empty(M, h, device=DEV, dtype=BF16)

    def mk_fn():
        torch.ops.moekit.moe_sum(x, out)

    def torch_fn():
        torch.sum(x, 1, out=t_out)

    def compare():
        mk_fn(); torch_fn()
        return max_diff(out, t_out)

    return mk_fn, torch_fn, compare, f"k={k} H={h} bf16"


def op_moe_sum_reduce(M, k=8, h=2048, rsf=2.5):
    x = torch.randn(M, k, h, device=DEV, dtype=BF16)
    out, t_out = torch.empty(M, h, device=DEV, dtype=BF16), torch.empty(M, h, device=DEV, dtype=BF16)

    def mk_fn():
        torch.ops.moekit.moe_sum_reduce(x, out, rsf)

    def torch_fn():
        t_out.copy_(x.float().sum(1) * rsf)

    def compare():
        mk_fn(); torch_fn()
        return max_diff(out, t_out)

    return mk_fn, torch_fn, compare, f"k={k} H={h} bf16 rsf={rsf}"


def op_apply_shuffle_mul_sum(M, k=8, h=2048):
    x = torch.randn(M * k, h, device=DEV, dtype=BF16)
    perm = torch.randperm(M * k, device=DEV).int()
    factors = torch.rand(M * k, device=DEV, dtype=BF16)
    out, t_out = torch.empty(M, h, device=DEV, dtype=BF16), torch.empty(M, h, device=DEV, dtype=BF16)

    def mk_fn():
        torch.ops.moekit.apply_shuffle_mul_sum(x, out, perm, factors)

    def torch_fn():
        gathered = x.index_select(0, perm).view(M, k, h)
        t_out.copy_((gathered.float() * factors.float().view(M, k, 1)).sum(1))

    def compare():
        mk_fn(); torch_fn()
        return max_diff(out, t_out)

    return mk_fn, torch_fn, compare, f"k={k} H={h} bf16"


def op_fused_qk_norm_rope(M, hq=32, hk=4, hv=4, d=128, base=1e6, eps=1e-6):
    qkv = torch.randn(M, (hq + hk + hv) * d, device=DEV, dtype=BF16)
    qkv_t = qkv.clone()
    qw = torch.rand(d, device=DEV, dtype=BF16) + 0.5
    kw = torch.rand(d, device=DEV, dtype=BF16) + 0.5
    pos = torch.randint(0, 32768, (M,), device=DEV, dtype=torch.int64)
    inv_freq = base ** (-torch.arange(0, d, 2, device=DEV, dtype=torch.float64) / d)
    cache_pos = torch.arange(32768, device=DEV, dtype=torch.float64)
    angles = torch.outer(cache_pos, inv_freq)
    cos_cache, sin_cache = angles.cos().float(), angles.sin().float()

    def mk_fn():
        torch.ops.moekit.fused_qk_norm_rope(qkv, hq, hk, hv, d, eps, qw, kw, base, True, pos, 1.0,
                                            0.0, 0.0, 1.0)

    def rms_rope(x, w, cos, sin):
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w.float()
        a, b = x[..., : d // 2], x[..., d // 2:]
        return torch.cat([a * cos - b * sin, b * cos + a * sin], -1).to(BF16)

    def torch_fn():
        q = qkv_t[:, : hq * d].view(M, hq, d)
        k = qkv_t[:, hq * d: (hq + hk) * d].view(M, hk, d)
        cos, sin = cos_cache[pos].unsqueeze(1), sin_cache[pos].unsqueeze(1)
        q.copy_(rms_rope(q, qw, cos, sin))
        k.copy_(rms_rope(k, kw, cos, sin))

    def compare():
        fresh = torch.randn_like(qkv)
        qkv.copy_(fresh); qkv_t.copy_(fresh)
        mk_fn(); torch_fn()
        return max_diff(qkv, qkv_t)

    return mk_fn, torch_fn, compare, f"Hq={hq} Hk={hk} Hv={hv} D={d} neox bf16"


OPS = {
    "topk_softmax": op_topk_softmax,
    "topk_sigmoid": op_topk_sigmoid,
    "moe_fused_gate": op_moe_fused_gate,
    "kimi_k2_moe_fused_gate": op_kimi_k2_moe_fused_gate,
    "moe_align_block_size": op_moe_align_block_size,
    "route_and_align_block_size": op_route_and_align_block_size,
    "prepare_moe_input": op_prepare_moe_input,
    "shuffle_rows": op_shuffle_rows,
    "moe_sum": op_moe_sum,
    "moe_sum_reduce": op_moe_sum_reduce,
    "apply_shuffle_mul_sum": op_apply_shuffle_mul_sum,
    "fused_qk_norm_rope": op_fused_qk_norm_rope,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", help="write the table as CSV here")
    parser.add_argument("--ops", default=",".join(OPS), help="comma-separated op names")
    parser.add_argument("--sizes", default="1,16,64,16384", help="comma-separated token counts M")
    parser.add_argument("--inner", type=int, default=20, help="calls per captured graph")
    parser.add_argument("--replays", type=int, default=50, help="timed graph replays")
    args = parser.parse_args()

    if not torch.cuda.is_available() or not moekit.built_with_cuda():
        print("ops_vs_torch: needs a CUDA GPU and moekit built with CUDA", file=sys.stderr)
        return 1
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, moekit {moekit.__version__}")
    print(f"# median us per call over {args.replays} replays of a graph of {args.inner} calls")
    header = ["op", "M", "shape", "moekit_us", "torch_us", "speedup", "max_diff", "note"]
    rows = []
    print(f"{'op':<24}{'M':>7}  {'moekit us':>10}{'torch us':>10}{'speedup':>9}{'max diff':>10}  shape")
    for name in args.ops.split(","):
        if not hasattr(moekit._C, name):
            rows.append([name, "", "", "", "", "", "", "not bound in this build"])
            print(f"{name:<24}  (not bound in this build of moekit)")
            continue
        for M in (int(s) for s in args.sizes.split(",")):
            try:
                mk_fn, torch_fn, compare, shape = OPS[name](M)
                diff = compare()
                t_mk = time_graph(mk_fn, args.inner, args.replays)
                t_torch = time_graph(torch_fn, args.inner, args.replays)
                speedup = t_torch / t_mk if t_mk > 0 else math.inf
                rows.append([name, M, shape, f"{t_mk:.2f}", f"{t_torch:.2f}", f"{speedup:.2f}",
                             f"{diff:.3g}", ""])
                print(f"{name:<24}{M:>7}  {t_mk:>10.2f}{t_torch:>10.2f}{speedup:>8.2f}x{diff:>10.3g}  {shape}")
            except Exception as e:  # one failing op must not hide the others
                rows.append([name, M, "", "", "", "", "", f"error: {e}"])
                print(f"{name:<24}{M:>7}  ERROR {type(e).__name__}: {e}")
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
