// Umbrella header: the whole public moekit C++ API.
#pragma once

#include "moekit/combine.h"
#include "moekit/cpu.h"
#include "moekit/cpu_experts.h"
#include "moekit/dispatch.h"
#include "moekit/experts.h"
#include "moekit/gpu_experts.h"
#include "moekit/qk_norm_rope.h"
#include "moekit/quant.h"
#include "moekit/route.h"
#include "moekit/status.h"
#include "moekit/tensor.h"
