// A CPU stand-in for the CUDA dialect that kernels/sigmanet.cu uses, so that the same source
// compiles with g++ (C++20) and its kernels run on this machine's cores: each block as blockDim
// std::threads, with real barriers between them, and warp shuffles exchanged through memory.
//
// It checks the math and the synchronisation of the kernels, not their speed: blocks of a grid
// run one after another (so a function-local static is the block's shared memory), and the
// threads of one block run concurrently, as on the device, so a missing __syncthreads can show.
//
// What it catches beyond wrong numbers (each one fails the launch with a message):
//   * a launch whose argument count or widths differ from the kernel's parameters (CuPy passes
//     each argument at the width of its NumPy scalar type);
//   * a shuffle or __syncwarp whose mask names a lane that does not exist or has returned;
//   * a barrier that not every thread of the block reaches (after SN_EMU_TIMEOUT seconds);
//   * dynamic shared memory read before it is written (it starts as NaN bytes in every block).
//
// Not modelled: the memory model across blocks (blocks are serial), warp-synchronous code without
// __syncwarp, FMA contraction, flushing of denormals, the device's exp and division error bounds.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// Blocks run one at a time, so a function-local static is exactly one block's shared memory.
#define __shared__ static
#define SN_DYNAMIC_SHARED(T, name) T* const name = reinterpret_cast<T*>(sn_emu::dynamic_shared())

#ifndef SN_EMU_TIMEOUT
#define SN_EMU_TIMEOUT 60
#endif

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace sn_emu {

// The first problem a launch met (kept until the launch returns it).
inline std::mutex error_mutex;
inline std::string error_text;

inline void fail(const std::string& what)
{
    std::lock_guard<std::mutex> lock(error_mutex);
    if (error_text.empty()) error_text = what;
}

// A reusable barrier for a changing number of threads: arrive_and_wait, and arrive_and_drop for
// a thread that returns (an exited thread no longer counts, as on the device).
class Barrier {
  public:
    explicit Barrier(int count = 0) : expected_(count) {}
    void reset(int count)
    {
        std::lock_guard<std::mutex> lock(m_);
        expected_ = count;
        arrived_ = 0;
    }
    // The last thread to arrive runs `last` (if given) before any thread goes on.
    void arrive_and_wait(const char* what, const std::function<void()>& last = nullptr)
    {
        std::unique_lock<std::mutex> lock(m_);
        const long long gen = generation_.load();
        if (++arrived_ >= expected_) {
            if (last) last();
            advance();
            return;
        }
        lock.unlock();
        // Yield first: with hundreds of threads on a few cores, handing the core on is much cheaper
        // than sleeping on the condition variable and being woken one by one.
        for (int spin = 0; spin < 20000; ++spin) {
            if (generation_.load(std::memory_order_acquire) != gen) return;
            std::this_thread::yield();
        }
        lock.lock();
        if (!cv_.wait_for(lock, std::chrono::seconds(SN_EMU_TIMEOUT), [&] { return generation_.load() != gen; })) {
            std::fprintf(stderr,
                         "sn_emu: %s waited %d s: %d of %d threads arrived (a barrier not every thread reaches)\n",
                         what, SN_EMU_TIMEOUT, arrived_, expected_);
            std::fflush(stderr);
            std::abort();
        }
    }
    void arrive_and_drop()
    {
        std::lock_guard<std::mutex> lock(m_);
        --expected_;
        if (arrived_ >= expected_ && arrived_ > 0) advance();
    }

  private:
    void advance()
    {
        arrived_ = 0;
        generation_.fetch_add(1, std::memory_order_release);
        cv_.notify_all();
    }
    std::mutex m_;
    std::condition_variable cv_;
    int expected_ = 0, arrived_ = 0;
    std::atomic<long long> generation_{0};
};

struct Warp {
    Barrier barrier;
    unsigned lanes = 0;   // lanes that exist in this warp
    std::atomic<unsigned> exited{0};
    uint64_t slot[32];  // shuffle exchange
};

struct Block {
    Barrier barrier;
    std::vector<Warp> warps;
    std::vector<unsigned char> dynamic;  // dynamic shared memory
};

inline thread_local Block* block = nullptr;
inline thread_local unsigned linear_tid = 0;

inline void* dynamic_shared() { return block->dynamic.data(); }

inline void syncthreads() { block->barrier.arrive_and_wait("__syncthreads"); }

inline Warp& my_warp() { return block->warps[linear_tid / 32]; }

inline void check_mask(unsigned mask, const char* what)
{
    Warp& w = my_warp();
    const unsigned live = w.lanes & ~w.exited.load();
    if (mask & ~live) {
        char text[160];
        std::snprintf(text, sizeof text, "%s: mask 0x%08x names lanes that do not exist or have returned (live 0x%08x)",
                      what, mask, live);
        fail(text);
    }
    if ((mask & live) != live) {
        char text[160];
        std::snprintf(text, sizeof text,
                      "%s: mask 0x%08x leaves out live lanes 0x%08x (the emulator takes whole warps only)", what,
                      mask, live);
        fail(text);
    }
}

template <typename T>
T shuffle(unsigned mask, T var, int src_of_lane(int lane, int arg, int width), int arg, int width, const char* what)
{
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>);
    check_mask(mask, what);
    Warp& w = my_warp();
    const int lane = int(linear_tid % 32);
    std::memcpy(&w.slot[lane], &var, sizeof(T));
    w.barrier.arrive_and_wait(what);
    const int src = src_of_lane(lane, arg, width);
    T out = var;
    if (src >= 0 && src < 32 && (w.lanes & (1u << src))) std::memcpy(&out, &w.slot[src], sizeof(T));
    w.barrier.arrive_and_wait(what);
    return out;
}

inline int down_lane(int lane, int delta, int width) { return (lane % width) + delta < width ? lane + delta : lane; }
inline int up_lane(int lane, int delta, int width) { return (lane % width) >= delta ? lane - delta : lane; }
inline int xor_lane(int lane, int m, int width)
{
    const int s = lane ^ m;
    return (s / width) == (lane / width) ? s : lane;
}
inline int idx_lane(int lane, int src, int width) { return (lane / width) * width + (src % width); }

// -- the launcher --

template <typename P>
using Plain = std::remove_cv_t<std::remove_reference_t<P>>;

template <typename... P, std::size_t... I>
void invoke(void (*kernel)(P...), void* const* args, std::index_sequence<I...>)
{
    kernel(*static_cast<Plain<P>*>(args[I])...);
}

// A pool of threads, kept across launches (creating 256 threads per block would dominate).
class Pool {
  public:
    ~Pool()
    {
        {
            std::lock_guard<std::mutex> lock(m_);
            stop_ = true;
            ++generation_;
        }
        cv_.notify_all();
        for (auto& t : threads_) t.join();
    }
    // Run job(t) on threads t = 0 .. n-1, concurrently, and wait for all of them.
    void run(unsigned n, const std::function<void(unsigned)>& job)
    {
        std::unique_lock<std::mutex> lock(m_);
        while (threads_.size() < n) {
            const unsigned index = unsigned(threads_.size());
            threads_.emplace_back([this, index] { worker(index); });
        }
        job_ = &job;
        active_ = n;
        pending_ = n;
        ++generation_;
        cv_.notify_all();
        done_.wait(lock, [&] { return pending_ == 0; });
        job_ = nullptr;
    }

  private:
    void worker(unsigned index)
    {
        long long seen = 0;
        for (;;) {
            // Launches come back to back: yield for a while (a few ms) before sleeping, so that the
            // next launch finds its threads awake.
            for (int spin = 0; spin < 2000 && generation_.load(std::memory_order_acquire) == seen; ++spin)
                std::this_thread::yield();
            const std::function<void(unsigned)>* job;
            {
                std::unique_lock<std::mutex> lock(m_);
                cv_.wait(lock, [&] { return generation_.load() != seen; });
                seen = generation_.load();
                if (stop_) return;
                if (index >= active_) continue;
                job = job_;
            }
            (*job)(index);
            std::lock_guard<std::mutex> lock(m_);
            if (--pending_ == 0) done_.notify_all();
        }
    }
    std::mutex m_;
    std::condition_variable cv_, done_;
    std::vector<std::thread> threads_;
    const std::function<void(unsigned)>* job_ = nullptr;
    unsigned active_ = 0, pending_ = 0;
    std::atomic<long long> generation_{0};
    bool stop_ = false;
};

inline Pool& pool()
{
    static Pool p;
    return p;
}

inline std::mutex launch_mutex;  // one launch at a time (function-local statics are the shared memory)

// Launch kernel over grid x block threads with `shared` bytes of dynamic shared memory.
// args[i] points to argument i's value, of sizes[i] bytes (cudaLaunchKernel's convention).
// Returns 0, or 1 with error_message() set.
template <typename... P>
int launch(void (*kernel)(P...), const unsigned* grid, const unsigned* blk, unsigned long long shared,
           void* const* args, int nargs, const int* sizes)
{
    std::lock_guard<std::mutex> serial(launch_mutex);
    {
        std::lock_guard<std::mutex> lock(error_mutex);
        error_text.clear();
    }
    constexpr int count = int(sizeof...(P));
    constexpr int widths[count + 1] = {int(sizeof(Plain<P>))..., 0};
    if (nargs != count) {
        fail("the kernel takes " + std::to_string(count) + " arguments, the launch passed " + std::to_string(nargs));
        return 1;
    }
    for (int i = 0; i < count; ++i)
        if (sizes[i] != widths[i]) {
            fail("argument " + std::to_string(i) + " is " + std::to_string(sizes[i]) + " bytes, the kernel's parameter " +
                 std::to_string(widths[i]));
            return 1;
        }
    const dim3 g(grid[0], grid[1], grid[2]), b(blk[0], blk[1], blk[2]);
    const unsigned n = b.x * b.y * b.z;
    if (n == 0 || n > 1024 || g.x == 0 || g.y == 0 || g.z == 0 || g.y > 65535 || g.z > 65535) {
        fail("invalid launch configuration: grid (" + std::to_string(g.x) + ", " + std::to_string(g.y) + ", " +
             std::to_string(g.z) + "), block of " + std::to_string(n) + " threads");
        return 1;
    }
    Block blockstate;
    blockstate.warps = std::vector<Warp>((n + 31) / 32);
    blockstate.dynamic.resize(std::max<unsigned long long>(shared, 16));
    const unsigned long long blocks = (unsigned long long)g.x * g.y * g.z;
    auto prepare = [&] {  // a fresh block: every thread counts in the barriers, shared memory is NaN
        blockstate.barrier.reset(int(n));
        for (unsigned w = 0; w < blockstate.warps.size(); ++w) {
            const unsigned lanes = std::min(32u, n - 32 * w);
            blockstate.warps[w].barrier.reset(int(lanes));
            blockstate.warps[w].lanes = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
            blockstate.warps[w].exited = 0;
        }
        std::memset(blockstate.dynamic.data(), 0xff, blockstate.dynamic.size());
    };
    prepare();
    std::atomic<bool> failed{false};
    Barrier between{int(n)};  // every thread of block q has returned before block q + 1 starts
    // The block's threads are the same pool threads for every block of the grid, one block after another.
    pool().run(n, [&](unsigned t) {
        for (unsigned long long q = 0; q < blocks && !failed.load(); ++q) {
            block = &blockstate;
            linear_tid = t;
            threadIdx = uint3{t % b.x, t / b.x % b.y, t / b.x / b.y};
            blockIdx = uint3{unsigned(q % g.x), unsigned(q / g.x % g.y), unsigned(q / g.x / g.y)};
            blockDim = b;
            gridDim = g;
            invoke(kernel, args, std::index_sequence_for<P...>{});
            Warp& w = blockstate.warps[t / 32];
            w.exited.fetch_or(1u << (t % 32));
            w.barrier.arrive_and_drop();
            blockstate.barrier.arrive_and_drop();
            block = nullptr;
            between.arrive_and_wait("the end of a block", [&] {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!error_text.empty()) failed = true;
                prepare();
            });
        }
    });
    std::lock_guard<std::mutex> lock(error_mutex);
    return error_text.empty() ? 0 : 1;
}

}  // namespace sn_emu

// -- the CUDA built-ins the kernels use --

inline void __syncthreads() { sn_emu::syncthreads(); }

inline void __syncwarp(unsigned mask = 0xffffffffu)
{
    sn_emu::check_mask(mask, "__syncwarp");
    sn_emu::my_warp().barrier.arrive_and_wait("__syncwarp");
}

template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32)
{
    return sn_emu::shuffle(mask, var, sn_emu::down_lane, int(delta), width, "__shfl_down_sync");
}
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32)
{
    return sn_emu::shuffle(mask, var, sn_emu::up_lane, int(delta), width, "__shfl_up_sync");
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32)
{
    return sn_emu::shuffle(mask, var, sn_emu::xor_lane, lane_mask, width, "__shfl_xor_sync");
}
template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32)
{
    return sn_emu::shuffle(mask, var, sn_emu::idx_lane, src_lane, width, "__shfl_sync");
}

template <typename T>
T atomicAdd(T* address, T value)
{
    return std::atomic_ref<T>(*address).fetch_add(value);
}

template <typename T>
T __ldg(const T* p)
{
    return *p;
}

inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }

// CUDA's min and max are overloaded for every arithmetic pair; the host has only std's templates.
template <typename A, typename B>
inline std::common_type_t<A, B> min(A a, B b)
{
    return b < a ? std::common_type_t<A, B>(b) : std::common_type_t<A, B>(a);
}
template <typename A, typename B>
inline std::common_type_t<A, B> max(A a, B b)
{
    return a < b ? std::common_type_t<A, B>(b) : std::common_type_t<A, B>(a);
}
