"""The fixed C helpers every generated translation unit starts with (header-light: cuda_fp16/cuda_bf16)."""

from __future__ import annotations

PRELUDE = r"""
#include <cuda_fp16.h>
#include <cuda_bf16.h>
typedef unsigned int uint32_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned long long uint64_t;

/* floor division and its remainder (the IR's // and %), for operands of any sign */
template <typename T> __device__ __forceinline__ T ab_floordiv(T a, T b) {
  T q = a / b; return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q;
}
template <typename T> __device__ __forceinline__ T ab_floormod(T a, T b) {
  T r = a % b; return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}

__device__ __forceinline__ long long ab_sign_extend(uint32_t code, int n) {
  return (long long)((int)(code << (32 - n)) >> (32 - n));
}

template <typename T> __device__ __forceinline__ long long ab_saturate_int(T v, long long lo, long long hi) {
  if constexpr (sizeof(T) == 8 && (T)0.5 != 0) {          /* double: round half to even, NaN -> 0 */
    if (v != v) return 0;
    double r = rint((double)v);
    return r <= (double)lo ? lo : (r >= (double)hi ? hi : (long long)r);
  } else if constexpr ((T)0.5 != 0) {                      /* float */
    if (v != v) return 0;
    double r = rint((double)v);
    return r <= (double)lo ? lo : (r >= (double)hi ? hi : (long long)r);
  } else {
    long long w = (long long)v;
    return w < lo ? lo : (w > hi ? hi : w);
  }
}

/* value of a packed float code (1 sign bit, E exponent bits, M mantissa bits, IEEE-style bias) */
__device__ __forceinline__ float ab_decode_float(uint32_t code, int E, int M, int has_inf, int has_nan) {
  uint32_t sign = (code >> (E + M)) & 1u;
  uint32_t exponent = (code >> M) & ((1u << E) - 1u);
  uint32_t mantissa = code & ((1u << M) - 1u);
  int bias = (1 << (E - 1)) - 1;
  float magnitude;
  if (has_inf && exponent == (1u << E) - 1u) {
    magnitude = mantissa ? __int_as_float(0x7fc00000) : __int_as_float(0x7f800000);
  } else if (has_nan && !has_inf && exponent == (1u << E) - 1u && mantissa == (1u << M) - 1u) {
    magnitude = __int_as_float(0x7fc00000);
  } else {
    float significand = (float)(exponent ? (mantissa | (1u << M)) : mantissa);
    magnitude = ldexpf(significand, (int)(exponent ? exponent : 1u) - bias - M);
  }
  return sign ? -magnitude : magnitude;
}

/* code of x in a packed float type: nearest even, saturating, NaN -> type's NaN or +0 (DESIGN 4.1) */
__device__ __forceinline__ uint32_t ab_encode_float(double x, int E, int M, int has_inf, int has_nan) {
  unsigned long long bits = (unsigned long long)__double_as_longlong(x);
  uint32_t sign = (uint32_t)(bits >> 63);
  uint32_t all_ones = ((1u << E) - 1u) << M;
  uint32_t mask_m = (1u << M) - 1u;
  uint32_t max_code = has_inf ? all_ones - 1u : (has_nan ? (all_ones | mask_m) - 1u : (all_ones | mask_m));
  if (x != x) {
    if (has_inf) return (sign << (E + M)) | all_ones | (1u << (M - 1));
    if (has_nan) return (sign << (E + M)) | all_ones | mask_m;
    return 0u;
  }
  int biased = (int)((bits >> 52) & 0x7ff);
  long long fraction = (long long)(bits & ((1ull << 52) - 1));
  uint32_t magnitude;
  if (biased == 0x7ff) {
    magnitude = has_inf ? all_ones : max_code;
  } else {
    int bias = (1 << (E - 1)) - 1;
    int min_exponent = 1 - bias;
    long long significand = biased ? (fraction | (1ll << 52)) : fraction;
    int scale = (biased ? biased : 1) - 1023 - 52;
    int binade = biased - 1023 > min_exponent ? biased - 1023 : min_exponent;
    int shift = binade - M - scale;
    if (shift > 62) shift = 62;
    long long quotient = significand >> shift;
    long long remainder = significand & ((1ll << shift) - 1);
    long long half = 1ll << (shift - 1);
    int up = (remainder > half) || (remainder == half && (quotient & 1));
    long long m = ((long long)(binade - min_exponent) << M) + quotient + up;
    magnitude = m > (long long)max_code ? max_code : (uint32_t)m;
  }
  return (sign << (E + M)) | magnitude;
}

/* float16 / bfloat16 with DESIGN 4.1 saturation (finite overflow -> +-max, inf stays inf) */
__device__ __forceinline__ __half ab_sat_f16(double x) {
  if (fabs(x) > 65504.0 && !isinf(x)) x = x > 0 ? 65504.0 : -65504.0;
  return __double2half(x);
}
__device__ __forceinline__ __nv_bfloat16 ab_sat_bf16(double x) {
  const double max_bf16 = 3.3895313892515355e38;
  if (fabs(x) > max_bf16 && !isinf(x)) x = x > 0 ? max_bf16 : -max_bf16;
  return __double2bfloat16(x);
}

/* PTX building blocks of the fast conversions */
template <int LUT> __device__ __forceinline__ uint32_t ab_lop3(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d; asm("lop3.b32 %0, %1, %2, %3, %4;" : "=r"(d) : "r"(a), "r"(b), "r"(c), "n"(LUT)); return d;
}
__device__ __forceinline__ uint32_t ab_prmt(uint32_t a, uint32_t b, uint32_t selector) {
  uint32_t d; asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(selector)); return d;
}
__device__ __forceinline__ uint32_t ab_sub_f16x2(uint32_t a, uint32_t b) {
  uint32_t d; asm("sub.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b)); return d;
}
/* element-wise f16x2 arithmetic: .rn forbids contracting a mul and an add into one fma */
__device__ __forceinline__ uint32_t ab_add_rn_f16x2(uint32_t a, uint32_t b) {
  uint32_t d; asm("add.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b)); return d;
}
__device__ __forceinline__ uint32_t ab_sub_rn_f16x2(uint32_t a, uint32_t b) {
  uint32_t d; asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b)); return d;
}
__device__ __forceinline__ uint32_t ab_mul_rn_f16x2(uint32_t a, uint32_t b) {
  uint32_t d; asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b)); return d;
}
__device__ __forceinline__ uint32_t ab_fma_f16x2(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d; asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c)); return d;
}
__device__ __forceinline__ uint32_t ab_eq_mask_f16x2(uint32_t a, uint32_t b) {
  uint32_t d; asm("set.eq.u32.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b)); return d;
}
__device__ __forceinline__ uint32_t ab_mul_f16x2(uint32_t a, uint32_t b) {
  uint32_t d; asm("mul.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b)); return d;
}
__device__ __forceinline__ uint32_t ab_fma_bf16x2(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d; asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c)); return d;
}
__device__ __forceinline__ uint32_t ab_f32x2_to_bf16x2(float lo, float hi) {
  uint32_t d; asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo)); return d;
}
__device__ __forceinline__ uint32_t ab_smem_addr(const void* p) {
  return (uint32_t)__cvta_generic_to_shared(p);
}
"""

PRELUDE += r"""
/* bit-level access of one packed element (n < 8 bits) at bit position `bit` of a byte array */
__device__ __forceinline__ uint32_t ab_load_bits(const uint8_t* base, long long bit, int n) {
  const uint8_t* p = base + (bit >> 3);
  int s = (int)(bit & 7);
  uint32_t v = p[0];
  if (s + n > 8) v |= (uint32_t)p[1] << 8;
  return (v >> s) & ((1u << n) - 1u);
}
/* neighbours may be written by other threads: clear and set the bits with word atomics */
__device__ __forceinline__ void ab_store_bits(uint8_t* base, long long bit, int n, uint32_t v) {
  unsigned long long address = (unsigned long long)(base + (bit >> 3));
  int shift = (int)(bit & 7) + (int)(address & 3) * 8;
  uint32_t* word = (uint32_t*)(address & ~3ull);
  unsigned long long mask = ((1ull << n) - 1ull) << shift;
  unsigned long long value = ((unsigned long long)v << shift) & mask;
  atomicAnd(word, ~(uint32_t)mask);
  atomicOr(word, (uint32_t)value);
  if (mask >> 32) {
    atomicAnd(word + 1, ~(uint32_t)(mask >> 32));
    atomicOr(word + 1, (uint32_t)(value >> 32));
  }
}
"""
