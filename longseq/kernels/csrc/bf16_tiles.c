/* Fused bf16 attention tiles for x86 CPUs with AVX512-BF16 (longseq/kernels/fused_bf16.py).
 *
 * One work item is one (tile, batch*head) pair: bq queries against span keys, head
 * dimension D. Every product runs on vdpbf16ps (two bf16 products accumulated in fp32 per
 * lane); scores, probabilities, softmax statistics and gradients stay fp32 until they
 * become the bf16 operand of the next product, as in PyTorch's flash kernels.
 *
 * Layout: scores are formed transposed, S^T = K Q^T (span x bq). Then softmax statistics
 * per query are vertical reductions (one vector holds 16 queries), the key-side products
 * dK = dS^T Q and dV = P^T dO read their bf16 operand row by row and write the key
 * gradients in their final layout, and K and V rows are read in place as the left
 * operand. Only the query-side products (O = P V, dQ = dS K) need K or V re-packed.
 *
 * Requirements (checked by the Python caller, which falls back to PyTorch otherwise):
 * bq % 16 == 0, D % 16 == 0, the last axis contiguous, even row strides and 4-byte
 * aligned rows for q, k, v, out, dout; lse/out/grad outputs contiguous.
 */
#include <math.h>

#include "tiles_common.h"

typedef uint16_t bf16;
/* two bf16 values: one multiply-add pair of vdpbf16ps; read from bf16 arrays, hence may_alias */
typedef uint32_t __attribute__((may_alias)) word;

/* ---------------------------------------------------------------- products */

/* C[R x 16*NV] = A[R x Kw] . B[Kw x 16*NV]: A and B in words, C fp32. */
static inline __attribute__((always_inline)) void micro(const int R, const int NV, int64_t Kw, const word *A,
                                                        int64_t lda, const word *B, int64_t ldb, float *C,
                                                        int64_t ldc) {
    __m512 c[4][4];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) c[r][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < Kw; k++) {
        __m512bh b[4];
        for (int v = 0; v < NV; v++) b[v] = (__m512bh)_mm512_loadu_si512(B + k * ldb + 16 * v);
        for (int r = 0; r < R; r++) {
            __m512bh a = (__m512bh)_mm512_set1_epi32((int)A[r * lda + k]);
            for (int v = 0; v < NV; v++) c[r][v] = _mm512_dpbf16_ps(c[r][v], a, b[v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(C + r * ldc + 16 * v, c[r][v]);
}

#define MICRO_NV(R)                                                           \
    switch (nv) {                                                             \
    case 4: micro(R, 4, Kw, A + i * lda, lda, B + j, ldb, C + i * ldc + j, ldc); break; \
    case 3: micro(R, 3, Kw, A + i * lda, lda, B + j, ldb, C + i * ldc + j, ldc); break; \
    case 2: micro(R, 2, Kw, A + i * lda, lda, B + j, ldb, C + i * ldc + j, ldc); break; \
    default: micro(R, 1, Kw, A + i * lda, lda, B + j, ldb, C + i * ldc + j, ldc); break; \
    }

/* C[M x N] = A[M x Kw] . B[Kw x N] with N % 16 == 0 (words in, fp32 out). */
static void gemm(int64_t M, int64_t N, int64_t Kw, const word *A, int64_t lda, const word *B, int64_t ldb,
                 float *C, int64_t ldc) {
    for (int64_t j = 0; j < N; j += 64) { /* a 64-column strip of B stays in cache across rows */
        const int nv = N - j >= 64 ? 4 : (int)((N - j) / 16);
        int64_t i = 0;
        for (; i + 4 <= M; i += 4) MICRO_NV(4)
        for (; i < M; i++) MICRO_NV(1)
    }
}

/* ---------------------------------------------------------------- elementwise */

static inline __m256i to_bf16(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }

/* 16 words (a[m], b[m]) from two vectors of 16 bf16: rows a and b paired for vdpbf16ps. */
static inline __m512i pair_rows(__m256i a, __m256i b) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                                         6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(idx, _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1));
}

static inline bf16 bf16_round(float f) { /* round to nearest even, as the vector conversion */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16)(u >> 16);
}

static inline float bf16_float(bf16 h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---------------------------------------------------------------- packing */

/* dst[kp][i] = word kp of row i (rows of D bf16): the right operand of S^T = K Q^T. */
static void pack_words_t(const bf16 *src, int64_t sr, int64_t rows, int64_t D, word *dst, int64_t ld) {
    for (int64_t i = 0; i < rows; i++) {
        const word *s = (const word *)(src + i * sr);
        for (int64_t kp = 0; kp < D / 2; kp++) dst[kp * ld + i] = s[kp];
    }
}

/* dst[ip][d] = (src[2ip][d], src[2ip+1][d]): row pairs, the right operand of dK, dV. */
static void pack_pairs(const bf16 *src, int64_t sr, int64_t rows, int64_t D, word *dst) {
    for (int64_t ip = 0; ip < rows / 2; ip++) {
        const bf16 *a = src + 2 * ip * sr, *b = a + sr;
        for (int64_t d = 0; d < D; d += 16)
            _mm512_storeu_si512(dst + ip * D + d, pair_rows(_mm256_loadu_si256((const __m256i *)(a + d)),
                                                           _mm256_loadu_si256((const __m256i *)(b + d))));
    }
}

/* dst[d][jp] = (src[2jp][d], src[2jp+1][d]), zero past the last row: transposed row
 * pairs of K or V (D x ceil(rows/2) words), the left operand of dQ^T and O^T. */
static void pack_pairs_t(const bf16 *src, int64_t sr, int64_t rows, int64_t D, word *dst, int64_t ld) {
    word tmp[16];
    for (int64_t jp = 0; jp < (rows + 1) / 2; jp++) {
        const bf16 *a = src + 2 * jp * sr, *b = a + sr;
        const int has_b = 2 * jp + 1 < rows;
        for (int64_t d = 0; d < D; d += 16) {
            __m256i va = _mm256_loadu_si256((const __m256i *)(a + d));
            __m256i vb = has_b ? _mm256_loadu_si256((const __m256i *)(b + d)) : _mm256_setzero_si256();
            _mm512_storeu_si512(tmp, pair_rows(va, vb));
            for (int m = 0; m < 16; m++) dst[(d + m) * ld + jp] = tmp[m];
        }
    }
}

/* ---------------------------------------------------------------- work items */

typedef struct {
    const bf16 *p;
    int64_t st, sg, sr; /* tile, batch*head and row strides in elements */
} view_t;

static inline const bf16 *rows_of(view_t v, int64_t t, int64_t g) { return v.p + t * v.st + g * v.sg; }

typedef struct {
    word *Qt, *Qp, *dOt, *dOp, *Kq, *Pq, *dSq;
    float *ST, *dPT, *QT, *lse, *delta;
    bf16 *PTr, *dSTr;
    void *block; /* owned by the thread's cache */
} scratch_t;

static int scratch_alloc(scratch_t *s, int64_t bq, int64_t span, int64_t D) {
    const int64_t spw = (span + 1) / 2, sp2 = 2 * spw;
    const int64_t words[] = {D / 2 * bq, bq / 2 * D, D / 2 * bq, bq / 2 * D, D * spw, spw * bq, spw * bq};
    const int64_t floats[] = {sp2 * bq, sp2 * bq, D * bq, bq, bq};
    const int64_t halves[] = {sp2 * bq, sp2 * bq};
    int64_t bytes = 0, off[14];
    int n = 0;
    for (int i = 0; i < 7; i++, n++) off[n] = bytes, bytes += RUP(words[i] * 4, ALIGN);
    for (int i = 0; i < 5; i++, n++) off[n] = bytes, bytes += RUP(floats[i] * 4, ALIGN);
    for (int i = 0; i < 2; i++, n++) off[n] = bytes, bytes += RUP(halves[i] * 2, ALIGN);
    char *b = thread_scratch(bytes);
    if (!b) return 1;
    s->block = b;
    word **w[] = {&s->Qt, &s->Qp, &s->dOt, &s->dOp, &s->Kq, &s->Pq, &s->dSq};
    float **f[] = {&s->ST, &s->dPT, &s->QT, &s->lse, &s->delta};
    for (int i = 0; i < 7; i++) *w[i] = (word *)(b + off[i]);
    for (int i = 0; i < 5; i++) *f[i] = (float *)(b + off[7 + i]);
    s->PTr = (bf16 *)(b + off[12]);
    s->dSTr = (bf16 *)(b + off[13]);
    return 0;
}

/* Forward of items [item0, item1): out (n, G, bq, D) bf16 and lse (n, G, bq) fp32, both
 * contiguous. mask_t: additive fp32 mask transposed to (.., span, bq) with query stride 1,
 * or NULL. Queries without an allowed key get out 0 and lse -inf. */
static void forward_items(scratch_t s, int64_t item0, int64_t item1, int64_t G, int64_t bq, int64_t span,
                          int64_t D, const bf16 *q, const int64_t *qs, const bf16 *k, const int64_t *ks,
                          const bf16 *v, const int64_t *vs, const float *mask_t, const int64_t *ms, float scale,
                          bf16 *out, float *lse) {
    const view_t Q = {q, qs[0], qs[1], qs[2]}, K = {k, ks[0], ks[1], ks[2]}, V = {v, vs[0], vs[1], vs[2]};
    const int64_t spw = (span + 1) / 2;
    for (int64_t item = item0; item < item1; item++) {
        const int64_t t = item / G, g = item % G;
        const bf16 *kr = rows_of(K, t, g);
        pack_words_t(rows_of(Q, t, g), Q.sr, bq, D, s.Qt, bq);
        pack_pairs_t(rows_of(V, t, g), V.sr, span, D, s.Kq, spw);
        gemm(span, bq, D / 2, (const word *)kr, K.sr / 2, s.Qt, bq, s.ST, bq); /* S^T = K Q^T */
        const float *mt = mask_t ? mask_t + t * ms[0] + g * ms[1] : NULL;
        for (int64_t i = 0; i < bq; i += 16) {
            const __m512 sc = _mm512_set1_ps(scale);
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
            for (int64_t jp = 0; jp < spw; jp++) {
                const int64_t j = 2 * jp;
                __m512 pa = exp_neg(_mm512_sub_ps(_mm512_loadu_ps(s.ST + j * bq + i), m));
                __m512 pb = j + 1 < span ? exp_neg(_mm512_sub_ps(_mm512_loadu_ps(s.ST + (j + 1) * bq + i), m))
                                         : _mm512_setzero_ps();
                l = _mm512_add_ps(l, _mm512_add_ps(pa, pb));
                _mm512_storeu_si512(s.Pq + jp * bq + i, pair_rows(to_bf16(pa), to_bf16(pb)));
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
        gemm(D, bq, spw, s.Kq, spw, s.Pq, bq, s.QT, bq); /* O^T = V^T P^T (unnormalised) */
        bf16 *o = out + item * bq * D;
        for (int64_t i = 0; i < bq; i++)
            for (int64_t d = 0; d < D; d++) o[i * D + d] = bf16_round(s.QT[d * bq + i] * s.delta[i]);
        memcpy(lse + item * bq, s.lse, bq * sizeof(float));
    }
}

/* Backward of items [item0, item1): dq (n, G, bq, D), dk and dv (n, G, span, D), all fp32
 * and contiguous. out and lse may belong to a larger softmax this tile is part of; lse is
 * contiguous (n, G, bq) fp32. mask_t as in forward. */
static void backward_items(scratch_t s, int64_t item0, int64_t item1, int64_t G, int64_t bq, int64_t span,
                           int64_t D, const bf16 *dout, const int64_t *dos, const bf16 *q, const int64_t *qs,
                           const bf16 *k, const int64_t *ks, const bf16 *v, const int64_t *vs, const bf16 *out,
                           const int64_t *os, const float *lse, const float *mask_t, const int64_t *ms,
                           float scale, float *dq, float *dk, float *dv) {
    const view_t Q = {q, qs[0], qs[1], qs[2]}, K = {k, ks[0], ks[1], ks[2]}, V = {v, vs[0], vs[1], vs[2]};
    const view_t dO = {dout, dos[0], dos[1], dos[2]}, O = {out, os[0], os[1], os[2]};
    const int64_t spw = (span + 1) / 2;
    for (int64_t item = item0; item < item1; item++) {
        const int64_t t = item / G, g = item % G;
        const bf16 *qr = rows_of(Q, t, g), *kr = rows_of(K, t, g), *vr = rows_of(V, t, g);
        const bf16 *dor = rows_of(dO, t, g), *orow = rows_of(O, t, g);
        for (int64_t i = 0; i < bq; i++) {
            const float l = lse[item * bq + i];
            s.lse[i] = l == -INFINITY ? INFINITY : l; /* no allowed key: every probability 0 */
            float acc = 0.0f;
            for (int64_t d = 0; d < D; d++) acc += bf16_float(dor[i * dO.sr + d]) * bf16_float(orow[i * O.sr + d]);
            s.delta[i] = acc;
        }
        pack_words_t(qr, Q.sr, bq, D, s.Qt, bq);
        pack_words_t(dor, dO.sr, bq, D, s.dOt, bq);
        pack_pairs(qr, Q.sr, bq, D, s.Qp);
        pack_pairs(dor, dO.sr, bq, D, s.dOp);
        pack_pairs_t(kr, K.sr, span, D, s.Kq, spw);
        gemm(span, bq, D / 2, (const word *)kr, K.sr / 2, s.Qt, bq, s.ST, bq);   /* S^T = K Q^T */
        gemm(span, bq, D / 2, (const word *)vr, V.sr / 2, s.dOt, bq, s.dPT, bq); /* dP^T = V dO^T */
        const float *mt = mask_t ? mask_t + t * ms[0] + g * ms[1] : NULL;
        const __m512 sc = _mm512_set1_ps(scale);
        for (int64_t jp = 0; jp < spw; jp++) {
            for (int64_t i = 0; i < bq; i += 16) {
                const __m512 lv = _mm512_loadu_ps(s.lse + i), dl = _mm512_loadu_ps(s.delta + i);
                __m256i ds16[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
                for (int h = 0; h < 2; h++) {
                    const int64_t j = 2 * jp + h;
                    if (j >= span) break;
                    __m512 x = _mm512_mul_ps(_mm512_loadu_ps(s.ST + j * bq + i), sc);
                    if (mt) x = _mm512_add_ps(x, _mm512_loadu_ps(mt + j * ms[2] + i));
                    /* bf16 rounding can put a recomputed score above the forward's lse */
                    x = _mm512_min_ps(_mm512_setzero_ps(), _mm512_sub_ps(x, lv)); /* NaN passes */
                    const __m512 p = exp_neg(x);
                    const __m512 ds = _mm512_mul_ps(_mm512_mul_ps(p, _mm512_sub_ps(_mm512_loadu_ps(s.dPT + j * bq + i), dl)), sc);
                    _mm256_storeu_si256((__m256i *)(s.PTr + j * bq + i), to_bf16(p));
                    ds16[h] = to_bf16(ds);
                    _mm256_storeu_si256((__m256i *)(s.dSTr + j * bq + i), ds16[h]);
                }
                _mm512_storeu_si512(s.dSq + jp * bq + i, pair_rows(ds16[0], ds16[1]));
            }
        }
        /* the scale of the scores is folded into dS: dK and dQ need no extra pass */
        gemm(span, D, bq / 2, (const word *)s.PTr, bq / 2, s.dOp, D, dv + item * span * D, D); /* dV = P^T dO */
        gemm(span, D, bq / 2, (const word *)s.dSTr, bq / 2, s.Qp, D, dk + item * span * D, D); /* dK = dS^T Q */
        gemm(D, bq, spw, s.Kq, spw, s.dSq, bq, s.QT, bq);                                    /* dQ^T = K^T dS^T */
        float *dqi = dq + item * bq * D;
        for (int64_t i = 0; i < bq; i++)
            for (int64_t d = 0; d < D; d++) dqi[i * D + d] = s.QT[d * bq + i];
    }
}

int longseq_bf16_forward(int threads, int64_t n_items, int64_t G, int64_t bq, int64_t span, int64_t D,
                         const bf16 *q, const int64_t *qs, const bf16 *k, const int64_t *ks, const bf16 *v,
                         const int64_t *vs, const float *mask_t, const int64_t *ms, float scale, bf16 *out,
                         float *lse) {
    OVER_THREADS(forward_items(s, i0, i1, G, bq, span, D, q, qs, k, ks, v, vs, mask_t, ms, scale, out, lse))
}

int longseq_bf16_backward(int threads, int64_t n_items, int64_t G, int64_t bq, int64_t span, int64_t D,
                          const bf16 *dout, const int64_t *dos, const bf16 *q, const int64_t *qs, const bf16 *k,
                          const int64_t *ks, const bf16 *v, const int64_t *vs, const bf16 *out,
                          const int64_t *os, const float *lse, const float *mask_t, const int64_t *ms, float scale,
                          float *dq, float *dk, float *dv) {
    OVER_THREADS(backward_items(s, i0, i1, G, bq, span, D, dout, dos, q, qs, k, ks, v, vs, out, os, lse, mask_t, ms,
                                scale, dq, dk, dv))
}
