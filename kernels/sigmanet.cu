// sigmanet CUDA kernels, compiled at run time by CuPy (NVRTC), once per process
// and dtype (float and double instances through name_expressions).
//
// Layout: every matrix is row-major and contiguous. m = rows in the batch,
// n_k = units in layer k; W[k] is (n_k, n_{k+1}), activations a[k] and
// deltas d[k] are (m, n_k).
//
// Three groups:
//   * fused epilogues around cuBLAS GEMMs: forward_sigmoid, output_delta,
//     hidden_delta, sgd_update (which also sums a split GEMM's partials; bias
//     gradients are the GEMM ones.T @ d, so they need no kernel of their own);
//   * gemm_tiled: small GEMMs of our own, so a whole iteration can be captured
//     as a CUDA graph (CuPy refuses cuBLAS calls during stream capture);
//   * train_small: a whole report interval in one launch, one thread block,
//     weights, activations and deltas in shared memory.
//
// The sigmoid is the exact 1 / (1 + exp(-z)): exp(-z) overflowing to inf gives
// the correct 0, so no clamping is needed.

// The layer cap comes from the compiler command line (-DSN_MAX_LAYERS=...),
// from MAX_LAYERS in src/sigmanet/backends/_cuda.py: one constant, one place.
#ifndef SN_MAX_LAYERS
#error "compile with -DSN_MAX_LAYERS=<n> (sigmanet.backends._cuda.MAX_LAYERS)"
#endif

__device__ __forceinline__ float sn_sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }
__device__ __forceinline__ double sn_sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }

// z (m, n) <- sigmoid(z + b): z holds a[k] @ W[k]. The bias column is kept as
// a running 32-bit index (no 64-bit modulo per element).
template <typename T>
__global__ void forward_sigmoid(T* __restrict__ z, const T* __restrict__ b, long long m, int n, int use_bias)
{
    const long long count = m * n;
    const long long first = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    const long long stride = (long long)gridDim.x * blockDim.x;
    if (!use_bias) {
        for (long long q = first; q < count; q += stride) z[q] = sn_sigmoid(z[q]);
        return;
    }
    const int step = (int)(stride % n);
    int j = (int)(first % n);
    for (long long q = first; q < count; q += stride) {
        z[q] = sn_sigmoid(z[q] + b[j]);
        j += step;
        if (j >= n) j -= n;
    }
}

// d <- (y - a) * a*(1-a) ("mse", the seed) or y - a ("bce"); when err is not
// null, adds sum |y - a| to *err (one atomic per block).
template <typename T>
__global__ void output_delta(const T* __restrict__ y, const T* __restrict__ a, T* __restrict__ d,
                             long long count, int bce, double* err)
{
    __shared__ double partial[32];
    double acc = 0.0;
    for (long long q = blockIdx.x * (long long)blockDim.x + threadIdx.x; q < count;
         q += (long long)gridDim.x * blockDim.x) {
        const T av = a[q];
        const T e = y[q] - av;
        acc += fabs((double)e);
        d[q] = bce ? e : e * (av * (T(1) - av));
    }
    if (err == nullptr) return;
    for (int offset = 16; offset > 0; offset >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, offset);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) partial[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        acc = lane < (blockDim.x + 31) / 32 ? partial[lane] : 0.0;
        for (int offset = 16; offset > 0; offset >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, offset);
        if (lane == 0) atomicAdd(err, acc);
    }
}

// d <- d * a*(1-a): d holds d[k+1] @ W[k].T.
template <typename T>
__global__ void hidden_delta(T* __restrict__ d, const T* __restrict__ a, long long count)
{
    for (long long q = blockIdx.x * (long long)blockDim.x + threadIdx.x; q < count;
         q += (long long)gridDim.x * blockDim.x) {
        const T av = a[q];
        d[q] = d[q] * (av * (T(1) - av));
    }
}

// w <- w + scale * g, where g is the sum of `splits` partial gradients laid
// out one after another (a split GEMM's output), summed in a fixed order; the
// seed's scale is 1. Weights and biases both come through here.
template <typename T>
__global__ void sgd_update(T* __restrict__ w, const T* __restrict__ g, T scale, long long count, int splits)
{
    for (long long q = blockIdx.x * (long long)blockDim.x + threadIdx.x; q < count;
         q += (long long)gridDim.x * blockDim.x) {
        T sum = g[q];
        for (int z = 1; z < splits; ++z) sum += g[(long long)z * count + q];
        w[q] += sum * scale;
    }
}

// C = op(A) @ op(B), 16x16 shared-memory tiles. Launched as grid
// (ceil(M/16), ceil(N/16), splits), block (16, 16): rows on grid.x, which has
// no 65535 limit. TA: A is stored (K, M) and used transposed; TB: B is stored
// (N, K) and used transposed; every load is coalesced along the stored rows.
// With splits > 1, block z sums K rows [z*kc, (z+1)*kc) into the partial
// C + z*M*N (sgd_update adds the partials): a weight gradient's K is the batch's
// rows, and one block per output tile walking a million rows would be serial.
template <typename T, int TA, int TB>
__global__ void gemm_tiled(int M, int N, int K, int kc, const T* __restrict__ A, const T* __restrict__ B,
                           T* __restrict__ C)
{
    __shared__ T As[16][17];  // As[r][k]: row r of op(A)'s tile, column k
    __shared__ T Bs[16][17];  // Bs[k][c]
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int r0 = blockIdx.x * 16, c0 = blockIdx.y * 16;
    const int k_begin = blockIdx.z * kc, k_end = min(K, k_begin + kc);
    T acc = T(0);
    for (int t = k_begin; t < k_end; t += 16) {
        if (TA) {  // A (K, M): thread tx walks M, adjacent in memory
            const int k = t + ty, r = r0 + tx;
            As[tx][ty] = (k < k_end && r < M) ? A[(long long)k * M + r] : T(0);
        } else {  // A (M, K): thread tx walks K
            const int r = r0 + ty, k = t + tx;
            As[ty][tx] = (r < M && k < k_end) ? A[(long long)r * K + k] : T(0);
        }
        if (TB) {  // B (N, K): thread tx walks K
            const int c = c0 + ty, k = t + tx;
            Bs[tx][ty] = (c < N && k < k_end) ? B[(long long)c * K + k] : T(0);
        } else {  // B (K, N): thread tx walks N
            const int k = t + ty, c = c0 + tx;
            Bs[ty][tx] = (k < k_end && c < N) ? B[(long long)k * N + c] : T(0);
        }
        __syncthreads();
#pragma unroll
        for (int q = 0; q < 16; ++q) acc += As[ty][q] * Bs[q][tx];
        __syncthreads();
    }
    const int row = r0 + ty, col = c0 + tx;
    if (row < M && col < N) C[(long long)blockIdx.z * M * N + (long long)row * N + col] = acc;
}

// A whole report interval in one launch: one thread block, everything in
// shared memory. sizes: n_0..n_L (L <= SN_MAX_LAYERS). W, B: all layers'
// weights and biases concatenated, row-major, updated in place. X (n_rows,
// n_0), Y (n_rows, n_L). batch_size <= 0: full batch. err0 receives sum |y - a|
// over the first iteration's batch. Dynamic shared memory:
// (|W| + |B| + 2 * m_max * sum(n_k)) * sizeof(T).
template <typename T>
__global__ void train_small(const T* __restrict__ X, const T* __restrict__ Y, T* W, T* B,
                            const int* __restrict__ sizes, int L, int n_rows, long long start,
                            int iterations, int batch_size, double learning_rate, int bce, int mean,
                            int use_bias, double* err0)
{
    extern __shared__ double sn_smem[];  // double: aligned for either T
    __shared__ int n[SN_MAX_LAYERS + 1], woff[SN_MAX_LAYERS + 1], boff[SN_MAX_LAYERS + 1];
    __shared__ int aoff[SN_MAX_LAYERS + 2];
    __shared__ double err_acc;
    const int tid = threadIdx.x, nt = blockDim.x;
    const bool full = batch_size <= 0 || batch_size >= n_rows;
    const int m_max = full ? n_rows : batch_size;
    if (tid == 0) {
        int w = 0, b = 0, a = 0;
        for (int k = 0; k <= L; ++k) n[k] = sizes[k];
        for (int k = 0; k < L; ++k) {
            woff[k] = w;
            w += n[k] * n[k + 1];
            boff[k] = b;
            b += n[k + 1];
        }
        woff[L] = w;
        boff[L] = b;
        for (int k = 0; k <= L; ++k) {
            aoff[k] = a;
            a += m_max * n[k];
        }
        aoff[L + 1] = a;
        err_acc = 0.0;
    }
    __syncthreads();
    const int nW = woff[L], nB = boff[L], nA = aoff[L + 1];
    T* sW = reinterpret_cast<T*>(sn_smem);
    T* sB = sW + nW;
    T* sA = sB + nB;
    T* sD = sA + nA;  // deltas: the same layout as the activations
    for (int q = tid; q < nW; q += nt) sW[q] = W[q];
    if (use_bias)
        for (int q = tid; q < nB; q += nt) sB[q] = B[q];
    const int n_batches = full ? 1 : (n_rows + batch_size - 1) / batch_size;
    int loaded = -1;
    int bidx = full ? 0 : (int)(start % n_batches);  // advanced by one per iteration: no 64-bit modulo
    int scale_m = -1;  // the batch size `scale` was computed for (only the last batch differs)
    T scale = T(0);
    __syncthreads();
    for (int it = 0; it < iterations; ++it, bidx = (full || bidx + 1 == n_batches) ? 0 : bidx + 1) {
        const int r0 = full ? 0 : bidx * batch_size;
        const int m = (full ? n_rows : min(r0 + batch_size, n_rows)) - r0;
        if (bidx != loaded) {  // the same for every thread: the barrier is safe
            for (int q = tid; q < m * n[0]; q += nt) sA[q] = X[(long long)r0 * n[0] + q];
            loaded = bidx;
            __syncthreads();
        }
        // forward: a[k+1] = sigmoid(a[k] @ W[k] (+ b[k]))
        for (int k = 0; k < L; ++k) {
            const int nin = n[k], nout = n[k + 1];
            const T* ai = sA + aoff[k];
            T* ao = sA + aoff[k + 1];
            const T* w = sW + woff[k];
            for (int q = tid; q < m * nout; q += nt) {
                const int i = q / nout, j = q % nout;
                T s = use_bias ? sB[boff[k] + j] : T(0);
                for (int p = 0; p < nin; ++p) s += ai[i * nin + p] * w[p * nout + j];
                ao[q] = sn_sigmoid(s);
            }
            __syncthreads();
        }
        // output delta, and the reported error on the first iteration
        {
            const int nL = n[L];
            const T* a = sA + aoff[L];
            T* d = sD + aoff[L];
            double part = 0.0;
            for (int q = tid; q < m * nL; q += nt) {
                const int i = q / nL, j = q % nL;
                const T av = a[q];
                const T e = Y[(long long)(r0 + i) * nL + j] - av;
                part += fabs((double)e);
                d[q] = bce ? e : e * (av * (T(1) - av));
            }
            if (it == 0) atomicAdd(&err_acc, part);
        }
        __syncthreads();
        // hidden deltas: d[k] = (d[k+1] @ W[k].T) * a[k]*(1-a[k]), from the output down
        for (int k = L - 1; k >= 1; --k) {
            const int nin = n[k], nout = n[k + 1];
            const T* a = sA + aoff[k];
            T* d = sD + aoff[k];
            const T* dn = sD + aoff[k + 1];
            const T* w = sW + woff[k];
            for (int q = tid; q < m * nin; q += nt) {
                const int i = q / nin, p = q % nin;
                T s = T(0);
                for (int j = 0; j < nout; ++j) s += dn[i * nout + j] * w[p * nout + j];
                const T av = a[q];
                d[q] = s * (av * (T(1) - av));
            }
            __syncthreads();
        }
        // gradient step for every layer at once (all deltas are computed; nothing reads W here)
        if (m != scale_m) {  // the same for every thread
            scale = (T)(mean ? learning_rate / m : learning_rate);
            scale_m = m;
        }
        for (int q = tid; q < nW; q += nt) {
            int k = 0;
            while (q >= woff[k + 1]) ++k;
            const int nin = n[k], nout = n[k + 1];
            const int local = q - woff[k], p = local / nout, j = local % nout;
            const T* a = sA + aoff[k];
            const T* d = sD + aoff[k + 1];
            T g = T(0);
            for (int i = 0; i < m; ++i) g += a[i * nin + p] * d[i * nout + j];
            sW[q] += g * scale;
        }
        if (use_bias) {
            for (int q = tid; q < nB; q += nt) {
                int k = 0;
                while (q >= boff[k + 1]) ++k;
                const int nout = n[k + 1], j = q - boff[k];
                const T* d = sD + aoff[k + 1];
                T g = T(0);
                for (int i = 0; i < m; ++i) g += d[i * nout + j];
                sB[q] += g * scale;
            }
        }
        __syncthreads();
    }
    for (int q = tid; q < nW; q += nt) W[q] = sW[q];
    if (use_bias)
        for (int q = tid; q < nB; q += nt) B[q] = sB[q];
    if (tid == 0) *err0 = err_acc;
}
