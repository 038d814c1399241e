/* One-row float32 products go to BLAS's matrix-vector routine (cpu/blas.py preloads this before OpenBLAS).
 *
 * MLX's CPU matmul always calls cblas_sgemm. For a single row (M = 1, every streamed step of a float32
 * model) OpenBLAS before 0.3.27 still runs its general path, which packs the whole weight into a buffer
 * first: 2.8x slower than cblas_sgemv on the same data here (100 products of 256 x 1408: 17.7 against
 * 6.3 ms, OpenBLAS 0.3.21, one thread); two rows (Mimi's transformers stream two steps a frame) are still
 * 1.4-1.8x faster as two sgemv, four are not. This cblas_sgemm hands row-major products of up to
 * MAX_ROWS rows to the next library's cblas_sgemv, a row at a time (alpha and beta kept: MLX's addmm
 * passes beta = 1), and everything else to the next library's cblas_sgemm unchanged. Built by `make`
 * (Makefile); without a C compiler nothing changes.
 */
#define _GNU_SOURCE
#include <dlfcn.h>

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112, MAX_ROWS = 2 };
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                         float *, int);
typedef void (*sgemv_fn)(int, int, int, int, float, const float *, int, const float *, int, float, float *, int);

void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc) {
  static sgemm_fn next_sgemm;
  static sgemv_fn next_sgemv;
  if (!next_sgemm) { /* racing threads store the same pointers */
    next_sgemv = (sgemv_fn)dlsym(RTLD_NEXT, "cblas_sgemv");
    next_sgemm = (sgemm_fn)dlsym(RTLD_NEXT, "cblas_sgemm");
  }
  if (order == ROW_MAJOR && m <= MAX_ROWS && next_sgemv) {
    /* row r of op(A): k contiguous values from a + r * lda, or (A stored transposed) a column from a + r */
    int step_a = trans_a == NO_TRANS ? 1 : lda, next_row = trans_a == NO_TRANS ? lda : 1;
    for (int r = 0; r < m; r++) {
      if (trans_b == NO_TRANS) /* B is [k, n]: c_r = B^T a_r */
        next_sgemv(ROW_MAJOR, TRANS, k, n, alpha, b, ldb, a + r * next_row, step_a, beta, c + r * ldc, 1);
      else /* B is stored [n, k]: c_r = B a_r */
        next_sgemv(ROW_MAJOR, NO_TRANS, n, k, alpha, b, ldb, a + r * next_row, step_a, beta, c + r * ldc, 1);
    }
    return;
  }
  next_sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
