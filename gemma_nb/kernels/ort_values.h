// Inputs and outputs of a custom op read through onnxruntime's C API with no heap allocation:
// shapes land in a fixed array, not in the std::vectors of the C++ wrapper (Ort::ConstValue's
// GetShape) or of the Lite API's typed arguments. A decode step of Gemma 3 270M calls Q4MatMul 73
// times; the Lite API took ~1.1 us a call to build its arguments, ~3% of a step.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT

namespace gemma_nb {

struct Dims {
  static constexpr size_t kMaxRank = 8;
  int64_t at[kMaxRank];
  size_t rank = 0;

  int64_t elements() const {
    int64_t count = 1;
    for (size_t i = 0; i < rank; ++i) count *= at[i];
    return count;
  }
  int64_t back() const { return at[rank - 1]; }
  bool operator==(const Dims& other) const { return rank == other.rank && std::equal(at, at + rank, other.at); }
  bool operator!=(const Dims& other) const { return !(*this == other); }
};

// Input i, or nullptr where the node leaves an optional input out.
inline const OrtValue* input_value(OrtKernelContext* context, size_t i) {
  const OrtApi& api = Ort::GetApi();
  size_t count = 0;
  Ort::ThrowOnError(api.KernelContext_GetInputCount(context, &count));
  const OrtValue* value = nullptr;
  if (i < count) Ort::ThrowOnError(api.KernelContext_GetInput(context, i, &value));
  return value;
}

inline Dims dims_of(const OrtValue* value, const char* op) {
  const OrtApi& api = Ort::GetApi();
  OrtTensorTypeAndShapeInfo* info = nullptr;
  Ort::ThrowOnError(api.GetTensorTypeAndShape(value, &info));
  Dims dims;
  OrtStatus* status = api.GetDimensionsCount(info, &dims.rank);
  if (!status && dims.rank > Dims::kMaxRank) {
    api.ReleaseTensorTypeAndShapeInfo(info);
    ORT_CXX_API_THROW(std::string(op) + ": a tensor has more than 8 dimensions", ORT_INVALID_ARGUMENT);
  }
  if (!status) status = api.GetDimensions(info, dims.at, dims.rank);
  api.ReleaseTensorTypeAndShapeInfo(info);
  Ort::ThrowOnError(status);
  return dims;
}

// Input i where the graph holds it as a constant initializer, as the session makes the node; else nullptr.
inline const OrtValue* constant_input(const OrtApi& api, const OrtKernelInfo* info, size_t i) {
  int is_constant = 0;
  const OrtValue* value = nullptr;
  if (OrtStatus* status = api.KernelInfoGetConstantInput_tensor(info, i, &is_constant, &value)) {
    api.ReleaseStatus(status);  // no such input
    return nullptr;
  }
  return is_constant ? value : nullptr;
}

template <typename T>
const T* data_of(const OrtValue* value) {
  void* data = nullptr;
  Ort::ThrowOnError(Ort::GetApi().GetTensorMutableData(const_cast<OrtValue*>(value), &data));
  return static_cast<const T*>(data);
}

// Output i of shape `dims`, or nullptr where the node does not ask for it (an optional output).
template <typename T>
T* output_data(OrtKernelContext* context, size_t i, const Dims& dims) {
  const OrtApi& api = Ort::GetApi();
  size_t count = 0;
  Ort::ThrowOnError(api.KernelContext_GetOutputCount(context, &count));
  if (i >= count) return nullptr;
  OrtValue* value = nullptr;
  Ort::ThrowOnError(api.KernelContext_GetOutput(context, i, dims.at, dims.rank, &value));
  if (!value) return nullptr;
  void* data = nullptr;
  Ort::ThrowOnError(api.GetTensorMutableData(value, &data));
  return static_cast<T*>(data);
}

}  // namespace gemma_nb
