"""FLOPs and bytes moved by one operator call, from what a trace records of it: input dims, dtypes and the concrete
(scalar and list) arguments. Pure functions, no torch; `work.py` maps op names to them.

Conventions (TraceLens's TreePerf, so that figures can be checked against its tables):
- GEMM: 2*M*N*K; bytes A + B + output (+ a bias of N), at the inputs' element size. TraceLens adds M*N FLOPs for a
  bias (1/(2K) more); the count here keeps torch.utils.flop_counter's convention, which graph nodes use too.
- convolution: 2 * output elements * (C_in / groups) * kernel size; bytes input + weight + output (+ bias).
  Backward: the input and weight gradients each cost the forward's FLOPs.
- attention: q @ k^T and p @ v, 2 per multiply-accumulate, halved when causal with equal lengths; bytes q + k + v +
  output (grouped-query k and v at their own head count). Backward: 2.5x the forward for flash kernels (recomputed
  q @ k^T plus four products), bytes q, k, v, output gradient read and three gradients written.
- element-wise: one FLOP per output element; bytes every tensor input plus the output. Reductions: one FLOP per input
  element. Softmax: 3 per element, bytes input + output. Normalisation: 5 per element (TraceLens's layer norm), bytes
  input, output and the affine parameters. Copies, fills, gathers: no FLOPs, the bytes they read and write.
Every formula returns None when the recorded arguments do not say enough (a shape missing, a stride unknown).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

# Kineto's "Input type" strings (and the short names live runs use) -> bytes per element
ELEMENT_BYTES = {
    "float": 4, "c10::Half": 2, "c10::BFloat16": 2, "double": 8, "long int": 8, "long": 8, "int": 4, "short int": 2,
    "short": 2, "signed char": 1, "unsigned char": 1, "bool": 1, "c10::Float8_e4m3fn": 1, "c10::Float8_e5m2": 1,
    "c10::Float8_e4m3fnuz": 1, "c10::Float8_e5m2fnuz": 1, "c10::Float8_e8m0fnu": 1, "c10::Float4_e2m1fn_x2": 1,
    "c10::qint8": 1, "c10::quint8": 1, "c10::qint32": 4, "c10::complex<float>": 8, "c10::complex<double>": 16,
    "float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4, "int16": 2, "int8": 1,
    "uint8": 1, "float8_e4m3fn": 1, "float8_e5m2": 1,
}
SHORT_DTYPE = {"float": "fp32", "c10::Half": "fp16", "c10::BFloat16": "bf16", "double": "fp64", "long int": "int64",
               "int": "int32", "signed char": "int8", "unsigned char": "uint8", "bool": "bool",
               "c10::Float8_e4m3fn": "fp8", "c10::Float8_e5m2": "fp8", "c10::Float8_e4m3fnuz": "fp8",
               "c10::Float8_e5m2fnuz": "fp8", "c10::Float4_e2m1fn_x2": "fp4", "c10::qint8": "int8",
               "c10::quint8": "int8", "float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "int8": "int8"}


@dataclass
class Call:
    """One recorded operator call: its input dims (one list per argument, [] for non-tensors), dtypes and concrete
    arguments as the trace wrote them (strings: "[1, 1]", "False", "0.125", "")."""

    dims: list = field(default_factory=list)
    types: list = field(default_factory=list)
    concrete: list = field(default_factory=list)

    def shape(self, i: int) -> list[int] | None:
        d = self.dims[i] if i < len(self.dims) else None
        return [int(x) for x in d] if d and all(isinstance(x, (int, float)) for x in d) else None

    def bpe(self, i: int) -> int | None:
        t = self.types[i] if i < len(self.types) else None
        return ELEMENT_BYTES.get(t) if t else None

    def ints(self, i: int) -> list[int] | None:
        text = self.concrete[i] if i < len(self.concrete) else ""
        text = str(text).strip().strip("[]()").replace(" ", "")
        try:
            return [int(x) for x in text.split(",") if x] or None
        except ValueError:
            return None

    def flag(self, i: int) -> bool:
        return str(self.concrete[i] if i < len(self.concrete) else "").strip() in ("True", "true", "1")


@dataclass
class Work:
    flops: float
    bytes: float | None  # None: a dtype was not recorded (live runs count bytes at the dispatcher instead)
    family: str  # gemm, conv, attention, norm, softmax, elementwise, reduction, copy
    params: str = ""  # what the formula read: "M=141 N=512 K=512 bias"


def numel(shape) -> int:
    return math.prod(int(d) for d in shape) if shape else 0


def _bytes(elems: float, bpe: int | None) -> float | None:
    return None if bpe is None else float(elems) * bpe


# ---------------------------------------------------------------- GEMMs

def gemm(m: int, n: int, k: int, bias: bool, bpe: int | None, batch: int = 1, out_bpe: int | None = None) -> Work:
    out_bpe = bpe if out_bpe is None else out_bpe
    moved = None if bpe is None else batch * (m * k * bpe + k * n * bpe + m * n * out_bpe + (n * bpe if bias else 0))
    params = (f"B={batch} " if batch != 1 else "") + f"M={m} N={n} K={k}" + (" bias" if bias else "")
    return Work(batch * 2 * m * n * k, moved, "gemm", params)


def mm(c: Call, a: int = 0, b: int = 1, bias: bool = False) -> Work | None:
    A, B = c.shape(a), c.shape(b)
    if not A or not B or len(A) != 2 or len(B) != 2:
        return None
    return gemm(A[0], B[1], A[1], bias, c.bpe(a))


def bmm(c: Call, a: int = 0, b: int = 1, bias: bool = False) -> Work | None:
    A, B = c.shape(a), c.shape(b)
    if not A or not B or len(A) != 3 or len(B) != 3:
        return None
    return gemm(A[1], B[2], A[2], bias, c.bpe(a), batch=A[0])


def linear(c: Call) -> Work | None:
    """aten::linear(x [..., K], weight [N, K], bias [N]?)."""
    x, w = c.shape(0), c.shape(1)
    if not x or not w or len(w) != 2:
        return None
    return gemm(numel(x) // max(1, x[-1]), w[0], x[-1], bool(c.shape(2)), c.bpe(0))


def matmul(c: Call) -> Work | None:
    """aten::matmul: 2-D @ 2-D, N-D @ 2-D (leading dims folded into M), or batched N-D @ N-D."""
    A, B = c.shape(0), c.shape(1)
    if not A or not B or len(A) < 2 or len(B) < 2:
        return None
    if len(B) == 2:
        return gemm(numel(A) // A[-1], B[1], A[-1], False, c.bpe(0))
    batch = max(numel(A[:-2]), numel(B[:-2]))
    return gemm(A[-2], B[-1], A[-1], False, c.bpe(0), batch=batch)


def scaled_mm(c: Call) -> Work | None:
    """aten::_scaled_mm(A, B, scale_a, scale_b, bias?, ...): fp8 inputs write a 16-bit output (TraceLens)."""
    A, B = c.shape(0), c.shape(1)
    if not A or not B or len(A) != 2 or len(B) != 2:
        return None
    bpe = c.bpe(0)
    return gemm(A[0], B[1], A[1], bool(c.shape(4)), bpe, out_bpe=2 if bpe == 1 else bpe)


# ---------------------------------------------------------------- convolutions

def _spread(values: list[int] | None, n: int, default: int) -> list[int] | None:
    if values is None:
        return None
    return values * n if len(values) == 1 else values[:n] if len(values) >= n else None


def conv_out(x: list[int], w: list[int], stride, padding, dilation, transposed: bool, output_padding) -> list[int]:
    """Output spatial size of a convolution (torch's formula)."""
    out = []
    for i, size in enumerate(x[2:]):
        k, s, p, d = w[2 + i], stride[i], padding[i], dilation[i]
        if transposed:
            out.append((size - 1) * s - 2 * p + d * (k - 1) + (output_padding[i] if output_padding else 0) + 1)
        else:
            out.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
    return out


def conv_work(x: list[int], w: list[int], out_spatial: list[int], groups: int, bias: bool, transposed: bool,
              bpe: int | None) -> Work:
    n = x[0]
    if transposed:  # weight [C_in, C_out / groups, *k]: each input element scatters into C_out/g * k outputs
        c_out = w[1] * groups
        flops = 2 * numel(x) * w[1] * numel(w[2:])
    else:
        c_out = w[0]
        flops = 2 * n * c_out * numel(out_spatial) * w[1] * numel(w[2:])
    out_elems = n * c_out * numel(out_spatial)
    moved = _bytes(numel(x) + numel(w) + out_elems + (c_out if bias else 0), bpe)
    params = f"x={x} w={w} out={[n, c_out, *out_spatial]}" + (f" groups={groups}" if groups != 1 else "")
    return Work(flops, moved, "conv", params)


def conv(c: Call, stride: int, padding: int, dilation: int | None, groups: int | None, bias: int | None = 2,
         transposed: int | None = None, output_padding: int | None = None) -> Work | None:
    """A forward convolution; the argument positions differ per ATen entry point (see work.py)."""
    x, w = c.shape(0), c.shape(1)
    if not x or not w or len(x) != len(w) or len(x) < 3:
        return None
    n_sp = len(x) - 2
    s, p = _spread(c.ints(stride), n_sp, 1), _spread(c.ints(padding), n_sp, 0)
    d = [1] * n_sp if dilation is None else _spread(c.ints(dilation), n_sp, 1)
    g = (c.ints(groups) or [1])[0] if groups is not None else 1
    if s is None or p is None or d is None:
        return None  # a 2021-era trace without concrete inputs: the output size is unknown
    t = c.flag(transposed) if transposed is not None else False
    op = _spread(c.ints(output_padding), n_sp, 0) if output_padding is not None and t else None
    out = conv_out(x, w, s, p, d, t, op)
    return conv_work(x, w, out, g, bool(bias is not None and c.shape(bias)), t, c.bpe(0))


def conv_with_output(c: Call, out_spatial: list[int]) -> Work | None:
    """A forward convolution whose stride and padding were not recorded (2021-era traces), with its output's spatial
    size taken from its own backward (same input and weight shapes); groups from C_in / the weight's C_in."""
    x, w = c.shape(0), c.shape(1)
    if not x or not w or len(x) != len(w) or len(x) < 3 or len(out_spatial) != len(x) - 2 or not w[1]:
        return None
    work = conv_work(x, w, out_spatial, max(1, x[1] // w[1]), False, False, c.bpe(0))
    work.params += " (output size from its backward)"
    return work


def conv_backward(c: Call, go_at: int = 0, x_at: int = 1, w_at: int = 2, groups_at: int | None = 9,
                  transposed_at: int | None = 7, mask_at: int = 10) -> Work | None:
    """aten::convolution_backward(grad_output, input, weight, bias_sizes, stride, padding, dilation, transposed,
    output_padding, groups, output_mask): each gradient asked for costs the forward's FLOPs. The cuDNN / MIOpen
    backward ops of 2021-era traces order their arguments (input, grad_output, weight, ...): positions given."""
    go, x, w = c.shape(go_at), c.shape(x_at), c.shape(w_at)
    if not go or not x or not w or len(x) < 3 or not w[1]:
        return None
    groups = (c.ints(groups_at) or [0])[0] if groups_at is not None else 0
    transposed = c.flag(transposed_at) if transposed_at is not None else False
    groups = groups or (max(1, x[1] // w[1]) if not transposed else 1)  # not recorded: C_in / the weight's C_in
    fwd = conv_work(x, w, go[2:], groups, False, transposed, c.bpe(x_at))
    mask = str(c.concrete[mask_at] if len(c.concrete) > mask_at else "").lower()
    wants = [m.strip() == "true" for m in mask.strip("[]").split(",")] if mask else [True, True, False]
    wants += [False] * (3 - len(wants))
    flops = fwd.flops * (int(wants[0]) + int(wants[1])) + (numel(go) if wants[2] else 0)
    elems = numel(go) + numel(x) + numel(w) + (numel(x) if wants[0] else 0) + (numel(w) if wants[1] else 0)
    return Work(flops, _bytes(elems, c.bpe(0)), "conv", fwd.params + " backward")


def conv_grad(c: Call, weight: bool, size: list[int] | None = None) -> Work | None:
    """One half of a 2021-era cuDNN / MIOpen convolution backward: the input gradient (self_size, grad_output,
    weight, ...) or the weight gradient (weight_size, grad_output, self, ...); each costs the forward's FLOPs. The
    size argument is a list of ints, recorded only with concrete inputs: `size` gives it otherwise."""
    size, go, other = size or c.ints(0), c.shape(1), c.shape(2)
    if not size or not go or not other or len(size) != len(go) or len(go) < 3:
        return None
    x, w = (other, size) if weight else (size, other)
    if not w[1]:
        return None
    fwd = conv_work(x, w, go[2:], max(1, x[1] // w[1]), False, False, c.bpe(1))
    return Work(fwd.flops, _bytes(numel(go) + numel(other) + numel(size), c.bpe(1)), "conv",
                fwd.params + (" weight gradient" if weight else " input gradient"))


# ---------------------------------------------------------------- attention

def attention(c: Call, layout: str, causal: bool, q: int = 0, k: int = 1, v: int = 2, backward: bool = False,
              flash: bool = True) -> Work | None:
    """Scaled dot-product attention; layout "bhsd" ([batch, heads, seq, dim]: the sdpa entry points) or "bshd"
    ([batch, seq, heads, dim]: the flash / efficient kernels)."""
    Q, K, V = c.shape(q), c.shape(k), c.shape(v)
    if not Q or not K or not V or len(Q) != 4 or len(K) != 4 or len(V) != 4:
        return None
    if layout == "bhsd":
        (b, hq, nq, dqk), (hkv, nkv), dv = Q, (K[1], K[2]), V[3]
    else:
        (b, nq, hq, dqk), (nkv, hkv), dv = Q, (K[1], K[2]), V[3]
    qk, pv = b * hq * 2 * nq * nkv * dqk, b * hq * 2 * nq * nkv * dv
    if not backward:
        flops = qk + pv
        elems = b * (nq * hq * dqk + nkv * hkv * dqk + nkv * hkv * dv + nq * hq * dv)
    else:  # recomputed q @ k^T (flash), dV, dP, dQ, dK, and the grouped-query reductions (TraceLens's count)
        gqa = max(0, hq // max(1, hkv) - 1)
        flops = (qk if flash else 0) + pv + b * nkv * dv * gqa + pv + qk + qk + b * nkv * dqk * gqa
        elems = b * (nq * hq * dqk + nkv * hkv * dqk + nkv * hkv * dv + nq * hq * dv
                     + nq * hq * dqk + nkv * hkv * dqk + nkv * hkv * dv)
    if causal:
        flops = flops / 2 if nq == nkv else flops * _causal_share(nq, nkv)
    params = f"B={b} Hq={hq} Hkv={hkv} Sq={nq} Skv={nkv} D={dqk}" + (" causal" if causal else "") + \
        (" backward" if backward else "")
    return Work(flops, _bytes(elems, c.bpe(q)), "attention", params)


def _causal_share(nq: int, nkv: int) -> float:
    """Share of the (query, key) pairs a top-left causal mask keeps (torch's is_causal)."""
    kept = sum(min(i + 1, nkv) for i in range(nq)) if nq < 4096 else nq * min(nq, nkv) / 2
    return kept / (nq * nkv) if nq * nkv else 1.0


# ---------------------------------------------------------------- memory-bound families

def _broadcast(a: list[int], b: list[int]) -> list[int]:
    n = max(len(a), len(b))
    a, b = [1] * (n - len(a)) + a, [1] * (n - len(b)) + b
    return [max(x, y) for x, y in zip(a, b)]


def elementwise(c: Call, per_element: float = 1.0) -> Work | None:
    """Unary or binary element-wise (add, mul, gelu, ...): one FLOP per output element (scaled by per_element)."""
    tensors = []  # the leading tensor arguments: after a scalar, a tensor is an out= argument (clamp_min.out)
    for i in range(min(len(c.dims), 3)):
        if not (s := c.shape(i)):
            break
        tensors.append((i, s))
    if not tensors and c.dims and c.dims[0] == [] and c.bpe(0):  # a 0-dim tensor (a step counter): one element
        return Work(per_element, 2.0 * c.bpe(0), "elementwise", "out=[]")
    if not tensors or tensors[0][0] != 0:
        return None
    out = tensors[0][1]
    for _, s in tensors[1:2]:
        out = _broadcast(out, s)
    bpe = c.bpe(0)
    moved = None if bpe is None else sum(numel(s) * (c.bpe(i) or bpe) for i, s in tensors[:2]) + numel(out) * bpe
    return Work(per_element * numel(out), moved, "elementwise", f"out={out}")


def reduction(c: Call, out_elems_from: int | None = None) -> Work | None:
    x = c.shape(0)
    if not x:
        return None
    bpe = c.bpe(0)
    return Work(float(numel(x)), _bytes(numel(x), bpe), "reduction", f"in={x}")


def softmax(c: Call) -> Work | None:
    x = c.shape(0)
    if not x:
        return None
    return Work(3.0 * numel(x), _bytes(2 * numel(x), c.bpe(0)), "softmax", f"in={x}")


def norm(c: Call, affine: tuple[int, ...] = (), per_element: float = 5.0, extra_inputs: tuple[int, ...] = ()) -> \
        Work | None:
    """Layer / RMS / batch / group norm: `per_element` FLOPs per element; bytes input, output, extra full-size
    inputs (a fused residual) and the affine parameters."""
    x = c.shape(0)
    if not x:
        return None
    elems = 2 * numel(x) + sum(numel(c.shape(i) or []) for i in affine) + \
        sum(2 * numel(c.shape(i) or []) for i in extra_inputs)
    return Work(per_element * numel(x), _bytes(elems, c.bpe(0)), "norm", f"in={x}")


def copy(c: Call, src: int = 1, dst: int = 0) -> Work | None:
    """copy_(dst, src): read the source, write the destination, each at its own element size."""
    d, s = c.shape(dst), c.shape(src)
    if not d:
        return None
    bd, bs = c.bpe(dst), c.bpe(src) if s else None
    moved = None if bd is None else numel(d) * bd + (numel(s) * (bs or bd) if s else 0)
    return Work(0.0, moved, "copy", f"{s} -> {d}")


def write(c: Call, i: int = 0) -> Work | None:
    """fill_, zero_: one write of the tensor."""
    x = c.shape(i)
    return Work(0.0, _bytes(numel(x), c.bpe(i)), "copy", f"out={x}") if x else None


def gather(c: Call, table: int, index: int) -> Work | None:
    """embedding(weight, indices) / index_select(self, dim, index): rows read and written, the indices read."""
    w, idx = c.shape(table), c.shape(index)
    if not w or idx is None:
        return None
    rows = numel(idx) * numel(w[1:])
    bpe, ibpe = c.bpe(table), c.bpe(index) or 8
    return Work(0.0, None if bpe is None else 2 * rows * bpe + numel(idx) * ibpe, "copy", f"table={w} index={idx}")


def concat(c: Call) -> Work | None:
    """cat(tensors, dim): every input read and written once. Kineto records a tensor list as one list of shapes."""
    first = c.dims[0] if c.dims else None
    if not first or not isinstance(first[0], list):
        return None
    elems = sum(numel(s) for s in first)
    t = c.types[0] if c.types else None
    bpe = ELEMENT_BYTES.get(t) if isinstance(t, str) else None
    return Work(0.0, _bytes(2 * elems, bpe or None), "copy", f"{len(first)} tensors")


def convert(c: Call, out_bpe: int, cols_delta: int = 0, per_element: float = 1.0) -> Work | None:
    """A row-wise (de)quantization (FBGEMM's FloatToFP8RowwiseQuantized and kin): read the input, write it at
    `out_bpe` bytes per element with `cols_delta` more columns per row (a fused row-wise scale: +8 bytes quantizing,
    -8 dequantizing)."""
    x, bpe = c.shape(0), c.bpe(0)
    if not x:
        return None
    rows, cols = (numel(x[:-1]), x[-1]) if len(x) > 1 else (1, x[0])
    out_cols = cols + cols_delta if len(x) > 1 else cols
    return Work(per_element * rows * min(cols, out_cols), None if bpe is None else
                numel(x) * bpe + rows * out_cols * out_bpe, "elementwise", f"in={x}")


def permute(c: Call, *tensors: int) -> Work | None:
    """A permutation of whole tensors (FBGEMM's permute_sparse_features, permute_pooled_embs, ...): each of
    `tensors` read and written once, at its own element size."""
    moved = 0.0
    for i in tensors:
        x = c.shape(i)
        if x:
            bpe = c.bpe(i)
            if bpe is None:
                return None
            moved += 2 * numel(x) * bpe
    return Work(0.0, moved, "copy", f"in={c.shape(tensors[0])}") if moved else None


# ---------------------------------------------------------------- optimizers: tensor lists

ASSUMED_LIST_BPE = 4  # Kineto records a tensor list's shapes but not its dtype: optimizer state is fp32 as a rule


def tensor_list(c: Call, i: int) -> list[list[int]] | None:
    """The shapes of a TensorList argument (Kineto writes one list of shapes for it); None for anything else."""
    d = c.dims[i] if i < len(c.dims) else None
    if not isinstance(d, list) or not d or not all(isinstance(s, list) for s in d):
        return None
    return [[int(x) for x in s] for s in d]


def _list_numel(shapes: list[list[int]]) -> int:
    return sum(math.prod(s) for s in shapes)  # a 0-dim tensor (shape []) is one element


def foreach(c: Call, per_element: float = 1.0) -> Work | None:
    """torch._foreach_* (the optimizers' multi-tensor kernels): per element of the first list, `per_element` FLOPs;
    every tensor list read once and the first written (in place, or a new list alike)."""
    lists = [s for i in range(len(c.dims)) if (s := tensor_list(c, i))]
    elems = _list_numel(lists[0]) if lists else 0
    if not elems:
        return None
    moved = (sum(_list_numel(shapes) for shapes in lists) + elems) * ASSUMED_LIST_BPE
    return Work(per_element * elems, float(moved), "elementwise", f"{len(lists[0])} tensors, {elems:,} elements "
                f"(fp32 assumed: a tensor list's dtype is not recorded)")


def fused_optimizer(c: Call, reads: int, writes: int, per_element: float) -> Work | None:
    """aten::_fused_adam(w)_ / _fused_sgd_ (params, grads, state lists ...): each parameter element reads `reads`
    tensors (parameter, gradient, optimizer state) and writes `writes` back; `per_element` FLOPs of the update."""
    params = tensor_list(c, 0)
    elems = _list_numel(params) if params else 0
    if not elems:
        return None
    return Work(per_element * elems, float(elems * (reads + writes) * ASSUMED_LIST_BPE), "elementwise",
                f"{len(params)} tensors, {elems:,} elements (fp32 assumed: a tensor list's dtype is not recorded)")


def nll_loss(c: Call, backward: bool = False) -> Work | None:
    """nll_loss_forward(self [N, C], target [N], ...): one log-probability gathered per target, summed; the backward
    (grad_output, self, target, ...) writes the whole [N, C] gradient (zeros but one per row)."""
    x = c.shape(1 if backward else 0)
    t = c.shape(2 if backward else 1)
    if not x or t is None:
        return None
    n = numel(t) or 1
    bpe, tbpe = c.bpe(1 if backward else 0), c.bpe(2 if backward else 1) or 8
    moved = None if bpe is None else (numel(x) if backward else n) * bpe + n * tbpe + (0 if backward else bpe)
    return Work(float(n), moved, "reduction", f"in={x}")


# ---------------------------------------------------------------- pooling

def pool_out(x: list[int], kernel: list[int], stride: list[int], padding: list[int], dilation: list[int],
             ceil: bool) -> list[int]:
    """Output spatial size of a max / average pool (torch's formula, ceil_mode included)."""
    out = []
    for i, size in enumerate(x[2:]):
        span = size + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1
        o = -(-span // stride[i]) + 1 if ceil else span // stride[i] + 1
        if ceil and (o - 1) * stride[i] >= size + padding[i]:
            o -= 1
        out.append(o)
    return out


def max_pool(c: Call, out_spatial: list[int] | None = None) -> Work | None:
    """max_pool*d_with_indices(self, kernel_size, stride, padding, dilation, ceil_mode): a comparison per window
    element; reads the input, writes the output and its indices (int64). The output size from the concrete
    arguments, or (`out_spatial`) from the backward where they were not recorded."""
    x = c.shape(0)
    if not x or len(x) < 3:
        return None
    n_sp = len(x) - 2
    k = _spread(c.ints(1), n_sp, 1)
    if out_spatial is None:
        if k is None:
            return None
        s = _spread(c.ints(2), n_sp, 1) or k  # an empty stride means the kernel's
        p, d = _spread(c.ints(3), n_sp, 0) or [0] * n_sp, _spread(c.ints(4), n_sp, 1) or [1] * n_sp
        out_spatial = pool_out(x, k, s, p, d, c.flag(5))
    out = numel(x[:2]) * numel(out_spatial)
    bpe = c.bpe(0)
    window = numel(k) if k else max(1, round(numel(x[2:]) / max(1, numel(out_spatial))))
    return Work(float(out * window), None if bpe is None else numel(x) * bpe + out * (bpe + 8), "reduction",
                f"in={x} out={[*x[:2], *out_spatial]}" + ("" if k else f" window ~{window} (kernel not recorded)"))


def max_pool_backward(c: Call) -> Work | None:
    """max_pool*d_with_indices_backward(grad_output, self, ..., indices): scatter each gradient to its max; reads
    the gradient and the indices, writes the input's gradient."""
    go, x = c.shape(0), c.shape(1)
    if not go or not x:
        return None
    bpe = c.bpe(0)
    return Work(float(numel(go)), None if bpe is None else numel(go) * (bpe + 8) + numel(x) * bpe, "reduction",
                f"grad={go} in={x}")

