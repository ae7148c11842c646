// gemma-nb's DecoderLayer op for `--dtype int4-cpu` folders: one Gemma block in one node,
//   h   = x + post_attn_norm(o(attention(q|k|v(normed))))
//   out = h + post_ffw_norm(down(gelu_tanh(gate(n)) * up(n))),  n = pre_ffw_norm(h)
// -> (next_norm(out), out, present_key, present_value), with the same arithmetic as the five nodes
// it stands for (Q4MatMul q|k|v, Attention, Q4MatMul o with its norms and residual, Q4MatMul
// gate|up with geglu, Q4MatMul down with its norms and residual): the logits are bit-identical.
// A 270M decode step ran 95 nodes, ~2 us of onnxruntime's executor between every two; with 23
// nodes, alternating in one process with the five-node graph: 1.02-1.04x.
// Attributes: Attention's, and norm_epsilon for the norms.
#include "decoder_layer.h"

#include <string>
#include <vector>

namespace gemma_nb {

DecoderLayerKernel::DecoderLayerKernel(const OrtApi& api, const OrtKernelInfo* info)
    : attention_(api, info),
      qkv_(api, info, kLayerQkv, false, "DecoderLayer"),
      o_(api, info, kLayerO, false, "DecoderLayer"),
      gate_up_(api, info, kLayerGateUp, true, "DecoderLayer"),
      down_(api, info, kLayerDown, false, "DecoderLayer") {
  Ort::ConstKernelInfo attrs(info);
  heads_ = attrs.GetAttribute<int64_t>("num_heads");
  epsilon_ = attrs.GetAttribute<float>("norm_epsilon");
  const int64_t hidden = o_.outputs();
  for (size_t i = 0; i < norms_.size(); ++i) {
    const OrtValue* norm = constant_input(api, info, kLayerPostAttnNorm + i);
    if (!norm || dims_of(norm, "DecoderLayer") != Dims{{hidden}, 1}) {
      ORT_CXX_API_THROW("DecoderLayer: each norm must be a constant of the hidden size's " + std::to_string(hidden) +
                        " values", ORT_INVALID_ARGUMENT);
    }
    norms_[i] = data_of<float>(norm);
  }
  if (down_.outputs() != hidden) ORT_CXX_API_THROW("DecoderLayer: o and down must make the hidden size", ORT_INVALID_ARGUMENT);
}

void DecoderLayerKernel::Compute(OrtKernelContext* context) {
  const OrtValue *normed = input_value(context, kLayerNormed), *residual = input_value(context, kLayerResidual);
  const Dims x_dims = dims_of(normed, "DecoderLayer");
  const int64_t hidden = o_.outputs(), rows = x_dims.elements() / x_dims.back();
  if (dims_of(residual, "DecoderLayer") != x_dims || x_dims.back() != hidden) {
    ORT_CXX_API_THROW("DecoderLayer: x and its normed form must be [..., " + std::to_string(hidden) + "] alike",
                      ORT_INVALID_ARGUMENT);
  }
  const int64_t head_size = dims_of(input_value(context, kLayerPastKey), "DecoderLayer").back();
  thread_local std::vector<float> qkv, heads, ffw_in, h, ffw;  // the calling thread's, reused: no allocation a token
  qkv.resize(rows * qkv_.outputs());
  heads.resize(rows * heads_ * head_size);
  ffw_in.resize(rows * hidden);
  h.resize(rows * hidden);
  ffw.resize(rows * gate_up_.outputs());
  auto with_last = [&](int64_t last) {
    Dims d = x_dims;
    d.at[d.rank - 1] = last;
    return d;
  };
  const Dims qkv_dims = with_last(qkv_.outputs());
  qkv_.Multiply(context, data_of<float>(normed), x_dims, qkv.data());
  attention_.Attend(context, {qkv.data(), qkv_dims, nullptr, nullptr, kLayerPastKey, 2, heads.data()});
  o_.Multiply(context, heads.data(), with_last(heads_ * head_size), ffw_in.data());
  // h = x + post_attn_norm(o's product), and in place of that product pre_ffw_norm(h)
  add_residual(context, ffw_in.data(), h.data(), data_of<float>(residual), norms_[0], norms_[1], hidden, rows, epsilon_);
  gate_up_.Multiply(context, ffw_in.data(), x_dims, ffw.data());
  float* out = output_data<float>(context, 0, x_dims);
  down_.Multiply(context, ffw.data(), with_last(gate_up_.outputs()), out);
  add_residual(context, out, output_data<float>(context, 1, x_dims), h.data(), norms_[2], norms_[3], hidden, rows,
               epsilon_);
}

}  // namespace gemma_nb
