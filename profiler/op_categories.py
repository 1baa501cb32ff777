"""The one op vocabulary: which ATen / oneDNN / MKL / cuDNN operator names, ONNX op types (as ONNX Runtime's profiler
names its nodes, contrib ops included) and OpenVINO CPU layer types are a matmul, a convolution, a batch norm,
attention, a data copy, an int8 kernel or an element-wise (memory-bound) op. FLOP formulas, the roofline, the
rules, explanations and findings read these tables instead of keeping their own lists (TraceLens keeps its taxonomy
in PerfModel/op_categories.py the same way).

A pattern is an exact operator name, or ends (or starts) with "*" to match a prefix (or suffix).
"""
from __future__ import annotations

from fnmatch import fnmatchcase

# ---------------------------------------------------------------- GEMMs

# the Linear-class kernels a dense layer runs (fp32 / bf16, eager or compiled)
LINEAR = ("aten::addmm", "aten::mm", "aten::linear", "aten::mkldnn_linear", "mkl::_mkl_linear",
          "mkldnn::_linear_pointwise",
          # ONNX (ORT's FusedMatMul: a MatMul with a transpose or scale folded in) and OpenVINO layer types; an ONNX
          # MatMul also multiplies activations (attention), which its name cannot tell apart
          "MatMul", "Gemm", "FusedMatMul", "FusedGemm", "FullyConnected")
# batched matmuls (attention written out, einsum)
BATCHED_MATMUL = ("aten::bmm", "aten::baddbmm", "aten::matmul")
# int8 kernels: packed (fbgemm/oneDNN) and plain int8 GEMMs
# ONNX int8 GEMMs: ORT's dynamic int8 MatMul (DynamicQuantizeMatMul quantizes its activation itself), the integer
# MatMul with its float rescale, and the QDQ / QOperator forms
ONNX_INT8_LINEAR = ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearMatMul", "QGemm",
                    "QAttention")
# quantizing and dequantizing activations (ONNX): conversions around the int8 kernels
ONNX_QUANTIZE = ("DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear")
INT8 = ("quantized::*", "onednn::q*", "aten::_int_mm", "aten::_weight_int8pack_mm") + ONNX_INT8_LINEAR + \
    ONNX_QUANTIZE + ("ConvInteger", "QLinearConv")
INT8_LINEAR = ("quantized::linear*", "onednn::qlinear*", "aten::_int_mm", "aten::_weight_int8pack_mm",
               "torchao::*") + ONNX_INT8_LINEAR
MATMUL = LINEAR + BATCHED_MATMUL + INT8_LINEAR
# packed int8 weights: recorded shapes hold the activation only, so FLOPs come from the dispatcher
QUANTIZED_PACKED = ("quantized::linear_dynamic", "quantized::linear_relu_dynamic", "quantized::linear_dynamic_fp16",
                    "quantized::linear", "quantized::linear_relu", "quantized::conv1d", "quantized::conv2d",
                    "quantized::conv3d", "quantized::conv1d_relu", "quantized::conv2d_relu", "quantized::conv3d_relu")

# ---------------------------------------------------------------- convolution and normalisation

# every name a float convolution's time or FLOPs can sit on: the wrappers and the kernels under them
CONVOLUTION = ("aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::convolution", "aten::_convolution",
               "aten::mkldnn_convolution", "aten::_slow_conv2d_forward", "aten::cudnn_convolution",
               "aten::thnn_conv2d", "aten::_nnpack_spatial_convolution", "mkldnn::_convolution_pointwise",
               "Conv", "FusedConv", "ConvTranspose", "Convolution", "GroupConvolution")  # ONNX, OpenVINO
# convolution kernels whose FLOPs need the output size (stride, padding): counted at the dispatcher
CONVOLUTION_KERNELS = ("aten::convolution", "aten::_convolution", "aten::mkldnn_convolution",
                       "aten::_slow_conv2d_forward", "mkldnn::_convolution_pointwise", "onednn::qconv_pointwise",
                       "onednn::qconv2d_pointwise")
INT8_CONVOLUTION = ("quantized::conv*", "onednn::qconv*", "ConvInteger", "QLinearConv")
# forward entry points taking (input, weight, ...): a 2021-era trace records their shapes without stride or padding
CONVOLUTION_FORWARD = ("aten::convolution", "aten::_convolution", "aten::conv1d", "aten::conv2d", "aten::conv3d",
                       "aten::cudnn_convolution", "aten::miopen_convolution", "aten::mkldnn_convolution")
# max pools taking (self, kernel_size, stride, ...); their backwards are these names + "_backward"
MAX_POOL = ("aten::max_pool2d_with_indices", "aten::max_pool3d_with_indices")
# the halves of a 2021-era cuDNN / MIOpen backward, whose size argument is an int list (recorded only as concrete)
CONVOLUTION_GRAD_HALVES = ("aten::cudnn_convolution_backward_input", "aten::miopen_convolution_backward_input",
                           "aten::cudnn_convolution_backward_weight", "aten::miopen_convolution_backward_weight")
BATCH_NORM = ("aten::batch_norm", "aten::_batch_norm_impl_index", "aten::native_batch_norm",
              "aten::_native_batch_norm_legit_no_training", "aten::cudnn_batch_norm", "BatchNormalization",
              "BatchNormInference")

# ---------------------------------------------------------------- attention

# fused attention: the public op and the kernels under it
ATTENTION = ("aten::scaled_dot_product_attention", "aten::_scaled_dot_product*", "aten::_flash_attention*",
             "aten::_efficient_attention*",
             # ORT contrib ops and OpenVINO's fused attention
             "Attention", "MultiHeadAttention", "GroupQueryAttention", "ScaledDotProductAttention", "SDPA")
# the SDPA kernels whose first three inputs are q, k, v (CPU flash, CUDA flash / efficient / cuDNN)
SDPA_KERNELS = ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_flash_attention",
                "aten::_scaled_dot_product_efficient_attention", "aten::_scaled_dot_product_cudnn_attention")
SOFTMAX = ("aten::softmax", "aten::_softmax", "Softmax", "SoftMax")

# ---------------------------------------------------------------- data movement and conversions

# data movement on the host: copies, dtype and layout changes (a device memcpy is its own event kind)
TRANSFER_OPS = frozenset({
    "aten::copy_", "aten::clone", "aten::contiguous", "aten::to", "aten::_to_copy", "aten::_copy_from",
    "aten::_copy_from_and_resize", "aten::pin_memory", "aten::_pin_memory", "aten::to_dense", "aten::to_mkldnn",
    "aten::_to_dense", "aten::copy", "aten::lift_fresh_copy",
    # ONNX / OpenVINO: layout and dtype changes (ORT's NCHWc reorders, OpenVINO's Reorder and Convert)
    "Transpose", "Cast", "ReorderInput", "ReorderOutput", "Reorder", "Convert",
})
# what a precision or quantization pass adds around its kernels
CONVERSIONS = ("aten::quantize_per_tensor*", "aten::quantize_per_channel", "aten::dequantize",
               "quantized_decomposed::*", "aten::to", "aten::_to_copy", "aten::copy_", "aten::clone",
               "aten::contiguous", "aten::to_mkldnn", "aten::to_dense", "aten::_to_dense", "aten::fake_quantize*",
               "Cast", "Transpose", "Convert", "Reorder") + ONNX_QUANTIZE
# kernels a compiler or a fused implementation leaves behind
FUSED = ("*fused*", "*pointwise*", "Torch-Compiled Region*", "CompiledFunction*", "## Call CompiledFxGraph*",
         "aten::_scaled_dot_product*", "mkldnn::*",
         # what ONNX Runtime's graph optimizer and OpenVINO's CPU plugin fuse into
         "Fused*", "Skip*LayerNormalization", "BiasGelu", "FastGelu", "BiasAdd", "Attention", "MultiHeadAttention",
         "DynamicQuantizeMatMul", "Subgraph")

# ---------------------------------------------------------------- work no formula counts, or none at all

# views and allocations: no work and (almost) no kernel time, never "unexplained" in a FLOP coverage
VIEWS = frozenset({"aten::view", "aten::reshape", "aten::as_strided", "aten::empty", "aten::empty_strided",
                   "aten::slice", "aten::transpose", "aten::permute", "aten::expand", "aten::t", "aten::unsqueeze",
                   "aten::squeeze", "aten::select", "aten::detach", "aten::alias", "aten::_unsafe_view",
                   "aten::resize_", "aten::lift_fresh", "aten::_reshape_alias", "aten::split", "aten::chunk",
                   "aten::narrow", "aten::unbind", "aten::empty_like"})

# ATen ops that do matmul-class work no FLOP formula counts (prefixes): their time makes a FLOP/s figure partial
UNCOUNTED_MATMUL = (
    "aten::lstm",
    "aten::gru",
    "aten::rnn_",
    "aten::mkldnn_rnn",
    "aten::_thnn_fused",
    "aten::lstm_cell",
    "aten::gru_cell",
    "aten::quantized_lstm",
    "aten::quantized_gru",
    "aten::cdist",
    "aten::_cdist",
    "aten::linalg_solve",
    "aten::linalg_inv",
    "aten::linalg_cholesky",
    "aten::linalg_qr",
    "aten::linalg_svd",
    "aten::linalg_eig",
    "aten::linalg_lstsq",
    "aten::linalg_lu",
    "aten::linalg_det",
    "aten::linalg_slogdet",
    "aten::_linalg_",
    "aten::fft_",
    "aten::_fft_",
    "aten::conv_tbc",
    "aten::_nnpack",
)  # norms are not here
# non-ATen namespaces that only quantize, dequantize or repack
ZERO_WORK = ("quantized_decomposed::", "onednn::qlinear_prepack", "onednn::qconv_prepack", "prim::")

# ---------------------------------------------------------------- element-wise, lookups, recurrent

# matched on the base name (no namespace, less leading/trailing "_"), never as a prefix: "add" as a prefix would take
# aten::addmm
ELEMENTWISE = frozenset({"gelu", "relu", "tanh", "add", "mul", "layer_norm", "native_layer_norm", "dropout", "div",
                         "sub", "softmax", "copy", "clone", "contiguous", "cat", "where", "masked_fill", "exp",
                         "sigmoid", "silu", "pow", "mean",
                         # ONNX op types (ORT contrib fusions too) and OpenVINO CPU layer types
                         "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Erf", "Relu", "Tanh", "Sigmoid", "Gelu",
                         "BiasGelu", "FastGelu", "QuickGelu", "BiasAdd", "Where", "Equal", "And", "Or", "Not", "IsNaN",
                         "Clip", "Concat", "Expand", "LayerNormalization", "SkipLayerNormalization",
                         "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization", "ReduceMean",
                         "Multiply", "Subtract", "Divide", "Select", "Clamp", "Swish", "Power", "MVN", "Eltwise",
                         "Subgraph"})
LOOKUP = ("aten::embedding", "aten::index_select", "aten::gather", "aten::embedding_bag", "Gather",
          "EmbedLayerNormalization")
RECURRENT = ("aten::lstm", "aten::gru", "aten::rnn_*", "aten::mkldnn_rnn", "aten::quantized_lstm",
             "aten::quantized_gru", "aten::lstm_cell", "aten::gru_cell", "LSTM", "GRU", "RNN", "DynamicQuantizeLSTM",
             "LSTMSequence", "GRUSequence", "RNNSequence")

# family -> patterns, in the order a name is tried (first match wins)
FAMILIES = {
    "matmul": MATMUL,
    "convolution": CONVOLUTION + INT8_CONVOLUTION,
    "batch_norm": BATCH_NORM,
    "attention": ATTENTION + SOFTMAX,
    "recurrent": RECURRENT,
    "lookup": LOOKUP,
    "transfer": tuple(sorted(TRANSFER_OPS)),
}


def matches(name: str, patterns) -> bool:
    """`name` is one of `patterns` (exact names, or globs with "*")."""
    return any(fnmatchcase(name, p) if "*" in p else name == p for p in patterns)


def base_name(name: str) -> str:
    """aten::native_layer_norm -> native_layer_norm; aten::add_ -> add (in-place and internal variants)."""
    return name.split("::")[-1].strip("_")


def is_elementwise(name: str) -> bool:
    """An element-wise, normalisation or copy op: its time goes to moving bytes, not to arithmetic."""
    return base_name(name) in ELEMENTWISE


def family(name: str) -> str | None:
    """The op family of an operator name (FAMILIES, then "elementwise"), or None."""
    found = next((f for f, patterns in FAMILIES.items() if matches(name, patterns)), None)
    return found or ("elementwise" if is_elementwise(name) else None)


def is_int8(name: str) -> bool:
    return matches(name, INT8)


def is_transfer(name: str) -> bool:
    return name in TRANSFER_OPS
