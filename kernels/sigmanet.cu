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
//   * gemm_tiled: GEMMs of our own with the epilogues fused in, so a whole
//     iteration can be captured as a CUDA graph (CuPy refuses cuBLAS calls
//     during stream capture) in five to seven launches for two layers;
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

// What gemm_tiled does with each output element v = (op(A) @ op(B))[row, col].
#define SN_EPI_STORE 0     // C = v; with a split, into the partial C + z*M*N
#define SN_EPI_SIGMOID 1   // C = sigmoid(v + E[col]) (E: the bias, or null): the forward layer
#define SN_EPI_DSIGMOID 2  // C = v * E*(1-E) (E: the activations): a hidden delta
#define SN_EPI_SGD 3       // C += scale * v (C: the weights; no split): the step

// C = op(A) @ op(B) with an epilogue, for the CUDA-graph iteration (CuPy
// refuses cuBLAS during stream capture). Tiles of (16 RM) x (16 RN) outputs,
// 16 x 16 threads each computing RM x RN of them from registers, K in steps of
// 16 through shared memory. Launched as grid (ceil(M/16RM), ceil(N/16RN),
// splits), block (16, 16): rows on grid.x, which has no 65535 limit. TA: A is
// stored (K, M) and used transposed; TB: B is stored (N, K) and used
// transposed; every load walks the stored rows, so each is coalesced. With
// splits > 1 block z sums K rows [z*kc, (z+1)*kc) (a weight gradient's K is
// the batch's rows, and one block per output tile walking a million rows would
// be serial); sgd_update adds the partials.
template <typename T, int TA, int TB, int RM, int RN, int EPI>
__global__ void __launch_bounds__(256)
    gemm_tiled(int M, int N, int K, int kc, const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C,
               const T* __restrict__ E, T scale)
{
    constexpr int BM = 16 * RM, BN = 16 * RN, BK = 16;
    __shared__ T As[BK][BM + 1];  // As[k][r]: op(A)'s tile, K-major
    __shared__ T Bs[BK][BN + 1];  // Bs[k][c]
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
    const int r0 = blockIdx.x * BM, c0 = blockIdx.y * BN;
    const int k_begin = blockIdx.z * kc, k_end = min(K, k_begin + kc);
    T acc[RM][RN];
#pragma unroll
    for (int i = 0; i < RM; ++i)
#pragma unroll
        for (int j = 0; j < RN; ++j) acc[i][j] = T(0);
    for (int t = k_begin; t < k_end; t += BK) {
#pragma unroll
        for (int s = 0; s < RM; ++s) {  // BM * BK = 256 RM elements of A
            const int e = tid + 256 * s;
            const int k = TA ? e / BM : e % BK, r = TA ? e % BM : e / BK;
            const int gk = t + k, gr = r0 + r;
            As[k][r] = (gk < k_end && gr < M) ? (TA ? A[(long long)gk * M + gr] : A[(long long)gr * K + gk]) : T(0);
        }
#pragma unroll
        for (int s = 0; s < RN; ++s) {  // BK * BN = 256 RN elements of B
            const int e = tid + 256 * s;
            const int k = TB ? e % BK : e / BN, c = TB ? e / BK : e % BN;
            const int gk = t + k, gc = c0 + c;
            Bs[k][c] = (gk < k_end && gc < N) ? (TB ? B[(long long)gc * K + gk] : B[(long long)gk * N + gc]) : T(0);
        }
        __syncthreads();
#pragma unroll
        for (int q = 0; q < BK; ++q) {
            T a[RM], b[RN];
#pragma unroll
            for (int i = 0; i < RM; ++i) a[i] = As[q][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < RN; ++j) b[j] = Bs[q][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < RM; ++i)
#pragma unroll
                for (int j = 0; j < RN; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < RM; ++i) {
        const int row = r0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < RN; ++j) {
            const int col = c0 + tx + 16 * j;
            if (row >= M || col >= N) continue;
            const long long q = (long long)row * N + col;
            const T v = acc[i][j];
            if (EPI == SN_EPI_STORE) {
                C[(long long)blockIdx.z * M * N + q] = v;
            } else if (EPI == SN_EPI_SIGMOID) {
                C[q] = sn_sigmoid(E != nullptr ? v + E[col] : v);
            } else if (EPI == SN_EPI_DSIGMOID) {
                const T av = E[q];
                C[q] = v * (av * (T(1) - av));
            } else {
                C[q] += v * scale;
            }
        }
    }
}

// A shape known at compile time: layer k's width (N0..N4), and the offsets of
// layer k in the weight, bias and per-row activation layouts. With the widths
// constant, train_small's loops unroll and its divisions become
// multiplications: for the seed's 3-4-1 the iteration is a latency chain of
// one warp, so every instruction counts (ncu: one issued every 5.5 cycles).
template <int N0, int N1, int N2, int N3, int N4>
struct SnShape {
    static __device__ __forceinline__ constexpr int n(int k)
    {
        return k == 0 ? N0 : k == 1 ? N1 : k == 2 ? N2 : k == 3 ? N3 : N4;
    }
    static __device__ __forceinline__ constexpr int w_off(int k)
    {
        int s = 0;
        for (int i = 0; i < k; ++i) s += n(i) * n(i + 1);
        return s;
    }
    static __device__ __forceinline__ constexpr int b_off(int k)
    {
        int s = 0;
        for (int i = 1; i <= k; ++i) s += n(i);
        return s;
    }
    static __device__ __forceinline__ constexpr int a_off(int k)  // times the batch's rows
    {
        int s = 0;
        for (int i = 0; i < k; ++i) s += n(i);
        return s;
    }
};

// A whole report interval in one launch: one thread block, everything in
// shared memory. sizes: n_0..n_L (L <= SN_MAX_LAYERS). W, B: all layers'
// weights and biases concatenated, row-major, updated in place. X (n_rows,
// n_0), Y (n_rows, n_L). batch_size <= 0: full batch. err0 receives sum |y - a|
// over the first iteration's batch. Dynamic shared memory:
// (|W| + |B| + 2 * m_max * sum(n_k)) * sizeof(T).
// LF > 0: the shape is fixed at compile time, L == LF <= 4 and n_k == N<k>
// (sizes and L must agree); LF == 0 reads it at run time.
template <typename T, int LF = 0, int N0 = 0, int N1 = 0, int N2 = 0, int N3 = 0, int N4 = 0>
__global__ void train_small(const T* __restrict__ X, const T* __restrict__ Y, T* W, T* B,
                            const int* __restrict__ sizes, int L, int n_rows, long long start,
                            int iterations, int batch_size, double learning_rate, int bce, int mean,
                            int use_bias, double* err0)
{
    using S = SnShape<N0, N1, N2, N3, N4>;
    extern __shared__ double sn_smem[];  // double: aligned for either T
    __shared__ int n[SN_MAX_LAYERS + 1], woff[SN_MAX_LAYERS + 1], boff[SN_MAX_LAYERS + 1];
    __shared__ int aoff[SN_MAX_LAYERS + 2];
    __shared__ double err_acc;
    const int tid = threadIdx.x, nt = blockDim.x;
    const bool full = batch_size <= 0 || batch_size >= n_rows;
    const int m_max = full ? n_rows : batch_size;
    const int LL = LF > 0 ? LF : L;
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
// layer k's width and offsets: constants when the shape is fixed, else the shared tables
#define SN_N(k) (LF > 0 ? S::n(k) : n[k])
#define SN_WOFF(k) (LF > 0 ? S::w_off(k) : woff[k])
#define SN_BOFF(k) (LF > 0 ? S::b_off(k) : boff[k])
#define SN_AOFF(k) (LF > 0 ? m_max * S::a_off(k) : aoff[k])
    const int nW = SN_WOFF(LL), nB = SN_BOFF(LL), nA = SN_AOFF(LL + 1);
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
            for (int q = tid; q < m * SN_N(0); q += nt) sA[q] = X[(long long)r0 * SN_N(0) + q];
            loaded = bidx;
            __syncthreads();
        }
        // forward: a[k+1] = sigmoid(a[k] @ W[k] (+ b[k]))
#pragma unroll
        for (int k = 0; k < LL; ++k) {
            const int nin = SN_N(k), nout = SN_N(k + 1);
            const T* ai = sA + SN_AOFF(k);
            T* ao = sA + SN_AOFF(k + 1);
            const T* w = sW + SN_WOFF(k);
            for (int q = tid; q < m * nout; q += nt) {
                const int i = q / nout, j = q % nout;
                T s = use_bias ? sB[SN_BOFF(k) + j] : T(0);
#pragma unroll
                for (int p = 0; p < nin; ++p) s += ai[i * nin + p] * w[p * nout + j];
                ao[q] = sn_sigmoid(s);
            }
            __syncthreads();
        }
        // output delta, and the reported error on the first iteration
        {
            const int nL = SN_N(LL);
            const T* a = sA + SN_AOFF(LL);
            T* d = sD + SN_AOFF(LL);
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
#pragma unroll
        for (int k = LL - 1; k >= 1; --k) {
            const int nin = SN_N(k), nout = SN_N(k + 1);
            const T* a = sA + SN_AOFF(k);
            T* d = sD + SN_AOFF(k);
            const T* dn = sD + SN_AOFF(k + 1);
            const T* w = sW + SN_WOFF(k);
            for (int q = tid; q < m * nin; q += nt) {
                const int i = q / nin, p = q % nin;
                T s = T(0);
#pragma unroll
                for (int j = 0; j < nout; ++j) s += dn[i * nout + j] * w[p * nout + j];
                const T av = a[q];
                d[q] = s * (av * (T(1) - av));
            }
            __syncthreads();
        }
        // gradient step for every layer (all deltas are computed; nothing reads W here)
        if (m != scale_m) {  // the same for every thread
            scale = (T)(mean ? learning_rate / m : learning_rate);
            scale_m = m;
        }
#pragma unroll
        for (int k = 0; k < LL; ++k) {
            const int nin = SN_N(k), nout = SN_N(k + 1);
            const T* a = sA + SN_AOFF(k);
            const T* d = sD + SN_AOFF(k + 1);
            T* w = sW + SN_WOFF(k);
            for (int q = tid; q < nin * nout; q += nt) {
                const int p = q / nout, j = q % nout;
                T g = T(0);
                for (int i = 0; i < m; ++i) g += a[i * nin + p] * d[i * nout + j];
                w[q] += g * scale;
            }
            if (use_bias) {
                T* b = sB + SN_BOFF(k);
                for (int j = tid; j < nout; j += nt) {
                    T g = T(0);
                    for (int i = 0; i < m; ++i) g += d[i * nout + j];
                    b[j] += g * scale;
                }
            }
        }
        __syncthreads();
    }
#undef SN_N
#undef SN_WOFF
#undef SN_BOFF
#undef SN_AOFF
    for (int q = tid; q < nW; q += nt) W[q] = sW[q];
    if (use_bias)
        for (int q = tid; q < nB; q += nt) B[q] = sB[q];
    if (tid == 0) *err0 = err_acc;
}
