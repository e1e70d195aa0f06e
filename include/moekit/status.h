// moekit error type. Every precondition of every op is checked on the host before anything is
// written; a failed check throws moekit::Error whose message names the argument, what was expected
// and what came ("topk_ids: expected int32, got int64").
#pragma once

#include <stdexcept>
#include <string>

#if defined(_WIN32)
#define MOEKIT_API __declspec(dllexport)
#else
#define MOEKIT_API __attribute__((visibility("default")))
#endif

namespace moekit {

enum class ErrorKind {
  InvalidArgument,  // a caller error: shape, dtype, device, contiguity, range (Python: ValueError)
  NotSupported,     // valid request this build / machine cannot run (Python: RuntimeError)
  Runtime,          // a CUDA or OS failure while running (Python: RuntimeError)
};

class MOEKIT_API Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace moekit
