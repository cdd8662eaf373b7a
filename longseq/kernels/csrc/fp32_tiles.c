/* Fused fp32 attention tiles for x86 CPUs with AVX512 (longseq/kernels/fused_bf16.py):
 * the fp32 twin of bf16_tiles.c, built into the same library.
 *
 * One work item is one (tile, batch*head) pair: bq queries against span keys, head
 * dimension D. Products are AVX512 FMAs (one fp32 operand broadcast, sixteen from a row);
 * the softmax runs in the same registers. What PyTorch's flash backward spends outside its
 * products (zeroed key-gradient tiles, separate passes for P, dP and dS) is fused into
 * one pass over the tile here.
 *
 * Layout, as in bf16_tiles.c: scores are formed transposed, S^T = K Q^T (span x bq), so
 * softmax statistics per query are vertical reductions (one vector holds 16 queries) and
 * P^T, dS^T are the left operands of dV = P^T dO and dK = dS^T Q, written in the key
 * gradients' final layout. K, V rows are read in place; Q, dO and (for O^T = V^T P^T and
 * dQ^T = K^T dS^T) V, K are transposed into scratch.
 *
 * Requirements (checked by the Python caller, which falls back to PyTorch otherwise):
 * bq % 16 == 0, D % 16 == 0, the last axis contiguous; lse/out/grad outputs contiguous.
 */
#include <math.h>

#include "tiles_common.h"

/* ---------------------------------------------------------------- products */

/* C[R x 16*NV] = A[R x K] . B[K x 16*NV], all fp32. */
static inline __attribute__((always_inline)) void micro(const int R, const int NV, int64_t K, const float *A,
                                                        int64_t lda, const float *B, int64_t ldb, float *C,
                                                        int64_t ldc) {
    __m512 c[4][4];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) c[r][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m512 b[4];
        for (int v = 0; v < NV; v++) b[v] = _mm512_loadu_ps(B + k * ldb + 16 * v);
        for (int r = 0; r < R; r++) {
            const __m512 a = _mm512_set1_ps(A[r * lda + k]);
            for (int v = 0; v < NV; v++) c[r][v] = _mm512_fmadd_ps(a, b[v], c[r][v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(C + r * ldc + 16 * v, c[r][v]);
}

#define MICRO_NV(R)                                                                     \
    switch (nv) {                                                                       \
    case 4: micro(R, 4, K, A + i * lda, lda, B + j, ldb, C + i * ldc + j, ldc); break; \
    case 3: micro(R, 3, K, A + i * lda, lda, B + j, ldb, C + i * ldc + j, ldc); break; \
    case 2: micro(R, 2, K, A + i * lda, lda, B + j, ldb, C + i * ldc + j, ldc); break; \
    default: micro(R, 1, K, A + i * lda, lda, B + j, ldb, C + i * ldc + j, ldc); break; \
    }

/* C[M x N] = A[M x K] . B[K x N] with N % 16 == 0. */
static void gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                 float *C, int64_t ldc) {
    for (int64_t j = 0; j < N; j += 64) { /* a 64-column strip of B stays in cache across rows */
        const int nv = N - j >= 64 ? 4 : (int)((N - j) / 16);
        int64_t i = 0;
        for (; i + 4 <= M; i += 4) MICRO_NV(4)
        for (; i < M; i++) MICRO_NV(1)
    }
}

/* ---------------------------------------------------------------- elementwise */

/* dst[d * ld + i] = src[i * sr + d]: rows (rows x D) transposed to (D x rows). */
static void transpose(const float *src, int64_t sr, int64_t rows, int64_t D, float *dst, int64_t ld) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t d = 0; d < D; d++) dst[d * ld + i] = src[i * sr + d];
}

/* ---------------------------------------------------------------- work items */

typedef struct {
    const float *p;
    int64_t st, sg, sr; /* tile, batch*head and row strides in elements */
} view_t;

static inline const float *rows_of(view_t v, int64_t t, int64_t g) { return v.p + t * v.st + g * v.sg; }

typedef struct {
    float *Qt, *dOt, *KVt, *ST, *dPT, *QT, *lse, *delta;
    void *block; /* owned by the thread's cache */
} scratch_t;

static int scratch_alloc(scratch_t *s, int64_t bq, int64_t span, int64_t D) {
    const int64_t floats[] = {D * bq, D * bq, D * span, span * bq, span * bq, D * bq, bq, bq};
    int64_t bytes = 0, off[8];
    for (int i = 0; i < 8; i++) off[i] = bytes, bytes += RUP(floats[i] * 4, ALIGN);
    char *b = thread_scratch(bytes);
    if (!b) return 1;
    s->block = b;
    float **f[] = {&s->Qt, &s->dOt, &s->KVt, &s->ST, &s->dPT, &s->QT, &s->lse, &s->delta};
    for (int i = 0; i < 8; i++) *f[i] = (float *)(b + off[i]);
    return 0;
}

/* Forward of items [item0, item1): out (n, G, bq, D) and lse (n, G, bq), both contiguous.
 * mask_t: additive mask transposed to (.., span, bq) with query stride 1, or NULL.
 * Queries without an allowed key get out 0 and lse -inf. */
static void forward_items(scratch_t s, int64_t item0, int64_t item1, int64_t G, int64_t bq, int64_t span,
                          int64_t D, const float *q, const int64_t *qs, const float *k, const int64_t *ks,
                          const float *v, const int64_t *vs, const float *mask_t, const int64_t *ms, float scale,
                          float *out, float *lse) {
    const view_t Q = {q, qs[0], qs[1], qs[2]}, K = {k, ks[0], ks[1], ks[2]}, V = {v, vs[0], vs[1], vs[2]};
    for (int64_t item = item0; item < item1; item++) {
        const int64_t t = item / G, g = item % G;
        transpose(rows_of(Q, t, g), Q.sr, bq, D, s.Qt, bq);
        transpose(rows_of(V, t, g), V.sr, span, D, s.KVt, span);
        gemm(span, bq, D, rows_of(K, t, g), K.sr, s.Qt, bq, s.ST, bq); /* S^T = K Q^T */
        const float *mt = mask_t ? mask_t + t * ms[0] + g * ms[1] : NULL;
        const __m512 sc = _mm512_set1_ps(scale);
        for (int64_t i = 0; i < bq; i += 16) {
            __m512 m = _mm512_set1_ps(-INFINITY);
            for (int64_t j = 0; j < span; j++) { /* scaled, masked scores in place; column max */
                __m512 x = _mm512_mul_ps(_mm512_loadu_ps(s.ST + j * bq + i), sc);
                if (mt) x = _mm512_add_ps(x, _mm512_loadu_ps(mt + j * ms[2] + i));
                _mm512_storeu_ps(s.ST + j * bq + i, x);
                m = _mm512_max_ps(m, x);
            }
            const __mmask16 empty = _mm512_cmp_ps_mask(m, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ);
            m = _mm512_mask_mov_ps(m, empty, _mm512_setzero_ps());
            __m512 l = _mm512_setzero_ps();
            for (int64_t j = 0; j < span; j++) { /* P^T (unnormalised) in place */
                const __m512 p = exp_neg(_mm512_sub_ps(_mm512_loadu_ps(s.ST + j * bq + i), m));
                l = _mm512_add_ps(l, p);
                _mm512_storeu_ps(s.ST + j * bq + i, p);
            }
            /* lse = m + log l; -inf for queries with no allowed key (l == 0) */
            float lv[16], mv[16];
            _mm512_storeu_ps(lv, l);
            _mm512_storeu_ps(mv, m);
            for (int r = 0; r < 16; r++) {
                const int empty_row = lv[r] == 0.0f; /* NaN scores make l NaN: passed on, not hidden */
                s.lse[i + r] = empty_row ? -INFINITY : mv[r] + logf(lv[r]);
                s.delta[i + r] = empty_row ? 0.0f : 1.0f / lv[r];
            }
        }
        gemm(D, bq, span, s.KVt, span, s.ST, bq, s.QT, bq); /* O^T = V^T P^T (unnormalised) */
        float *o = out + item * bq * D;
        for (int64_t i = 0; i < bq; i++)
            for (int64_t d = 0; d < D; d++) o[i * D + d] = s.QT[d * bq + i] * s.delta[i];
        memcpy(lse + item * bq, s.lse, bq * sizeof(float));
    }
}

/* Backward of items [item0, item1): dq (n, G, bq, D), dk and dv (n, G, span, D), all
 * contiguous. out and lse may belong to a larger softmax this tile is part of; lse is
 * contiguous (n, G, bq). mask_t as in forward. */
static void backward_items(scratch_t s, int64_t item0, int64_t item1, int64_t G, int64_t bq, int64_t span,
                           int64_t D, const float *dout, const int64_t *dos, const float *q, const int64_t *qs,
                           const float *k, const int64_t *ks, const float *v, const int64_t *vs, const float *out,
                           const int64_t *os, const float *lse, const float *mask_t, const int64_t *ms,
                           float scale, float *dq, float *dk, float *dv) {
    const view_t Q = {q, qs[0], qs[1], qs[2]}, K = {k, ks[0], ks[1], ks[2]}, V = {v, vs[0], vs[1], vs[2]};
    const view_t dO = {dout, dos[0], dos[1], dos[2]}, O = {out, os[0], os[1], os[2]};
    for (int64_t item = item0; item < item1; item++) {
        const int64_t t = item / G, g = item % G;
        const float *qr = rows_of(Q, t, g), *kr = rows_of(K, t, g), *vr = rows_of(V, t, g);
        const float *dor = rows_of(dO, t, g), *orow = rows_of(O, t, g);
        for (int64_t i = 0; i < bq; i++) {
            const float l = lse[item * bq + i];
            s.lse[i] = l == -INFINITY ? INFINITY : l; /* no allowed key: every probability 0 */
            float acc = 0.0f;
            for (int64_t d = 0; d < D; d++) acc += dor[i * dO.sr + d] * orow[i * O.sr + d];
            s.delta[i] = acc;
        }
        transpose(qr, Q.sr, bq, D, s.Qt, bq);
        transpose(dor, dO.sr, bq, D, s.dOt, bq);
        transpose(kr, K.sr, span, D, s.KVt, span);
        gemm(span, bq, D, kr, K.sr, s.Qt, bq, s.ST, bq);   /* S^T = K Q^T */
        gemm(span, bq, D, vr, V.sr, s.dOt, bq, s.dPT, bq); /* dP^T = V dO^T */
        const float *mt = mask_t ? mask_t + t * ms[0] + g * ms[1] : NULL;
        const __m512 sc = _mm512_set1_ps(scale);
        for (int64_t j = 0; j < span; j++) {
            for (int64_t i = 0; i < bq; i += 16) {
                __m512 x = _mm512_mul_ps(_mm512_loadu_ps(s.ST + j * bq + i), sc);
                if (mt) x = _mm512_add_ps(x, _mm512_loadu_ps(mt + j * ms[2] + i));
                /* rounding can put a recomputed score a hair above the forward's lse */
                x = _mm512_min_ps(_mm512_setzero_ps(), _mm512_sub_ps(x, _mm512_loadu_ps(s.lse + i))); /* NaN passes */
                const __m512 p = exp_neg(x);
                const __m512 dp = _mm512_sub_ps(_mm512_loadu_ps(s.dPT + j * bq + i), _mm512_loadu_ps(s.delta + i));
                _mm512_storeu_ps(s.ST + j * bq + i, p);                                     /* P^T */
                _mm512_storeu_ps(s.dPT + j * bq + i, _mm512_mul_ps(_mm512_mul_ps(p, dp), sc)); /* dS^T, scaled */
            }
        }
        /* the scale of the scores is folded into dS: dK and dQ need no extra pass */
        gemm(span, D, bq, s.ST, bq, dor, dO.sr, dv + item * span * D, D);  /* dV = P^T dO */
        gemm(span, D, bq, s.dPT, bq, qr, Q.sr, dk + item * span * D, D);   /* dK = dS^T Q */
        gemm(D, bq, span, s.KVt, span, s.dPT, bq, s.QT, bq);               /* dQ^T = K^T dS^T */
        float *dqi = dq + item * bq * D;
        for (int64_t i = 0; i < bq; i++)
            for (int64_t d = 0; d < D; d++) dqi[i * D + d] = s.QT[d * bq + i];
    }
}

int longseq_fp32_forward(int threads, int64_t n_items, int64_t G, int64_t bq, int64_t span, int64_t D,
                         const float *q, const int64_t *qs, const float *k, const int64_t *ks, const float *v,
                         const int64_t *vs, const float *mask_t, const int64_t *ms, float scale, float *out,
                         float *lse) {
    OVER_THREADS(forward_items(s, i0, i1, G, bq, span, D, q, qs, k, ks, v, vs, mask_t, ms, scale, out, lse))
}

int longseq_fp32_backward(int threads, int64_t n_items, int64_t G, int64_t bq, int64_t span, int64_t D,
                          const float *dout, const int64_t *dos, const float *q, const int64_t *qs, const float *k,
                          const int64_t *ks, const float *v, const int64_t *vs, const float *out,
                          const int64_t *os, const float *lse, const float *mask_t, const int64_t *ms, float scale,
                          float *dq, float *dk, float *dv) {
    OVER_THREADS(backward_items(s, i0, i1, G, bq, span, D, dout, dos, q, qs, k, ks, v, vs, out, os, lse, mask_t, ms,
                                scale, dq, dk, dv))
}
