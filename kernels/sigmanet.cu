// sigmanet CUDA kernels, compiled at run time by CuPy (NVRTC), once per process
// and dtype (float and double instances through name_expressions).
//
// Layout: every matrix is row-major and contiguous. m = rows in the batch,
// n_k = units in layer k; W[k] is (n_k, n_{k+1}), activations a[k] and
// deltas d[k] are (m, n_k).
//
// The step's pieces are written once, as __device__ functions, and every
// engine calls them (sigmanet._plan and optimizers.py state the same rules):
//   * sn_sigmoid, sn_softmax_row: the activations;
//   * sn_loss_term: one output's share of a row's loss (half the squared
//     error, or the cross-entropies with probabilities clipped to [eps, 1-eps]);
//   * sn_step_scalars: a step's learning rate (invscaling from the global
//     iteration), reduction and Adam's bias correction, from the settings
//     block (SN_CFG_*) and the step counters;
//   * sn_update_one: one parameter's optimizer step (sgd, momentum, nesterov,
//     adam; scikit-learn's rules, as optimizers.update and numba's update_one).
//
// Four groups of kernels:
//   * epilogues around cuBLAS GEMMs (the eager engine): forward_sigmoid,
//     output_delta, hidden_delta, sgd_update;
//   * the graph iteration's kernels: gemm_tiled (GEMMs of our own with the
//     epilogue fused in: CuPy refuses cuBLAS during stream capture),
//     output_step (softmax, the loss, the error and the delta of the output
//     layer, and the step counters' advance) and optimizer_step (any rule,
//     with split partial sums); per-step scalars come from device memory, so
//     a replayed graph follows the schedule and Adam's correction;
//   * train_small: a whole report interval in one launch, one thread block,
//     weights, optimizer slots, activations and deltas in shared memory;
//   * train_warp: the same for networks of one hidden layer whose batch fits
//     one warp (the seed's 3-4-1): weights in registers, activations passed
//     by warp shuffles, no block barrier.
//
// The sigmoid is the exact 1 / (1 + exp(-z)): exp(-z) overflowing to inf gives
// the correct 0, so no clamping is needed.

// The layer cap comes from the compiler command line (-DSN_MAX_LAYERS=...),
// from MAX_LAYERS in src/sigmanet/backends/cupy/_cuda.py: one constant, one place.
#ifndef SN_MAX_LAYERS
#error "compile with -DSN_MAX_LAYERS=<n> (sigmanet.backends.cupy._cuda.MAX_LAYERS)"
#endif

// Dynamic shared memory, declared through a macro so that the CPU emulator (tests/cuda_emulation)
// can give each block a buffer of its own.
#ifndef SN_DYNAMIC_SHARED
#define SN_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

// Codes shared with sigmanet._plan (OUTPUT_CODE, LOSS_CODE, OPTIMIZER_CODE).
#define SN_OUT_SIGMOID 0
#define SN_OUT_SOFTMAX 1
#define SN_OUT_IDENTITY 2
#define SN_LOSS_MSE 0
#define SN_LOSS_BCE 1
#define SN_LOSS_CE 2
#define SN_OPT_SGD 0
#define SN_OPT_MOMENTUM 1
#define SN_OPT_NESTEROV 2
#define SN_OPT_ADAM 3

// The settings block: doubles in device memory (CFG_INDEX in _cuda.py names the same slots).
#define SN_CFG_LR 0          // learning_rate * lr_scale
#define SN_CFG_INVSCALING 1  // 1: lr / (epoch * rows + 1) ** power_t
#define SN_CFG_POWER_T 2
#define SN_CFG_ROWS 3     // rows of the table (invscaling's t_ counts them per epoch)
#define SN_CFG_BATCHES 4  // batches per epoch
#define SN_CFG_OPTIMIZER 5
#define SN_CFG_MOMENTUM 6
#define SN_CFG_BETA1 7
#define SN_CFG_BETA2 8
#define SN_CFG_EPSILON 9
#define SN_CFG_ALPHA 10  // L2 on the weights, not the biases
#define SN_CFG_R 11      // the reduction factor of a full batch (1, or 1 / its rows or weights)
#define SN_CFG_SIZE 12

// The step counters (long long, in device memory): [0] the optimizer's steps including the one
// being taken (Adam's t), [1] the global iteration being run. output_step advances both.
#define SN_COUNT_STEP 0
#define SN_COUNT_ITERATION 1

// The accumulators the graph iteration fills (double, in device memory):
#define SN_ACC_ERROR 0   // sum sw |y - a|
#define SN_ACC_WEIGHT 1  // sum sw (the rows when unweighted)
#define SN_ACC_LOSS 2    // sum sw l
#define SN_ACC_SQUARES 3 // sum of the weights' squares before their step (the L2 penalty)
#define SN_ACC_SIZE 4

__device__ __forceinline__ float sn_sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }
__device__ __forceinline__ double sn_sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }
__device__ __forceinline__ float sn_exp(float z) { return expf(z); }
__device__ __forceinline__ double sn_exp(double z) { return exp(z); }

// softmax over one row of n, in place: z - max, exp, divided by the sum (as reference.activate).
template <typename T>
__device__ __forceinline__ void sn_softmax_row(T* z, int n)
{
    T top = z[0];
    for (int j = 1; j < n; ++j) top = z[j] > top ? z[j] : top;
    T total = T(0);
    for (int j = 0; j < n; ++j) {
        const T e = sn_exp(z[j] - top);
        z[j] = e;
        total += e;
    }
    for (int j = 0; j < n; ++j) z[j] /= total;
}

// One output's share of its row's loss, in double (reference.row_losses).
__device__ __forceinline__ double sn_loss_term(double y, double a, int loss, double eps)
{
    if (loss == SN_LOSS_MSE) {
        const double e = y - a;
        return 0.5 * e * e;
    }
    const double p = a < eps ? eps : (a > 1.0 - eps ? 1.0 - eps : a);
    if (loss == SN_LOSS_BCE) return -(y * log(p) + (1.0 - y) * log1p(-p));
    return -y * log(p);
}

// The output delta of one element: y - a, times a (1 - a) for the seed's squared error on a sigmoid.
template <typename T>
__device__ __forceinline__ T sn_output_delta(T y, T a, int derivative)
{
    const T e = y - a;
    return derivative ? e * (a * (T(1) - a)) : e;
}

// A step's scalars in the parameters' type, computed in double from the settings (as the host does).
template <typename T>
struct SnStep {
    T lr_r;     // lr * r: plain and momentum steps
    T neg_r;    // -r: Adam's gradient
    T lr_corr;  // -lr * sqrt(1 - b2^t) / (1 - b1^t): Adam's step
    T mu, b1, one_b1, b2, one_b2, eps;
    int optimizer;
};

// t: the step's number (1 for the first), j: the global iteration, r: the reduction factor.
template <typename T>
__device__ __forceinline__ SnStep<T> sn_step_scalars(const double* cfg, long long t, long long j, double r)
{
    double lr = cfg[SN_CFG_LR];
    if (cfg[SN_CFG_INVSCALING] != 0.0) {
        const long long epoch = j / (long long)cfg[SN_CFG_BATCHES];
        lr = lr / pow((double)epoch * cfg[SN_CFG_ROWS] + 1.0, cfg[SN_CFG_POWER_T]);
    }
    SnStep<T> s;
    s.optimizer = (int)cfg[SN_CFG_OPTIMIZER];
    const double b1 = cfg[SN_CFG_BETA1], b2 = cfg[SN_CFG_BETA2];
    const double corr =
        s.optimizer == SN_OPT_ADAM ? sqrt(1.0 - pow(b2, (double)t)) / (1.0 - pow(b1, (double)t)) : 1.0;
    s.lr_r = (T)(lr * r);
    s.neg_r = (T)(-r);
    s.lr_corr = (T)(-(lr * corr));
    s.mu = (T)cfg[SN_CFG_MOMENTUM];
    s.b1 = (T)b1;
    s.one_b1 = (T)(1.0 - b1);
    s.b2 = (T)b2;
    s.one_b2 = (T)(1.0 - b2);
    s.eps = (T)cfg[SN_CFG_EPSILON];
    return s;
}

// Parameter par's new value from its ascent sum g (a.T @ d, or a column sum of d), by the rule in s.
// decay: alpha for weights, 0 for biases. s0, s1: this element's slots (velocity; Adam's m and v).
// The order of operations is optimizers.update's, so float32 rounds where NumPy does.
template <typename T>
__device__ __forceinline__ T sn_update_one(T par, T g, T decay, T* s0, T* s1, const SnStep<T>& s)
{
    if (decay != T(0)) g = g - decay * par;
    if (s.optimizer == SN_OPT_ADAM) {
        const T grad = g * s.neg_r;
        const T m = s.b1 * *s0 + s.one_b1 * grad;
        const T v = s.b2 * *s1 + s.one_b2 * (grad * grad);
        *s0 = m;
        *s1 = v;
        return par + (m / (sqrt(v) + s.eps)) * s.lr_corr;
    }
    if (s.lr_r != T(1)) g = g * s.lr_r;  // the seed's step is 1: W += a.T @ d, bit for bit
    if (s.optimizer == SN_OPT_SGD) return par + g;
    const T vel = s.mu * *s0 + g;
    *s0 = vel;
    if (s.optimizer == SN_OPT_MOMENTUM) return par + vel;
    return par + (s.mu * vel + g);  // nesterov
}

// Sums v over the block into *target (one atomic per block); every thread of the block calls it.
// `partial` is the caller's __shared__ double[32].
__device__ __forceinline__ void sn_block_add(double v, double* target, double* partial)
{
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // partial may still be read by an earlier call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)((blockDim.x + 31) / 32) ? partial[lane] : 0.0;
        for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
        if (lane == 0) atomicAdd(target, v);
    }
}

// ---------------------------------------------------------------------------------------------
// Epilogues around cuBLAS GEMMs (the eager engine)

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
// null, adds sum |y - a| to *err (one atomic per block). Blocks of whole warps.
template <typename T>
__global__ void output_delta(const T* __restrict__ y, const T* __restrict__ a, T* __restrict__ d,
                             long long count, int bce, double* err)
{
    __shared__ double partial[32];
    double acc = 0.0;
    for (long long q = blockIdx.x * (long long)blockDim.x + threadIdx.x; q < count;
         q += (long long)gridDim.x * blockDim.x) {
        const T av = a[q];
        acc += fabs((double)(y[q] - av));
        d[q] = sn_output_delta(y[q], av, !bce);
    }
    if (err == nullptr) return;
    sn_block_add(acc, err, partial);
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

// ---------------------------------------------------------------------------------------------
// The graph iteration's kernels

// The output layer of a batch of m rows, one thread per row: softmax in place (output 1), then
// d = sw * (y - a) (* a (1 - a) when `derivative`), and, when acc is not null, the batch's sums
// (SN_ACC_ERROR, _WEIGHT, _LOSS) added to acc. When counters is not null its first thread advances
// the step counters: this kernel opens each iteration's step. sw: the rows' weights, or null.
template <typename T>
__global__ void output_step(const T* __restrict__ y, T* __restrict__ a, T* __restrict__ d, const T* __restrict__ sw,
                            long long m, int n, int output, int loss, int derivative, double eps, double* acc,
                            long long* counters)
{
    __shared__ double partial[32];
    if (counters != nullptr && blockIdx.x == 0 && threadIdx.x == 0) {
        counters[SN_COUNT_STEP] += 1;
        counters[SN_COUNT_ITERATION] += 1;
    }
    double err = 0.0, lsum = 0.0, wsum = 0.0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < m; i += (long long)gridDim.x * blockDim.x) {
        T* ai = a + i * n;
        const T* yi = y + i * n;
        T* di = d + i * n;
        if (output == SN_OUT_SOFTMAX) sn_softmax_row(ai, n);
        const T w = sw != nullptr ? sw[i] : T(1);
        double e_row = 0.0, l_row = 0.0;
        for (int j = 0; j < n; ++j) {
            const T av = ai[j], yv = yi[j];
            e_row += fabs((double)(yv - av));
            if (acc != nullptr) l_row += sn_loss_term((double)yv, (double)av, loss, eps);
            const T dv = sn_output_delta(yv, av, derivative);
            di[j] = sw != nullptr ? dv * w : dv;
        }
        err += e_row * (double)w;
        lsum += l_row * (double)w;
        wsum += (double)w;
    }
    if (acc == nullptr) return;
    sn_block_add(err, acc + SN_ACC_ERROR, partial);
    sn_block_add(wsum, acc + SN_ACC_WEIGHT, partial);
    sn_block_add(lsum, acc + SN_ACC_LOSS, partial);
}

// One parameter's step by the optimizer's rule: g holds `splits` partial ascent sums laid out one
// after another, summed in a fixed order; s0, s1: its slots (null where the rule has none);
// decayed: a weight (alpha applies), not a bias. The step's scalars come from cfg and counters
// (device memory, so a graph replay follows the schedule); sumsq (or null) receives the sum of the
// parameter's squares before the step, for the L2 penalty's report.
template <typename T>
__global__ void optimizer_step(T* __restrict__ p, const T* __restrict__ g, int splits, T* s0, T* s1, long long count,
                               int decayed, const double* __restrict__ cfg, const long long* __restrict__ counters,
                               double* sumsq)
{
    __shared__ double partial[32];
    const SnStep<T> st = sn_step_scalars<T>(cfg, counters[SN_COUNT_STEP], counters[SN_COUNT_ITERATION], cfg[SN_CFG_R]);
    const T decay = decayed ? (T)cfg[SN_CFG_ALPHA] : T(0);
    double sq = 0.0;
    for (long long q = blockIdx.x * (long long)blockDim.x + threadIdx.x; q < count;
         q += (long long)gridDim.x * blockDim.x) {
        T sum = g[q];
        for (int z = 1; z < splits; ++z) sum += g[(long long)z * count + q];
        const T par = p[q];
        sq += (double)par * (double)par;
        p[q] = sn_update_one(par, sum, decay, s0 != nullptr ? s0 + q : nullptr, s1 != nullptr ? s1 + q : nullptr, st);
    }
    if (sumsq != nullptr) sn_block_add(sq, sumsq, partial);
}

// What gemm_tiled and gemm_warp do with each output element v = (op(A) @ op(B))[row, col].
#define SN_EPI_STORE 0     // C = v; with a split, into the partial C + z*M*N
#define SN_EPI_SIGMOID 1   // C = sigmoid(v + E[col]) (E: the bias, or null): a sigmoid layer
#define SN_EPI_DSIGMOID 2  // C = v * E*(1-E) (E: the activations): a hidden delta
#define SN_EPI_STEP 3      // C = the optimizer's step of C from v (C: the parameter; no split)
#define SN_EPI_BIAS 4      // C = v + E[col] (E: the bias, or null): an identity or softmax output's input

// The value an epilogue other than the step stores for v at (row, col): e is E[row, col] for the
// hidden delta (the caller loads it, alone or in a vector), unused otherwise.
template <typename T, int EPI>
__device__ __forceinline__ T sn_epilogue_value(T v, const T* __restrict__ E, int col, T e)
{
    if (EPI == SN_EPI_SIGMOID) return sn_sigmoid(E != nullptr ? v + E[col] : v);
    if (EPI == SN_EPI_DSIGMOID) return v * (e * (T(1) - e));
    if (EPI == SN_EPI_BIAS) return E != nullptr ? v + E[col] : v;
    return v;
}

// The step epilogue's scalars (and `decay`: alpha for a decayed weight), read once per thread.
template <typename T, int EPI>
__device__ __forceinline__ SnStep<T> sn_epilogue_scalars(const double* __restrict__ cfg,
                                                         const long long* __restrict__ counters, int decayed, T& decay)
{
    SnStep<T> st{};
    if (EPI == SN_EPI_STEP) {
        st = sn_step_scalars<T>(cfg, counters[SN_COUNT_STEP], counters[SN_COUNT_ITERATION], cfg[SN_CFG_R]);
        decay = decayed ? (T)cfg[SN_CFG_ALPHA] : T(0);
    }
    return st;
}

// One output element through the epilogue, in bounds (row < M, col < N); a split's part is blockIdx.z.
template <typename T, int EPI>
__device__ __forceinline__ void sn_epilogue_one(T v, int row, int col, int M, int N, T* __restrict__ C,
                                                const T* __restrict__ E, T* s0, T* s1, T decay, const SnStep<T>& st)
{
    const long long q = (long long)row * N + col;
    if (EPI == SN_EPI_STORE) {
        C[(long long)blockIdx.z * M * N + q] = v;
    } else if (EPI == SN_EPI_STEP) {
        C[q] = sn_update_one(C[q], v, decay, s0 != nullptr ? s0 + q : nullptr, s1 != nullptr ? s1 + q : nullptr, st);
    } else {
        C[q] = sn_epilogue_value<T, EPI>(v, E, col, EPI == SN_EPI_DSIGMOID ? E[q] : T(0));
    }
}

// C = op(A) @ op(B) with an epilogue, for the CUDA-graph iteration (CuPy
// refuses cuBLAS during stream capture). Tiles of (16 RM) x (16 RN) outputs,
// 16 x 16 threads each computing RM x RN of them from registers, K in steps of
// 16 through shared memory. Launched as grid (ceil(M/16RM), ceil(N/16RN),
// splits), block (16, 16): rows on grid.x, which has no 65535 limit. TA: A is
// stored (K, M) and used transposed; TB: B is stored (N, K) and used
// transposed; every load walks the stored rows, so each is coalesced. With
// splits > 1 block z sums K rows [z*kc, (z+1)*kc) (a weight gradient's K is
// the batch's rows, and one block per output tile walking a million rows would
// be serial); optimizer_step adds the partials. The step epilogue takes the
// parameter's slots (s0, s1), whether it decays (a weight), and the settings
// and counters (see optimizer_step); the other epilogues pass nulls.
template <typename T, int TA, int TB, int RM, int RN, int EPI>
__global__ void __launch_bounds__(256)
    gemm_tiled(int M, int N, int K, int kc, const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C,
               const T* __restrict__ E, T* s0, T* s1, int decayed, const double* __restrict__ cfg,
               const long long* __restrict__ counters)
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
    T decay = T(0);
    const SnStep<T> st = sn_epilogue_scalars<T, EPI>(cfg, counters, decayed, decay);
#pragma unroll
    for (int i = 0; i < RM; ++i) {
        const int row = r0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < RN; ++j) {
            const int col = c0 + tx + 16 * j;
            if (row < M && col < N) sn_epilogue_one<T, EPI>(acc[i][j], row, col, M, N, C, E, s0, s1, decay, st);
        }
    }
}

// 16 bytes of T: one vector load or store (4 floats, 2 doubles).
template <typename T>
struct alignas(16) SnVec {
    static constexpr int n = 16 / sizeof(T);
    T v[n];
};

// Vector accesses go through macros, so that the CPU emulator can check every address's alignment.
#ifndef SN_VEC_LOAD
#define SN_VEC_LOAD(T, p) (*reinterpret_cast<const SnVec<T>*>(p))
#define SN_VEC_STORE(T, p, x) (*reinterpret_cast<SnVec<T>*>(p) = (x))
#endif

__device__ __forceinline__ bool sn_aligned16(const void* p) { return ((unsigned long long)p & 15ull) == 0; }

// gemm_warp's staging of one operand's BK x BW tile (k, w) for the step of K at t: its L vectors a
// thread from global memory into registers, then into the shared tile[k][w]. ALONG: the operand is
// stored (W, K), its rows running along K (op(A) unless TA, op(B) if TB); else stored (K, W). Whole
// vectors where `vec` (the rows keep 16-byte alignment) and the vector is in bounds, else value by value.
template <typename T, int ALONG, int BK, int BW, int NT, int L>
__device__ __forceinline__ void sn_tile_fetch(SnVec<T>* regs, const T* __restrict__ P, int W, int K, int w0, int t,
                                              int k_end, bool vec, int tid)
{
    constexpr int VW = SnVec<T>::n, NV = BK * BW / VW;
#pragma unroll
    for (int s = 0; s < L; ++s) {
        const int e = tid + NT * s;
        if (NV % NT != 0 && e >= NV) break;
        const int k = ALONG ? e % (BK / VW) * VW : e / (BW / VW), w = ALONG ? e / (BK / VW) : e % (BW / VW) * VW;
        const int gk = t + k, gw = w0 + w;
        const long long at = ALONG ? (long long)gw * K + gk : (long long)gk * W + gw;
        if (vec && (ALONG ? gw < W && gk + VW <= k_end : gk < k_end && gw + VW <= W)) {
            regs[s] = SN_VEC_LOAD(T, P + at);
        } else {
#pragma unroll
            for (int j = 0; j < VW; ++j)
                regs[s].v[j] = (ALONG ? gw < W && gk + j < k_end : gk < k_end && gw + j < W) ? P[at + j] : T(0);
        }
    }
}

template <typename T, int ALONG, int BK, int BW, int NT, int L, int LD>
__device__ __forceinline__ void sn_tile_stash(T (*tile)[LD], const SnVec<T>* regs, int tid)
{
    constexpr int VW = SnVec<T>::n, NV = BK * BW / VW;
#pragma unroll
    for (int s = 0; s < L; ++s) {
        const int e = tid + NT * s;
        if (NV % NT != 0 && e >= NV) break;
        if (ALONG) {  // a vector along K lands in one column of the K-major tile
#pragma unroll
            for (int j = 0; j < VW; ++j) tile[e % (BK / VW) * VW + j][e / (BK / VW)] = regs[s].v[j];
        } else {
            SN_VEC_STORE(T, &tile[e / (BW / VW)][e % (BW / VW) * VW], regs[s]);
        }
    }
}

// A lane's operands for one step of K in gemm_warp: from a row of a shared tile, W values at `at`
// in each of ITER sub-tiles SUB apart, read 16 bytes at a time.
template <typename T, int ITER, int W, int SUB>
__device__ __forceinline__ void sn_lane_operands(T* out, const T* at)
{
    constexpr int VW = SnVec<T>::n;
#pragma unroll
    for (int i = 0; i < ITER; ++i)
#pragma unroll
        for (int u = 0; u < W; u += VW) {
            const SnVec<T> x = SN_VEC_LOAD(T, at + i * SUB + u);
#pragma unroll
            for (int j = 0; j < VW; ++j) out[i * W + u + j] = x.v[j];
        }
}

// gemm_tiled's product and epilogues, tiled as the public SGEMM work-logs that reach cuBLAS-class
// float32 rates without tensor cores tile theirs, for the graph iteration's shapes to be timed
// against cuBLAS on the device (gpu_check.sh) and against gemm_tiled:
//   * a block of (BM/WM) x (BN/WN) warps computes a BM x BN tile of C, K in steps of BK;
//   * each warp computes a WM x WN tile as WMITER x WNITER sub-tiles of WSUBM x WSUBN, its 32 lanes
//     laid out (32/LX) x LX over each sub-tile, each lane holding TM x TN outputs of every one, so a
//     lane's operands are TM + TN values per step of K and its WMITER TM x WNITER TN products;
//   * 16-byte global loads (VW values) wherever the stored rows keep their alignment (each load
//     falls back to single values at a ragged edge or on a misaligned operand), and 16-byte reads
//     of each lane's operands from shared memory;
//   * two shared buffers: the next tile is fetched into registers while the current one is used,
//     then stored into the other buffer: one barrier per step of K;
//   * the epilogue stores VW outputs at a time (the step, per element).
// Launched as grid (ceil(M/BM), ceil(N/BN), splits), block ((BM/WM) (BN/WN) 32). Arguments, TA,
// TB, the split over K (kc: a multiple of BK) and EPI are gemm_tiled's. A block of 8 warps keeps
// to 128 registers a lane, so two blocks (16 warps) share a multiprocessor whatever ptxas would
// choose (it gave one instance 143 without the bound); 0: no bound on the blocks.
template <typename T, int TA, int TB, int EPI, int BM, int BN, int BK, int WM, int WN, int WNITER, int TM, int TN>
__global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32, (BM / WM) * (BN / WN) >= 8 ? 2 : 0)
    gemm_warp(int M, int N, int K, int kc, const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C,
              const T* __restrict__ E, T* s0, T* s1, int decayed, const double* __restrict__ cfg,
              const long long* __restrict__ counters)
{
    using V = SnVec<T>;
    constexpr int VW = V::n;
    constexpr int NT = (BM / WM) * (BN / WN) * 32;
    constexpr int WMITER = (WM * WN) / (32 * TM * TN * WNITER);
    constexpr int WSUBM = WM / WMITER, WSUBN = WN / WNITER, LX = WSUBN / TN;
    static_assert(BM % WM == 0 && BN % WN == 0 && WMITER >= 1 && WM % WMITER == 0 && WN % WNITER == 0, "tiles");
    static_assert(WSUBN % TN == 0 && 32 % LX == 0 && WSUBM == TM * (32 / LX), "a warp's lanes cover its sub-tile");
    static_assert(BK % VW == 0 && BM % VW == 0 && BN % VW == 0 && TM % VW == 0 && TN % VW == 0, "vector width");
    constexpr int PA = TA ? 0 : VW, PB = TB ? VW : 0;  // a row of padding where a tile is stored transposed
    constexpr int NVA = BM * BK / VW, NVB = BK * BN / VW;  // vectors in a tile of op(A), of op(B)
    constexpr int LA = (NVA + NT - 1) / NT, LB = (NVB + NT - 1) / NT;
    struct alignas(16) Tiles {
        T a[2][BK][BM + PA];  // a[buffer][k][row]: op(A)'s tile, K-major
        T b[2][BK][BN + PB];  // b[buffer][k][col]
    };
    static_assert(sizeof(Tiles) <= 48 * 1024, "two buffers in static shared memory (48 KB at most)");
    __shared__ Tiles sm;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int wr = warp / (BN / WN), wc = warp % (BN / WN), tr = lane / LX, tc = lane % LX;
    const int r0 = blockIdx.x * BM, c0 = blockIdx.y * BN;
    const int k_begin = blockIdx.z * kc, k_end = min(K, k_begin + kc);
    // whole vectors where the stored rows start 16-byte aligned (kc and the corners are multiples of VW)
    const bool va = sn_aligned16(A) && (TA ? M : K) % VW == 0, vb = sn_aligned16(B) && (TB ? K : N) % VW == 0;
    V ra[LA], rb[LB];  // the next tiles, staged in registers
    // op(A)'s tile runs along K in its stored rows unless TA; op(B)'s only if TB
    auto fetch = [&](int t) {
        sn_tile_fetch<T, !TA, BK, BM, NT, LA>(ra, A, M, K, r0, t, k_end, va, tid);
        sn_tile_fetch<T, TB, BK, BN, NT, LB>(rb, B, N, K, c0, t, k_end, vb, tid);
    };
    auto stash = [&](int buf) {
        sn_tile_stash<T, !TA, BK, BM, NT, LA>(sm.a[buf], ra, tid);
        sn_tile_stash<T, TB, BK, BN, NT, LB>(sm.b[buf], rb, tid);
    };
    T acc[WMITER * TM][WNITER * TN];
#pragma unroll
    for (int x = 0; x < WMITER * TM; ++x)
#pragma unroll
        for (int y = 0; y < WNITER * TN; ++y) acc[x][y] = T(0);
    int buf = 0;
    if (k_begin < k_end) {
        fetch(k_begin);
        stash(0);
    }
    __syncthreads();
    for (int t = k_begin; t < k_end; t += BK) {
        const bool more = t + BK < k_end;
        if (more) fetch(t + BK);  // in flight while this tile is used
#pragma unroll
        for (int q = 0; q < BK; ++q) {
            T a[WMITER * TM], b[WNITER * TN];
            sn_lane_operands<T, WMITER, TM, WSUBM>(a, sm.a[buf][q] + wr * WM + tr * TM);
            sn_lane_operands<T, WNITER, TN, WSUBN>(b, sm.b[buf][q] + wc * WN + tc * TN);
#pragma unroll
            for (int x = 0; x < WMITER * TM; ++x)
#pragma unroll
                for (int y = 0; y < WNITER * TN; ++y) acc[x][y] += a[x] * b[y];
        }
        if (more) stash(buf ^ 1);  // the other buffer: last read before the previous barrier
        __syncthreads();
        buf ^= 1;
    }

    T decay = T(0);
    const SnStep<T> st = sn_epilogue_scalars<T, EPI>(cfg, counters, decayed, decay);
    T* const Cz = EPI == SN_EPI_STORE ? C + (long long)blockIdx.z * M * N : C;
    const bool vc =
        EPI != SN_EPI_STEP && N % VW == 0 && sn_aligned16(Cz) && (EPI != SN_EPI_DSIGMOID || sn_aligned16(E));
#pragma unroll
    for (int x = 0; x < WMITER * TM; ++x) {
        const int row = r0 + wr * WM + x / TM * WSUBM + tr * TM + x % TM;
        if (row >= M) continue;
#pragma unroll
        for (int i = 0; i < WNITER; ++i)
#pragma unroll
            for (int u = 0; u < TN; u += VW) {
                const int col = c0 + wc * WN + i * WSUBN + tc * TN + u;
                if (vc && col + VW <= N) {
                    const long long q = (long long)row * N + col;
                    V e{}, out;
                    if (EPI == SN_EPI_DSIGMOID) e = SN_VEC_LOAD(T, E + q);
#pragma unroll
                    for (int j = 0; j < VW; ++j)
                        out.v[j] = sn_epilogue_value<T, EPI>(acc[x][i * TN + u + j], E, col + j, e.v[j]);
                    SN_VEC_STORE(T, Cz + q, out);
                } else {
#pragma unroll
                    for (int j = 0; j < VW; ++j)
                        if (col + j < N)
                            sn_epilogue_one<T, EPI>(acc[x][i * TN + u + j], row, col + j, M, N, C, E, s0, s1, decay,
                                                    st);
                }
            }
    }
}

// ---------------------------------------------------------------------------------------------
// The single launch: a whole report interval in one thread block

// A shape known at compile time: layer k's width (N0..N4), and the offsets of
// layer k in the weight, bias and per-row activation layouts. With the widths
// constant, train_small's loops unroll and its divisions become
// multiplications.
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

// How many optimizer slots a rule keeps per parameter (optimizers.SLOTS).
__device__ __forceinline__ int sn_slots(int optimizer)
{
    return optimizer == SN_OPT_ADAM ? 2 : optimizer == SN_OPT_SGD ? 0 : 1;
}

// A whole report interval in one launch: one thread block, everything in
// shared memory. sizes: n_0..n_L (L <= SN_MAX_LAYERS). W, B: all layers'
// weights and biases concatenated, row-major, updated in place; S: the
// optimizer's slots, slot k of parameter element e (weights, then biases) at
// S[k * nP + e], nP = |W| + |B| (|B| = 0 without bias), updated in place.
// X (n_rows, n_0), Y (n_rows, n_L), SW (n_rows) or null. batch_size <= 0:
// full batch. cfg: the settings block (SN_CFG_*; SN_CFG_R is not read: each
// batch's reduction is computed here). step: the optimizer's steps before
// this launch. stats (5 doubles) receives the interval's report in
// sigmanet._plan.Stats's layout: the first iteration's error, and the loss of
// the first iteration (or of every one with track_all). Dynamic shared
// memory: (|W| + |B| + slots * nP + 2 * m_max * sum(n_k)) * sizeof(T).
// LF > 0: the shape is fixed at compile time, L == LF <= 4 and n_k == N<k>
// (sizes and L must agree); LF == 0 reads it at run time.
template <typename T, int LF = 0, int N0 = 0, int N1 = 0, int N2 = 0, int N3 = 0, int N4 = 0>
__global__ void train_small(const T* __restrict__ X, const T* __restrict__ Y, const T* __restrict__ SW, T* W, T* B,
                            T* S, const int* __restrict__ sizes, int L, int n_rows, long long start, int iterations,
                            int batch_size, const double* __restrict__ cfg, int output, int loss, int derivative,
                            int mean, int use_bias, int weighted, int track_all, long long step, double eps,
                            double* stats)
{
    using Sh = SnShape<N0, N1, N2, N3, N4>;
    SN_DYNAMIC_SHARED(double, sn_smem);  // double: aligned for either T
    __shared__ int n[SN_MAX_LAYERS + 1], woff[SN_MAX_LAYERS + 1], boff[SN_MAX_LAYERS + 1];
    __shared__ int aoff[SN_MAX_LAYERS + 2];
    __shared__ double red[2][4];  // per iteration (double-buffered): sum sw|e|, sum sw l, sum sw, sum W^2
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
        for (int q = 0; q < 4; ++q) red[0][q] = red[1][q] = 0.0;
    }
    __syncthreads();
// layer k's width and offsets: constants when the shape is fixed, else the shared tables
#define SN_N(k) (LF > 0 ? Sh::n(k) : n[k])
#define SN_WOFF(k) (LF > 0 ? Sh::w_off(k) : woff[k])
#define SN_BOFF(k) (LF > 0 ? Sh::b_off(k) : boff[k])
#define SN_AOFF(k) (LF > 0 ? m_max * Sh::a_off(k) : aoff[k])
    const int nW = SN_WOFF(LL), nB = use_bias ? SN_BOFF(LL) : 0, nA = SN_AOFF(LL + 1);
    const int optimizer = (int)cfg[SN_CFG_OPTIMIZER];
    const int nP = nW + nB, nS = sn_slots(optimizer) * nP;
    const double alpha = cfg[SN_CFG_ALPHA];
    T* sW = reinterpret_cast<T*>(sn_smem);
    T* sB = sW + nW;
    T* sS = sB + nB;
    T* sA = sS + nS;
    T* sD = sA + nA;  // deltas: the same layout as the activations
    for (int q = tid; q < nW; q += nt) sW[q] = W[q];
    for (int q = tid; q < nB; q += nt) sB[q] = B[q];
    for (int q = tid; q < nS; q += nt) sS[q] = S[q];
    const int n_batches = full ? 1 : (n_rows + batch_size - 1) / batch_size;
    int loaded = -1;
    int bidx = full ? 0 : (int)(start % n_batches);  // advanced by one per iteration: no 64-bit modulo
    // the step's scalars are recomputed only when they can change (Adam: every step; invscaling: each
    // epoch; a mean step: when the batch's rows or weights change)
    const bool scalars_vary = optimizer == SN_OPT_ADAM || cfg[SN_CFG_INVSCALING] != 0.0 || (weighted && mean);
    int scalars_m = -1;
    SnStep<T> st{};
    const T decay_w = (T)alpha;
    double s_err = 0.0, s_weight = 0.0, s_loss = 0.0, s_rows = 0.0, s_penalty = 0.0;  // thread 0's report
    __syncthreads();
    for (int it = 0; it < iterations; ++it, bidx = (full || bidx + 1 == n_batches) ? 0 : bidx + 1) {
        const int r0 = full ? 0 : bidx * batch_size;
        const int m = (full ? n_rows : min(r0 + batch_size, n_rows)) - r0;
        const bool want_error = it == 0, want_loss = it == 0 || track_all;
        double* rd = red[it & 1];
        if (bidx != loaded) {  // the same for every thread: the barrier is safe
            for (int q = tid; q < m * SN_N(0); q += nt) sA[q] = X[(long long)r0 * SN_N(0) + q];
            loaded = bidx;
            __syncthreads();
        }
        // forward: a[k+1] = act(a[k] @ W[k] (+ b[k])); the output's act is sigmoid, softmax or identity
#pragma unroll
        for (int k = 0; k < LL; ++k) {
            const int nin = SN_N(k), nout = SN_N(k + 1);
            const T* ai = sA + SN_AOFF(k);
            T* ao = sA + SN_AOFF(k + 1);
            const T* w = sW + SN_WOFF(k);
            const bool sigmoid = k < LL - 1 || output == SN_OUT_SIGMOID;
            for (int q = tid; q < m * nout; q += nt) {
                const int i = q / nout, j = q % nout;
                T s = use_bias ? sB[SN_BOFF(k) + j] : T(0);
#pragma unroll
                for (int p = 0; p < nin; ++p) s += ai[i * nin + p] * w[p * nout + j];
                ao[q] = sigmoid ? sn_sigmoid(s) : s;
            }
            __syncthreads();
        }
        if (output == SN_OUT_SOFTMAX) {
            const int nL = SN_N(LL);
            for (int i = tid; i < m; i += nt) sn_softmax_row(sA + SN_AOFF(LL) + i * nL, nL);
            __syncthreads();
        }
        // the output delta; the error (first iteration), the loss (tracked ones), the batch's weight
        {
            const int nL = SN_N(LL);
            const T* a = sA + SN_AOFF(LL);
            T* d = sD + SN_AOFF(LL);
            double p_err = 0.0, p_loss = 0.0, p_w = 0.0;
            for (int q = tid; q < m * nL; q += nt) {
                const int i = q / nL, j = q % nL;
                const T av = a[q], yv = Y[(long long)(r0 + i) * nL + j];
                const T wt = weighted ? SW[r0 + i] : T(1);
                if (want_error) p_err += fabs((double)(yv - av)) * (double)wt;
                if (want_loss) p_loss += sn_loss_term((double)yv, (double)av, loss, eps) * (double)wt;
                if (j == 0) p_w += (double)wt;
                const T dv = sn_output_delta(yv, av, derivative);
                d[q] = weighted ? dv * wt : dv;
            }
            double p_sq = 0.0;
            if (want_loss && alpha > 0.0)
                for (int q = tid; q < nW; q += nt) p_sq += (double)sW[q] * (double)sW[q];
            if (p_err != 0.0) atomicAdd(&rd[0], p_err);
            if (p_loss != 0.0) atomicAdd(&rd[1], p_loss);
            if (weighted && p_w != 0.0) atomicAdd(&rd[2], p_w);
            if (p_sq != 0.0) atomicAdd(&rd[3], p_sq);
        }
        __syncthreads();
        const double wsum = weighted ? rd[2] : (double)m;
        if (tid == 0) {
            double* other = red[(it + 1) & 1];  // read last iteration; nobody adds to it before the next barrier
            for (int q = 0; q < 4; ++q) other[q] = 0.0;
            const double per_row = wsum > 0.0 ? m / wsum : 0.0;
            if (want_error) {
                s_err += rd[0];
                s_weight += wsum * SN_N(LL);
            }
            if (want_loss) {
                s_loss += rd[1] * per_row;
                s_rows += m;
                if (alpha > 0.0) s_penalty += 0.5 * alpha * rd[3] * per_row;
            }
        }
        if (scalars_vary || m != scalars_m) {  // the same for every thread
            const double r = mean ? (wsum > 0.0 ? 1.0 / wsum : 0.0) : 1.0;
            st = sn_step_scalars<T>(cfg, step + it + 1, start + it, r);
            scalars_m = m;
        }
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
        // every parameter's step (all deltas are computed; nothing reads W here)
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
                const int e = SN_WOFF(k) + q;
                w[q] = sn_update_one(w[q], g, decay_w, sS + e, sS + nP + e, st);
            }
            if (use_bias) {
                T* b = sB + SN_BOFF(k);
                for (int j = tid; j < nout; j += nt) {
                    T g = T(0);
                    for (int i = 0; i < m; ++i) g += d[i * nout + j];
                    const int e = nW + SN_BOFF(k) + j;
                    b[j] = sn_update_one(b[j], g, T(0), sS + e, sS + nP + e, st);
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
    for (int q = tid; q < nB; q += nt) B[q] = sB[q];
    for (int q = tid; q < nS; q += nt) S[q] = sS[q];
    if (tid == 0) {
        stats[0] = s_err;
        stats[1] = s_weight;
        stats[2] = s_loss;
        stats[3] = s_rows;
        stats[4] = s_penalty;
    }
}

// ---------------------------------------------------------------------------------------------
// The single warp: one hidden layer, the batch's rows times the hidden units' power of two <= 32

// Sums v over the lanes whose index differs only in the bits of `mask_bits` (butterfly over the
// bit positions lo, 2 lo, ... < hi): each such lane gets the same sum, bit for bit (each step
// adds the same two numbers on both lanes, and addition commutes).
template <typename T, int LO, int HI>
__device__ __forceinline__ T sn_butterfly(T v)
{
#pragma unroll
    for (int offset = LO; offset < HI; offset <<= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// A whole report interval in one warp, for a net N0 -> N1 -> N2 (one sigmoid hidden layer) whose
// batch has at most R = 32 / G rows, G = N1 rounded up to a power of two. Lane r * G + j holds row
// r of the batch (its x, y and weight) and hidden unit j's weights W1[:, j], b1[j] and W2[j, :],
// with b2 in every lane, and the optimizer's slots beside each: copies of one parameter in
// several lanes are updated from the same sums, so they stay equal, bit for bit. The output's
// sums over j are xor-shuffles within a row's G lanes, the gradients' sums over rows xor-shuffles
// across rows; no shared memory, no block barrier. Arguments as train_small's (sizes are the
// template's; S holds the slots as there).
template <typename T, int N0, int N1, int N2>
__global__ void __launch_bounds__(32)
    train_warp(const T* __restrict__ X, const T* __restrict__ Y, const T* __restrict__ SW, T* W, T* B, T* S,
               int n_rows, long long start, int iterations, int batch_size, const double* __restrict__ cfg,
               int output, int loss, int derivative, int mean, int use_bias, int weighted, int track_all,
               long long step, double eps, double* stats)
{
    constexpr int G = N1 <= 1 ? 1 : N1 <= 2 ? 2 : N1 <= 4 ? 4 : N1 <= 8 ? 8 : N1 <= 16 ? 16 : 32;
    constexpr int nW = N0 * N1 + N1 * N2;
    const int lane = threadIdx.x & 31, r = lane / G, j = lane % G;
    const bool unit = j < N1;
    const int nB = use_bias ? N1 + N2 : 0, nP = nW + nB;
    const int optimizer = (int)cfg[SN_CFG_OPTIMIZER];
    const int slots = sn_slots(optimizer);
    const double alpha = cfg[SN_CFG_ALPHA];
    const T decay_w = (T)alpha;
    // this lane's parameters (hidden unit j; zeros in the lanes past N1) and their slots
    T w1[N0], w2[N2], b2[N2], m1[N0], v1[N0], m2[N2], v2[N2], mb2[N2], vb2[N2];
    T b1 = T(0), mb1 = T(0), vb1 = T(0);
    const int jj = unit ? j : 0;
#pragma unroll
    for (int p = 0; p < N0; ++p) {
        const int e = p * N1 + jj;
        w1[p] = unit ? W[e] : T(0);
        m1[p] = unit && slots > 0 ? S[e] : T(0);
        v1[p] = unit && slots > 1 ? S[nP + e] : T(0);
    }
#pragma unroll
    for (int c = 0; c < N2; ++c) {
        const int e = N0 * N1 + jj * N2 + c, eb = nW + N1 + c;
        w2[c] = unit ? W[e] : T(0);
        m2[c] = unit && slots > 0 ? S[e] : T(0);
        v2[c] = unit && slots > 1 ? S[nP + e] : T(0);
        b2[c] = use_bias ? B[N1 + c] : T(0);
        mb2[c] = use_bias && slots > 0 ? S[eb] : T(0);
        vb2[c] = use_bias && slots > 1 ? S[nP + eb] : T(0);
    }
    if (use_bias && unit) {
        b1 = B[jj];
        mb1 = slots > 0 ? S[nW + jj] : T(0);
        vb1 = slots > 1 ? S[nP + nW + jj] : T(0);
    }
    const bool full = batch_size <= 0 || batch_size >= n_rows;
    const int n_batches = full ? 1 : (n_rows + batch_size - 1) / batch_size;
    int bidx = full ? 0 : (int)(start % n_batches);
    int loaded = -1;
    T x[N0], y[N2];
    T wt = T(0);  // the row's weight; 0 for lanes past the batch's rows, so they add nothing
    bool active = false;  // this lane's row is in the batch
    int m = 0;
    const bool scalars_vary = optimizer == SN_OPT_ADAM || cfg[SN_CFG_INVSCALING] != 0.0 || (weighted && mean);
    int scalars_m = -1;
    SnStep<T> st{};
    double s_err = 0.0, s_weight = 0.0, s_loss = 0.0, s_rows = 0.0, s_penalty = 0.0;
    for (int it = 0; it < iterations; ++it, bidx = (full || bidx + 1 == n_batches) ? 0 : bidx + 1) {
        if (bidx != loaded) {
            const int r0 = full ? 0 : bidx * batch_size;
            m = (full ? n_rows : min(r0 + batch_size, n_rows)) - r0;
            const bool row = r < m;
            const int src = row ? r0 + r : 0;
#pragma unroll
            for (int p = 0; p < N0; ++p) x[p] = row ? X[(long long)src * N0 + p] : T(0);
#pragma unroll
            for (int c = 0; c < N2; ++c) y[c] = row ? Y[(long long)src * N2 + c] : T(0);
            wt = row ? (weighted ? SW[src] : T(1)) : T(0);
            active = row;
            loaded = bidx;
        }
        const bool want_error = it == 0, want_loss = it == 0 || track_all;
        // forward: the hidden unit, then the output's sums over the row's G lanes
        T h = b1;
#pragma unroll
        for (int p = 0; p < N0; ++p) h += x[p] * w1[p];
        h = unit ? sn_sigmoid(h) : T(0);
        T o[N2];
#pragma unroll
        for (int c = 0; c < N2; ++c) {
            o[c] = sn_butterfly<T, 1, G>(h * w2[c]) + b2[c];
            if (output == SN_OUT_SIGMOID) o[c] = sn_sigmoid(o[c]);
        }
        if (output == SN_OUT_SOFTMAX) sn_softmax_row(o, N2);
        // output delta (weighted; 0 in lanes past the batch), the error and the loss
        T dl[N2];
        double e_row = 0.0, l_row = 0.0;
#pragma unroll
        for (int c = 0; c < N2; ++c) {
            if (want_error) e_row += fabs((double)(y[c] - o[c]));
            if (want_loss) l_row += sn_loss_term((double)y[c], (double)o[c], loss, eps);
            dl[c] = sn_output_delta(y[c], o[c], derivative) * wt;
        }
        double wsum = (double)m;
        if (want_error || want_loss || (weighted && mean)) {
            const bool first = j == 0 && active;  // one lane per row counts it
            double wr = first ? (double)wt : 0.0;
            e_row = first ? e_row * (double)wt : 0.0;
            l_row = first ? l_row * (double)wt : 0.0;
            // over every lane (only each row's first counts): every lane gets the batch's sums
            wr = sn_butterfly<double, 1, 32>(wr);
            if (weighted) wsum = wr;
            if (want_error || want_loss) {
                e_row = sn_butterfly<double, 1, 32>(e_row);
                l_row = sn_butterfly<double, 1, 32>(l_row);
            }
            double sq = 0.0;
            if (want_loss && alpha > 0.0) {  // every weight once: W1[:, j] and W2[j, :] in row 0's lanes
                if (r == 0 && unit) {
#pragma unroll
                    for (int p = 0; p < N0; ++p) sq += (double)w1[p] * (double)w1[p];
#pragma unroll
                    for (int c = 0; c < N2; ++c) sq += (double)w2[c] * (double)w2[c];
                }
                sq = sn_butterfly<double, 1, 32>(sq);
            }
            const double per_row = wsum > 0.0 ? m / wsum : 0.0;
            if (want_error) {
                s_err += e_row;
                s_weight += wsum * N2;
            }
            if (want_loss) {
                s_loss += l_row * per_row;
                s_rows += m;
                if (alpha > 0.0) s_penalty += 0.5 * alpha * sq * per_row;
            }
        }
        if (scalars_vary || m != scalars_m) {
            const double rr = mean ? (wsum > 0.0 ? 1.0 / wsum : 0.0) : 1.0;
            st = sn_step_scalars<T>(cfg, step + it + 1, start + it, rr);
            scalars_m = m;
        }
        // the hidden delta (W2 before its step), then the gradients summed over rows
        T back = T(0);
#pragma unroll
        for (int c = 0; c < N2; ++c) back += dl[c] * w2[c];
        const T dh = unit ? back * (h * (T(1) - h)) : T(0);
#pragma unroll
        for (int p = 0; p < N0; ++p) {
            const T g = sn_butterfly<T, G, 32>(x[p] * dh);
            w1[p] = sn_update_one(w1[p], g, decay_w, &m1[p], &v1[p], st);
        }
        if (use_bias) {
            const T g = sn_butterfly<T, G, 32>(dh);
            b1 = sn_update_one(b1, g, T(0), &mb1, &vb1, st);
        }
#pragma unroll
        for (int c = 0; c < N2; ++c) {
            const T g = sn_butterfly<T, G, 32>(h * dl[c]);
            w2[c] = sn_update_one(w2[c], g, decay_w, &m2[c], &v2[c], st);
            if (use_bias) {
                const T gb = sn_butterfly<T, G, 32>(dl[c]);
                b2[c] = sn_update_one(b2[c], gb, T(0), &mb2[c], &vb2[c], st);
            }
        }
    }
    // row 0's lanes write their unit's parameters back; lane 0 the output's biases and the report
    if (r == 0 && unit) {
#pragma unroll
        for (int p = 0; p < N0; ++p) {
            const int e = p * N1 + j;
            W[e] = w1[p];
            if (slots > 0) S[e] = m1[p];
            if (slots > 1) S[nP + e] = v1[p];
        }
#pragma unroll
        for (int c = 0; c < N2; ++c) {
            const int e = N0 * N1 + j * N2 + c;
            W[e] = w2[c];
            if (slots > 0) S[e] = m2[c];
            if (slots > 1) S[nP + e] = v2[c];
        }
        if (use_bias) {
            B[j] = b1;
            if (slots > 0) S[nW + j] = mb1;
            if (slots > 1) S[nP + nW + j] = vb1;
        }
    }
    if (lane == 0) {
        if (use_bias)
#pragma unroll
            for (int c = 0; c < N2; ++c) {
                B[N1 + c] = b2[c];
                if (slots > 0) S[nW + N1 + c] = mb2[c];
                if (slots > 1) S[nP + nW + N1 + c] = vb2[c];
            }
        stats[0] = s_err;
        stats[1] = s_weight;
        stats[2] = s_loss;
        stats[3] = s_rows;
        stats[4] = s_penalty;
    }
}
