// The Attention op (attention.cc), registered beside Q4MatMul and Q4Gather in domain gemma_nb.
#pragma once

#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT

#include "ort_values.h"

namespace gemma_nb {

// The widest vectors, in floats, a session made now may use: 16 where the CPU has AVX-512 VNNI,
// 8 with AVX2, 0 for the compiler's baseline, capped by GEMMA_NB_KERNEL_ISA (q4_matmul.cc).
int session_vector_width();

// Where a node keeps attention's inputs and outputs: the Attention op's own, or a DecoderLayer's
// (decoder_layer.cc), whose query its q|k|v product has just made in scratch memory.
struct AttentionIo {
  const float* query;                 // [B, S, width]
  Dims query_shape;
  const OrtValue *key, *value;        // null where q|k|v come packed in query
  size_t past_key;                    // the input index of past_key; past_value, seqlens_k,
                                      // total_sequence_length, cos, sin, q_norm?, k_norm? follow it
  size_t present_key;                 // the output index of present_key; present_value follows it
  float* out;                         // [B, S, heads * D]; null: output 0
};

class AttentionKernel {
 public:
  AttentionKernel(const OrtApi& api, const OrtKernelInfo* info);
  void Compute(OrtKernelContext* context);
  void Attend(OrtKernelContext* context, const AttentionIo& io);

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
