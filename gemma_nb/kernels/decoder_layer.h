// The DecoderLayer op (decoder_layer.cc), registered beside Q4MatMul and Attention in domain gemma_nb.
#pragma once

#include <array>

#include "attention.h"
#include "q4_projection.h"

namespace gemma_nb {

// Inputs, in order (the norms: [hidden] each, constant):
enum DecoderLayerInput : size_t {
  kLayerNormed,       // x after the block's input norm [B, S, hidden]
  kLayerResidual,     // x [B, S, hidden]
  kLayerQkv = 2,      // tiles, scales, zeros of q|k|v (Q4MatMul's three weight inputs)
  kLayerO = 5,        // ... of o
  kLayerGateUp = 8,   // ... of gate|up, tile rows alternating (Q4MatMul's geglu = 1)
  kLayerDown = 11,    // ... of down
  kLayerPostAttnNorm = 14, kLayerPreFfwNorm, kLayerPostFfwNorm, kLayerNextNorm,
  kLayerPastKey = 18,  // then Attention's inputs from past_key on: past_value, seqlens_k,
                       // total_sequence_length, cos_cache, sin_cache, q_norm?, k_norm?
  kLayerInputs = 26,
};

class DecoderLayerKernel {
 public:
  DecoderLayerKernel(const OrtApi& api, const OrtKernelInfo* info);
  void Compute(OrtKernelContext* context);

 private:
  AttentionKernel attention_;
  Q4Projection qkv_, o_, gate_up_, down_;
  std::array<const float*, 4> norms_;  // post_attn, pre_ffw, post_ffw, next
  int64_t heads_;
  float epsilon_;
};

template <ONNXTensorElementDataType Cache>  // as AttentionOp: one registration per cache type
struct DecoderLayerOp : Ort::CustomOpBase<DecoderLayerOp<Cache>, DecoderLayerKernel> {
  void* CreateKernel(const OrtApi& api, const OrtKernelInfo* info) const { return new DecoderLayerKernel(api, info); }
  const char* GetName() const { return "DecoderLayer"; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  size_t GetInputTypeCount() const { return kLayerInputs; }
  ONNXTensorElementDataType GetInputType(size_t i) const {
    if (i >= kLayerPastKey) return AttentionOp<Cache>().GetInputType(i - kLayerPastKey + 3);
    if (i >= kLayerQkv && i < kLayerPostAttnNorm) {  // tiles, scales, zeros
      return (i - kLayerQkv) % 3 == 1 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 : ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
    }
    return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t i) const {  // q_norm, k_norm: Gemma 3's
    return i >= kLayerPastKey + 6 ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
  }
  size_t GetOutputTypeCount() const { return 4; }
  ONNXTensorElementDataType GetOutputType(size_t i) const { return i < 2 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT : Cache; }
};

}  // namespace gemma_nb
