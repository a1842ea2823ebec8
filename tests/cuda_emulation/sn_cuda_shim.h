// A CPU stand-in for the CUDA dialect that kernels/sigmanet.cu uses, so that the same source
// compiles with g++ (C++20) and its kernels run on this machine: the threads of each block with
// real barriers between them, warp shuffles exchanged through memory.
//
// Two ways to run a block's threads, chosen when the library is built:
//   * fibers (the default): every thread of the block is a fiber on one OS thread; a
//     barrier switches to the next fiber, and the order in which the fibers run between two
//     barriers is shuffled (seeded per block), so that a thread reading what another writes in the
//     same phase (a missing __syncthreads) sees it sometimes early and sometimes late. Cheap on a
//     shared machine: one core, no runnable-thread storm, and on x86-64 no system call a switch
//     (the seed's train_warp: 47 us an iteration at -O1; 869 us with ucontext at -O0);
//   * std::threads (-DSN_EMU_THREADS=1): every thread of the block is an OS thread (a pool kept
//     across launches), with condition-variable barriers: true concurrency, for the races that
//     only interleaving shows. Keep such tests few and their blocks small.
//
// It checks the math and the synchronisation of the kernels, not their speed: blocks of a grid
// run one after another (so a function-local static is the block's shared memory).
//
// What it catches beyond wrong numbers (each one fails the launch with a message):
//   * a launch whose argument count or widths differ from the kernel's parameters (CuPy passes
//     each argument at the width of its NumPy scalar type);
//   * a shuffle or __syncwarp whose mask names a lane that does not exist or has returned, or
//     leaves out a live one;
//   * a barrier that not every live thread of the block (or warp) reaches;
//   * dynamic shared memory read before it is written (it starts as NaN bytes in every block).
//
// Not modelled: the memory model across blocks (blocks are serial), warp-synchronous code without
// __syncwarp, FMA contraction, flushing of denormals, the device's exp and division error bounds.
#pragma once

#include <ucontext.h>

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
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#ifndef SN_EMU_THREADS
#define SN_EMU_THREADS 0
#endif
#ifndef SN_EMU_TIMEOUT
#define SN_EMU_TIMEOUT 120  // seconds a thread waits at a barrier (thread mode) before the process aborts
#endif

#define SN_EMU_EXPORT __attribute__((visibility("default")))  // the launchers: all else stays in the library

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// Blocks run one at a time, so a function-local static is exactly one block's shared memory.
#define __shared__ static
#define SN_DYNAMIC_SHARED(T, name) T* const name = reinterpret_cast<T*>(sn_emu::dynamic_shared())

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

// Per thread of the block: thread_local in thread mode; in fiber mode plain globals that the
// scheduler sets before it switches to a fiber (one fiber runs at a time).
#if SN_EMU_THREADS
#define SN_EMU_LOCAL inline thread_local
#else
#define SN_EMU_LOCAL inline
#endif
SN_EMU_LOCAL uint3 threadIdx;
SN_EMU_LOCAL uint3 blockIdx;
SN_EMU_LOCAL dim3 blockDim;
SN_EMU_LOCAL dim3 gridDim;

namespace sn_emu {

// The first problem a launch met (kept until the launch returns it).
inline std::mutex error_mutex;
inline std::string error_text;

inline void fail(const std::string& what)
{
    std::lock_guard<std::mutex> lock(error_mutex);
    if (error_text.empty()) error_text = what;
}

inline bool failed()
{
    std::lock_guard<std::mutex> lock(error_mutex);
    return !error_text.empty();
}

struct Warp {
    unsigned lanes = 0;  // lanes that exist in this warp
    std::atomic<unsigned> exited{0};
    uint64_t slot[32];  // shuffle exchange
};

struct Block {
    unsigned n = 0;
    std::vector<Warp> warps;
    std::vector<unsigned char> dynamic;  // dynamic shared memory
};

SN_EMU_LOCAL Block* block = nullptr;
SN_EMU_LOCAL unsigned linear_tid = 0;

inline void* dynamic_shared() { return block->dynamic.data(); }

inline Warp& my_warp() { return block->warps[linear_tid / 32]; }

// Sets the built-in variables for thread t of block q of the launch.
inline void enter(Block* blk, unsigned t, unsigned long long q, dim3 g, dim3 b)
{
    block = blk;
    linear_tid = t;
    threadIdx = uint3{t % b.x, t / b.x % b.y, t / b.x / b.y};
    blockIdx = uint3{unsigned(q % g.x), unsigned(q / g.x % g.y), unsigned(q / g.x / g.y)};
    blockDim = b;
    gridDim = g;
}

inline void prepare(Block& blk)
{
    for (unsigned w = 0; w < blk.warps.size(); ++w) {
        const unsigned lanes = std::min(32u, blk.n - 32 * w);
        blk.warps[w].lanes = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
        blk.warps[w].exited = 0;
    }
    std::memset(blk.dynamic.data(), 0xff, blk.dynamic.size());  // NaN until written
}

// ------------------------------------------------------------------------------------------------
#if SN_EMU_THREADS

// A reusable barrier for a changing number of threads: arrive_and_wait, and arrive_and_drop for
// a thread that returns (an exited thread no longer counts, as on the device).
class Barrier {
  public:
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
        const long long gen = generation_;
        if (++arrived_ >= expected_) {
            if (last) last();
            advance();
            return;
        }
        if (!cv_.wait_for(lock, std::chrono::seconds(SN_EMU_TIMEOUT), [&] { return generation_ != gen; })) {
            std::fprintf(stderr, "sn_emu: %s waited %d s: %d of %d threads arrived (a barrier not all reach)\n",
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
        ++generation_;
        cv_.notify_all();
    }
    std::mutex m_;
    std::condition_variable cv_;
    int expected_ = 0, arrived_ = 0;
    long long generation_ = 0;
};

inline std::vector<Barrier>* warp_barriers = nullptr;  // one launch at a time
inline Barrier* block_barrier_of_launch = nullptr;

inline void block_barrier(const char* what) { block_barrier_of_launch->arrive_and_wait(what); }
inline void warp_barrier(const char* what) { (*warp_barriers)[linear_tid / 32].arrive_and_wait(what); }

// A pool of threads kept across launches (creating 256 threads per block would dominate).
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
            const std::function<void(unsigned)>* job;
            {
                std::unique_lock<std::mutex> lock(m_);
                cv_.wait(lock, [&] { return generation_ != seen; });
                seen = generation_;
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
    long long generation_ = 0;
    bool stop_ = false;
};

inline Pool& pool()
{
    static Pool p;
    return p;
}

// Every block of the grid, one after another, on the same n pool threads.
inline void run_grid(Block& blk, dim3 g, dim3 b, const std::function<void(unsigned)>& body)
{
    const unsigned n = blk.n;
    const unsigned long long blocks = (unsigned long long)g.x * g.y * g.z;
    Barrier blockwide, between;
    std::vector<Barrier> warps(blk.warps.size());
    auto reset = [&] {
        prepare(blk);
        blockwide.reset(int(n));
        for (unsigned w = 0; w < warps.size(); ++w) warps[w].reset(int(std::min(32u, n - 32 * w)));
    };
    reset();
    between.reset(int(n));
    warp_barriers = &warps;
    block_barrier_of_launch = &blockwide;
    std::atomic<bool> stop{false};
    pool().run(n, [&](unsigned t) {
        for (unsigned long long q = 0; q < blocks && !stop.load(); ++q) {
            enter(&blk, t, q, g, b);
            body(t);
            blk.warps[t / 32].exited.fetch_or(1u << (t % 32));
            warps[t / 32].arrive_and_drop();
            blockwide.arrive_and_drop();
            block = nullptr;
            between.arrive_and_wait("the end of a block", [&] {
                if (failed()) stop = true;
                reset();
            });
        }
    });
}

// ------------------------------------------------------------------------------------------------
#else  // fibers

enum FiberState { RUNNING, AT_BLOCK, AT_WARP, DONE };

// Switching fibers. ucontext's swapcontext saves and restores the signal mask, two system calls a
// switch: with a switch at every shuffle those were nearly all of the emulator's time (6 million
// rt_sigprocmask calls in 3000 iterations of the seed's train_warp). On x86-64 the switch is
// instead the few instructions of Boost.Context's fcontext: push the callee-saved registers and
// the SSE and x87 control words on the stack being left, store its stack pointer, load the other
// one, pop the same. The compiler saves everything else around the call, as the ABI lets it.
// Elsewhere (or with -DSN_EMU_UCONTEXT) the fibers keep ucontext.
#if defined(__x86_64__) && !defined(SN_EMU_UCONTEXT)
#define SN_EMU_FAST_SWITCH 1
// Saves this fiber's registers on its stack, *from = its stack pointer, then resumes the fiber whose
// stack pointer is `to` (its sn_switch call returns). static: one copy per translation unit.
#if defined(__clang__)
#define SN_EMU_OPAQUE __attribute__((naked, noinline))
#else  // noipa: callers assume it reads and writes any memory, as a switch to other code does
#define SN_EMU_OPAQUE __attribute__((naked, noinline, noipa))
#endif
[[maybe_unused]] SN_EMU_OPAQUE static void sn_switch(void** /*from: rdi*/, void* /*to: rsi*/)
{
    asm volatile(
        "pushq %rbp\n\t"
        "pushq %rbx\n\t"
        "pushq %r12\n\t"
        "pushq %r13\n\t"
        "pushq %r14\n\t"
        "pushq %r15\n\t"
        "subq $8, %rsp\n\t"
        "stmxcsr (%rsp)\n\t"
        "fnstcw 4(%rsp)\n\t"
        "movq %rsp, (%rdi)\n\t"
        "movq %rsi, %rsp\n\t"
        "ldmxcsr (%rsp)\n\t"
        "fldcw 4(%rsp)\n\t"
        "addq $8, %rsp\n\t"
        "popq %r15\n\t"
        "popq %r14\n\t"
        "popq %r13\n\t"
        "popq %r12\n\t"
        "popq %rbx\n\t"
        "popq %rbp\n\t"
        "ret\n\t");
}
#else
#define SN_EMU_FAST_SWITCH 0
#endif

struct Fiber {
#if SN_EMU_FAST_SWITCH
    void* sp = nullptr;  // its saved stack pointer while it is switched out
#else
    ucontext_t context;
#endif
    FiberState state = RUNNING;
};

constexpr std::size_t FIBER_STACK = 256 * 1024;

struct Fibers {
    std::vector<Fiber> fibers;
    std::vector<std::unique_ptr<char[]>> stacks;  // kept across launches: allocating them is not free
#if SN_EMU_FAST_SWITCH
    void* scheduler = nullptr;
#else
    ucontext_t scheduler;
#endif
    unsigned current = 0;
    const std::function<void(unsigned)>* body = nullptr;
};

inline Fibers& fibers()
{
    static Fibers f;
    return f;
}

inline void fiber_entry()
{
    Fibers& fs = fibers();
    const unsigned t = fs.current;
    (*fs.body)(t);
    block->warps[t / 32].exited.fetch_or(1u << (t % 32));
    fs.fibers[t].state = DONE;
#if SN_EMU_FAST_SWITCH
    void* finished;  // this fiber is never resumed: its stack is set up afresh at the next launch
    sn_switch(&finished, fs.scheduler);
    __builtin_unreachable();
#endif
    // returning resumes uc_link: the scheduler
}

// Fiber t ready to run fiber_entry from the top of its stack at its first switch.
inline void fiber_start(Fibers& fs, unsigned t)
{
    Fiber& f = fs.fibers[t];
    f.state = RUNNING;
    char* const stack = fs.stacks[t].get();
#if SN_EMU_FAST_SWITCH
    // The frame sn_switch pops: the control words, six registers (zeros), then fiber_entry as the
    // return address; above it a zero return address, so that fiber_entry starts with the stack
    // aligned as after a call (rsp + 8 a multiple of 16).
    auto top = reinterpret_cast<std::uintptr_t>(stack + FIBER_STACK) & ~std::uintptr_t(15);
    auto* frame = reinterpret_cast<std::uint64_t*>(top) - 9;
    std::uint32_t words[2];
    asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(words[0]), "=m"(words[1]));
    std::memcpy(&frame[0], words, 8);
    for (int i = 1; i <= 6; ++i) frame[i] = 0;
    frame[7] = reinterpret_cast<std::uint64_t>(&fiber_entry);
    frame[8] = 0;
    f.sp = frame;
#else
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = stack;
    f.context.uc_stack.ss_size = FIBER_STACK;
    f.context.uc_link = &fs.scheduler;
    makecontext(&f.context, fiber_entry, 0);
#endif
}

// The scheduler resumes fiber t until it waits at a barrier or is done.
inline void fiber_resume(Fibers& fs, unsigned t)
{
#if SN_EMU_FAST_SWITCH
    sn_switch(&fs.scheduler, fs.fibers[t].sp);
#else
    swapcontext(&fs.scheduler, &fs.fibers[t].context);
#endif
}

inline void wait(FiberState at)
{
    Fibers& fs = fibers();
    Fiber& me = fs.fibers[fs.current];
    me.state = at;
#if SN_EMU_FAST_SWITCH
    sn_switch(&me.sp, fs.scheduler);
#else
    swapcontext(&me.context, &fs.scheduler);
#endif
}

inline void block_barrier(const char*) { wait(AT_BLOCK); }
inline void warp_barrier(const char*) { wait(AT_WARP); }

// Every block of the grid, one after another; each block's threads as fibers, run in a shuffled
// order between barriers.
inline void run_grid(Block& blk, dim3 g, dim3 b, const std::function<void(unsigned)>& body)
{
    Fibers& fs = fibers();
    const unsigned n = blk.n;
    const unsigned long long blocks = (unsigned long long)g.x * g.y * g.z;
    fs.fibers = std::vector<Fiber>(n);
    while (fs.stacks.size() < n) fs.stacks.emplace_back(new char[FIBER_STACK]);
    fs.body = &body;
    std::vector<unsigned> order(n);
    for (unsigned long long q = 0; q < blocks && !failed(); ++q) {
        prepare(blk);
        for (unsigned t = 0; t < n; ++t) {
            fiber_start(fs, t);
            order[t] = t;
        }
        std::mt19937 shuffle((unsigned)(q * 2654435761u + n));
        for (;;) {
            std::shuffle(order.begin(), order.end(), shuffle);
            for (unsigned t : order) {
                if (fs.fibers[t].state != RUNNING) continue;
                fs.current = t;
                enter(&blk, t, q, g, b);
                fiber_resume(fs, t);
            }
            // every live fiber now waits at a barrier (or all are done): release what is complete
            unsigned alive = 0, at_block = 0;
            for (const Fiber& f : fs.fibers) {
                alive += f.state != DONE;
                at_block += f.state == AT_BLOCK;
            }
            if (alive == 0) break;
            bool released = false;
            for (unsigned w = 0; w < blk.warps.size(); ++w) {
                unsigned live = 0, waiting = 0;
                for (unsigned t = 32 * w; t < std::min(n, 32 * w + 32); ++t) {
                    live += fs.fibers[t].state != DONE;
                    waiting += fs.fibers[t].state == AT_WARP;
                }
                if (live > 0 && waiting == live) {
                    for (unsigned t = 32 * w; t < std::min(n, 32 * w + 32); ++t) fs.fibers[t].state = RUNNING;
                    released = true;
                }
            }
            if (!released && at_block == alive) {
                for (Fiber& f : fs.fibers)
                    if (f.state == AT_BLOCK) f.state = RUNNING;
                released = true;
            }
            if (!released) {
                fail("a barrier that not every live thread reaches: " + std::to_string(at_block) + " of " +
                     std::to_string(alive) + " live threads wait at __syncthreads, the others at a warp barrier");
                break;  // the fibers are abandoned mid-kernel (their stacks are reused)
            }
        }
    }
    block = nullptr;
}

#endif
// ------------------------------------------------------------------------------------------------

inline void syncthreads() { block_barrier("__syncthreads"); }

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
    warp_barrier(what);
    const int src = src_of_lane(lane, arg, width);
    T out = var;
    if (src >= 0 && src < 32 && (w.lanes & (1u << src))) std::memcpy(&out, &w.slot[src], sizeof(T));
    warp_barrier(what);
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

inline std::mutex launch_mutex;  // one launch at a time (function-local statics are the shared memory)

// Launch kernel over grid x block threads with `shared` bytes of dynamic shared memory.
// args[i] points to argument i's value, of sizes[i] bytes (cudaLaunchKernel's convention).
// Returns 0, or 1 with the error text set.
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
    Block state;
    state.n = n;
    state.warps = std::vector<Warp>((n + 31) / 32);
    state.dynamic.resize(std::max<unsigned long long>(shared, 16));
    run_grid(state, g, b, [&](unsigned) { invoke(kernel, args, std::index_sequence_for<P...>{}); });
    return failed() ? 1 : 0;
}

}  // namespace sn_emu

// -- the CUDA built-ins the kernels use --

inline void __syncthreads() { sn_emu::syncthreads(); }

inline void __syncwarp(unsigned mask = 0xffffffffu)
{
    sn_emu::check_mask(mask, "__syncwarp");
    sn_emu::warp_barrier("__syncwarp");
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

// 16-byte vector loads and stores (SN_VEC_LOAD in the source): the device faults on an address that
// is not 16-byte aligned, the host would not, so each one is checked (and copied bytewise).
namespace sn_emu {
template <typename V, typename P>
inline V vec_load(const P* p)
{
    if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0) fail("a 16-byte vector load from a misaligned address");
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
template <typename V, typename P>
inline void vec_store(P* p, const V& v)
{
    if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0) fail("a 16-byte vector store to a misaligned address");
    std::memcpy(p, &v, sizeof v);
}
}  // namespace sn_emu
#define SN_VEC_LOAD(T, p) sn_emu::vec_load<SnVec<T>>(p)
#define SN_VEC_STORE(T, p, x) sn_emu::vec_store<SnVec<T>>(p, x)
