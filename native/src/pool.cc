#include "pool.h"

#include <chrono>
#include <cstdlib>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax() { _mm_pause(); }
#else
static inline void cpu_relax() {}
#endif

namespace teamllm {

namespace {

// How long an idle worker keeps spinning before it sleeps. Spinning saves the 5-50 us of a
// wake-up, but measured on the shared 2-core machine it doubled the step time: the Linux
// scheduler charges the spinning thread's CPU time against it, so when real work arrives the
// worker waits behind other processes while the main thread waits for the worker. Default: sleep
// at once. TEAMLLM_NATIVE_SPIN_US sets a spin (microseconds) for dedicated machines.
int64_t spin_micros() {
  static const int64_t value = [] {
    const char* env = std::getenv("TEAMLLM_NATIVE_SPIN_US");
    if (env && *env) return static_cast<int64_t>(std::atoll(env));
    return static_cast<int64_t>(0);
  }();
  return value;
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

ThreadPool::ThreadPool(int threads) { start(threads); }

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::start(int threads) {
  quit_ = false;
  for (int i = 1; i < threads; i++) workers_.emplace_back([this] { worker_loop(); });
}

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    quit_ = true;
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::resize(int threads) {
  if (threads < 1) threads = 1;
  if (threads == size()) return;
  stop();
  start(threads);
}

void ThreadPool::run_tasks(const std::function<void(int64_t)>* job, int64_t n_tasks) {
  for (;;) {
    const int64_t i = next_task_.fetch_add(1);
    if (i >= n_tasks) break;
    (*job)(i);
    done_tasks_.fetch_add(1, std::memory_order_release);
  }
}

void ThreadPool::worker_loop() {
  uint64_t seen = generation_.load();
  for (;;) {
    // Spin for a while, then sleep until a new job is published.
    if (generation_.load(std::memory_order_acquire) == seen) {
      const int64_t until = now_us() + spin_micros();
      int n = 0;
      while (generation_.load(std::memory_order_acquire) == seen) {
        cpu_relax();
        if ((++n & 255) == 0) {
          if (now_us() > until) break;
          std::this_thread::yield();  // let other processes run on a shared machine
        }
      }
      if (generation_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lock(mu_);
        sleeping_++;
        cv_.wait(lock, [&] { return quit_ || generation_.load() != seen; });
        sleeping_--;
      }
    }
    const std::function<void(int64_t)>* job;
    int64_t n_tasks;
    // Join the job under the lock, so that its fields are never seen half-written.
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (quit_) return;
      seen = generation_.load();
      if (job_ == nullptr) continue;  // that job is already closed
      job = job_;
      n_tasks = n_tasks_;
      active_workers_.fetch_add(1);
    }
    run_tasks(job, n_tasks);
    active_workers_.fetch_sub(1, std::memory_order_release);
  }
}

void ThreadPool::parallel_for(int64_t n_tasks, const std::function<void(int64_t)>& fn) {
  if (n_tasks <= 0) return;
  // Runs inline when there is nothing to split, no worker, or the pool is busy: a nested call
  // from a task, or a second JavaScript thread (worker_threads) calling kernels at the same time.
  if (n_tasks == 1 || workers_.empty() || in_parallel_.exchange(true, std::memory_order_acquire)) {
    for (int64_t i = 0; i < n_tasks; i++) fn(i);
    return;
  }
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    n_tasks_ = n_tasks;
    next_task_.store(0);
    done_tasks_.store(0);
    generation_.fetch_add(1);
    wake = sleeping_ > 0;
  }
  if (wake) cv_.notify_all();
  run_tasks(&fn, n_tasks);
  // Wait for the pieces other threads claimed.
  for (int n = 0; done_tasks_.load(std::memory_order_acquire) < n_tasks; n++) {
    cpu_relax();
    if ((n & 1023) == 1023) std::this_thread::yield();
  }
  // Close the job: workers that wake up late see no job; wait for those inside run_tasks.
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = nullptr;
  }
  for (int n = 0; active_workers_.load(std::memory_order_acquire) > 0; n++) {
    cpu_relax();
    if ((n & 1023) == 1023) std::this_thread::yield();
  }
  in_parallel_.store(false, std::memory_order_release);
}

ThreadPool& pool() {
  static ThreadPool* instance = [] {
    int threads = static_cast<int>(std::thread::hardware_concurrency());
    const char* env = std::getenv("TEAMLLM_NATIVE_THREADS");
    if (env && *env) threads = std::atoi(env);
    if (threads < 1) threads = 1;
    if (threads > 8) threads = 8;
    // Never destroyed: joining threads from a static destructor at process exit can deadlock.
    return new ThreadPool(threads);
  }();
  return *instance;
}

void parallel_range(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  ThreadPool& p = pool();
  const int threads = p.size();
  if (grain < 1) grain = 1;
  int64_t chunks = n / grain;
  if (chunks > threads * 4) chunks = threads * 4;
  if (chunks <= 1 || threads == 1) {
    fn(0, n);
    return;
  }
  const int64_t step = (n + chunks - 1) / chunks;
  p.parallel_for(chunks, [&](int64_t c) {
    const int64_t begin = c * step;
    const int64_t end = begin + step < n ? begin + step : n;
    if (begin < end) fn(begin, end);
  });
}

}  // namespace teamllm
