// A tiny fork-join thread pool for the kernels.
//
// Why our own pool: OpenBLAS (Debian's pthread build) runs its own worker threads, and two pools
// busy-waiting on a 2-core machine steal each other's core. We set OpenBLAS to one thread and split
// every large product ourselves (see gemm.cc), so this pool is the only source of parallelism:
// one set of threads, no oversubscription.
//
// Design: the calling thread (Node's main thread) always takes part. Work is cut into `n_tasks`
// pieces that threads claim with an atomic counter, so a worker that the OS has descheduled (the
// machine is shared) only delays the piece it already claimed. Idle workers sleep on a condition
// variable (optionally after spinning for TEAMLLM_NATIVE_SPIN_US; see pool.cc for why not by
// default).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace teamllm {

class ThreadPool {
 public:
  // `threads` counts the calling thread: ThreadPool(2) starts one worker.
  explicit ThreadPool(int threads);
  ~ThreadPool();

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(i) for i in [0, n_tasks), in parallel, and returns when all are done. Thread-safe:
  // a nested call, or a call while another thread holds the pool, runs serially instead.
  void parallel_for(int64_t n_tasks, const std::function<void(int64_t)>& fn);

  // Changes the number of threads (1 = everything on the calling thread).
  void resize(int threads);

 private:
  void start(int threads);
  void stop();
  void worker_loop();
  void run_tasks(const std::function<void(int64_t)>* job, int64_t n_tasks);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool quit_ = false;
  int sleeping_ = 0;

  // The current job. `generation_` changes when a new job is published.
  std::atomic<uint64_t> generation_{0};
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t n_tasks_ = 0;
  std::atomic<int64_t> next_task_{0};
  std::atomic<int64_t> done_tasks_{0};
  std::atomic<int> active_workers_{0};
  std::atomic<bool> in_parallel_{false};
};

// The process-wide pool (created on first use with one thread per core, at most 8).
ThreadPool& pool();

// Splits [0, n) into chunks of at least `grain` items and runs fn(begin, end) on them in parallel.
// Small ranges run inline on the calling thread (waking a worker costs a few microseconds).
void parallel_range(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace teamllm
