// The Attention op (attention.cc), registered beside Q4MatMul and Q4Gather in domain gemma_nb.
#pragma once

#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT

namespace gemma_nb {

// The widest vectors, in floats, a session made now may use: 16 where the CPU has AVX-512 VNNI,
// 8 with AVX2, 0 for the compiler's baseline, capped by GEMMA_NB_KERNEL_ISA (q4_matmul.cc).
int session_vector_width();

class AttentionKernel {
 public:
  AttentionKernel(const OrtApi& api, const OrtKernelInfo* info);
  void Compute(OrtKernelContext* context);

 private:
  int64_t heads_, kv_heads_, window_;
  float scale_, softcap_;
  float qk_norm_epsilon_;  // -1 where the node has no such attribute
  int width_;
};

// Registered twice, by the type of the cache (past and present): float, or float16 (half the
// bytes a decode step reads from it). onnxruntime picks the one the graph's types match.
template <ONNXTensorElementDataType Cache>
struct AttentionOp : Ort::CustomOpBase<AttentionOp<Cache>, AttentionKernel> {
  void* CreateKernel(const OrtApi& api, const OrtKernelInfo* info) const { return new AttentionKernel(api, info); }
  const char* GetName() const { return "Attention"; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  size_t GetInputTypeCount() const { return 11; }
  ONNXTensorElementDataType GetInputType(size_t i) const {
    return i == 5 || i == 6 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 : i == 3 || i == 4 ? Cache : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  // key, value: absent when packed; q_norm, k_norm: only for models with them (Gemma 3)
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t i) const {
    return i == 1 || i == 2 || i >= 9 ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
  }
  size_t GetOutputTypeCount() const { return 3; }
  ONNXTensorElementDataType GetOutputType(size_t i) const { return i == 0 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT : Cache; }
};

}  // namespace gemma_nb
