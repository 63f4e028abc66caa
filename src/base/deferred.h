// Work a thread puts off until the end of what it is doing now: an HTTP
// event loop opens a DeferredTasks on its thread and runs the tasks after
// each pass over its ready connections, so that code called for one request
// (e.g. a model runner) can gather the requests of the whole pass and handle
// them together.
//
// Thread-safety: a DeferredTasks belongs to the thread that created it.
//
// Usage:
//   DeferredTasks later;          // this thread's, until destroyed
//   ... DeferredTasks::Current()->Add([] { ... }); ...
//   later.RunAll();
#ifndef CAIRN_BASE_DEFERRED_H_
#define CAIRN_BASE_DEFERRED_H_

#include <functional>
#include <vector>

namespace cairn {

class DeferredTasks {
 public:
  // Becomes the current thread's (one at a time per thread).
  DeferredTasks();
  // Runs what is left (RunAll).
  ~DeferredTasks();
  DeferredTasks(const DeferredTasks&) = delete;
  DeferredTasks& operator=(const DeferredTasks&) = delete;

  // The calling thread's, or null where no one defers work.
  static DeferredTasks* Current();

  void Add(std::function<void()> task) { tasks_.push_back(std::move(task)); }
  // Runs the tasks in the order added, and those they add, until none are left.
  void RunAll();

 private:
  std::vector<std::function<void()>> tasks_;
  DeferredTasks* previous_;
};

}  // namespace cairn

#endif  // CAIRN_BASE_DEFERRED_H_
