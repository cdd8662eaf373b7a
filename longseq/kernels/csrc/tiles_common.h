/* What the fused attention tile kernels share (bf16_tiles.c, fp32_tiles.c): the exp of the
 * softmax, each thread's scratch block, and the split of work items over OpenMP threads. */
#ifndef LONGSEQ_TILES_COMMON_H
#define LONGSEQ_TILES_COMMON_H

#include <immintrin.h>
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 64
#define RUP(x, m) (((x) + (m) - 1) / (m) * (m))

/* exp(x) for x <= 0; exactly 0 below -87 (masked scores are -inf); NaN stays NaN. */
static inline __m512 exp_neg(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.0f);
    const __mmask16 tiny = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_max_ps(lo, x); /* max_ps returns its second operand when either is NaN */
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r); /* |r| <= ln2/2 */
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_mov_ps((__mmask16)~tiny, _mm512_scalef_ps(p, n));
}

/* Each thread keeps one scratch block between calls: fresh pages cost more than the work
 * here (a first touch faults every 4 KiB page), and the OpenMP threads are torch's own.
 * The block is freed when its thread exits (libgomp ends surplus threads when a team
 * shrinks). Static per source file: each kernel has its own block. */
static __thread char *cached_block = NULL;
static __thread int64_t cached_bytes = 0;
static pthread_key_t cache_key;
static pthread_once_t cache_key_once = PTHREAD_ONCE_INIT;

static void free_cached_block(void *block) { free(block); }
static void make_cache_key(void) { pthread_key_create(&cache_key, free_cached_block); }

/* This thread's zeroed-once scratch of at least `bytes` bytes, ALIGN-aligned; NULL when it
 * cannot be allocated. */
static char *thread_scratch(int64_t bytes) {
    if (cached_bytes < bytes) {
        pthread_once(&cache_key_once, make_cache_key);
        free(cached_block);
        cached_block = aligned_alloc(ALIGN, RUP(bytes, ALIGN));
        cached_bytes = cached_block ? bytes : 0;
        pthread_setspecific(cache_key, cached_block);
        if (!cached_block) return NULL;
        memset(cached_block, 0, bytes);
    }
    return cached_block;
}

/* The items are split evenly over `threads` OpenMP threads: torch's own pool when this
 * library shares torch's libgomp, so no second set of threads competes for the cores.
 * Entry points using it return 0, or 1 when a thread could not allocate its scratch. */
#define OVER_THREADS(CALL)                                                  \
    int failed = 0;                                                         \
    _Pragma("omp parallel num_threads(threads) reduction(|| : failed)")     \
    {                                                                       \
        const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num(); \
        const int64_t i0 = n_items * id / nt, i1 = n_items * (id + 1) / nt; \
        scratch_t s;                                                        \
        if (i0 < i1) {                                                      \
            if (scratch_alloc(&s, bq, span, D))                             \
                failed = 1;                                                 \
            else                                                            \
                CALL;                                                       \
        }                                                                   \
    }                                                                       \
    return failed;

#endif
